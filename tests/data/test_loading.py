"""Tests genreg/data/loading.py: the data a model file records (``recorded_data``), through ``genreg eval``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import genreg
from genreg.data.loading import recorded_data
from genreg.errors import DataError, ModelFileError
from genreg.files.model_files import read_metadata
from genreg.plugin.manager import plugin_infos
from genreg_builtin.datasets import MnistSampleConfig, load_mnist_sample
from tests.helpers import assert_user_error, invoke, small_cvae, write_npz


def test_eval_of_a_file_without_data_is_a_clear_error(tmp_path: Path) -> None:
    model = genreg.build_model({"type": "vae", "latent_dim": 2}, genreg.DataInfo((1, 28, 28), 10))
    path = genreg.save_model(model, tmp_path / "bare.safetensors")
    result = invoke("eval", str(path))
    assert result.exit_code == 2 and "records no dataset" in result.output


# ------------------------------------------------------------- a recorded dataset is not trusted (issue 15, case 11)


def recording(tmp_path: Path, data: dict) -> Path:
    """A tiny model's file that records ``data`` as its dataset, with a valid checksum (anyone can write one)."""
    model = small_cvae()
    return genreg.save_model(model, tmp_path / "crafted.safetensors", spec={"model": model.spec, "data": data})


def test_a_recorded_path_that_does_not_exist_is_named_and_never_created(tmp_path: Path) -> None:
    root = tmp_path / "any" / "dir"
    path = recording(tmp_path, {"type": "mnist", "download": True, "root": str(root)})
    with pytest.raises(ModelFileError) as caught:
        recorded_data(path)
    assert f"the model file {path} records its data at '{root}' (data.root; here {root}), which does not exist" in str(
        caught.value
    )
    assert not (tmp_path / "any").exists()


def test_a_recorded_download_is_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The root exists but holds no MNIST: the loader reports it missing instead of fetching it."""
    import torchvision.datasets

    downloads = []
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", lambda self: downloads.append(self.root))
    path = recording(tmp_path, {"type": "mnist", "download": True, "root": str(tmp_path)})
    with pytest.raises(DataError, match="MNIST was not found in the root folder"):
        recorded_data(path)
    assert downloads == [] and sorted(p.name for p in tmp_path.iterdir()) == ["crafted.safetensors"]


def test_a_recorded_npz_file_that_is_gone_is_named(tmp_path: Path) -> None:
    data = write_npz(tmp_path / "digits.npz")
    path = recording(tmp_path, {"type": "npz", "path": str(data)})
    assert len(recorded_data(path)[1].train) > 0
    data.unlink()
    with pytest.raises(ModelFileError, match=rf"records its data at '{data}' \(data.path; here {data}\)"):
        recorded_data(path)


def test_a_recorded_npz_that_is_a_fifo_is_named_by_its_kind(tmp_path: Path) -> None:
    """It was reported as "file not found"; a loader that opened it would wait for ever."""
    fifo = tmp_path / "digits.npz"
    os.mkfifo(fifo)
    path = recording(tmp_path, {"type": "npz", "path": str(fifo)})
    with pytest.raises(ModelFileError, match=rf"records its data at '{fifo}' .* which is a named pipe \(FIFO\)"):
        recorded_data(path)


def test_a_recorded_dataset_that_does_not_validate_names_the_file(tmp_path: Path) -> None:
    path = recording(tmp_path, {"type": "mnist", "root": str(tmp_path), "url": "http://example.com"})
    with pytest.raises(ModelFileError, match=rf"the model file {path} records a dataset that does not validate"):
        recorded_data(path)


def test_genreg_latent_on_a_crafted_download_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "any" / "dir"
    path = recording(tmp_path, {"type": "mnist", "download": True, "root": str(root)})
    result = invoke("latent", path, "-o", tmp_path / "latent.png")
    assert_user_error(result, f"records its data at '{root}'", "which does not exist")
    assert not (tmp_path / "any").exists() and not (tmp_path / "latent.png").exists()


def test_genreg_eval_of_a_recorded_npz_that_is_gone_exits_2(tmp_path: Path) -> None:
    path = recording(tmp_path, {"type": "npz", "path": str(tmp_path / "gone.npz")})
    result = invoke("eval", path)
    assert_user_error(result, f"records its data at '{tmp_path / 'gone.npz'}' (data.path; here ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.safetensors"]


# ------------------------------------------------------------- the plugin of a recorded dataset (issue 16, case 14)


class SampleDigits:
    """A dataset plugin registered for one test: the bundled digits under a name of its own."""

    @genreg.hookimpl
    def register_components(self, register):
        register("dataset", "sample-digits", load_mnist_sample, MnistSampleConfig)


@pytest.fixture
def saved_with_a_dataset_plugin(tmp_path: Path) -> Path:
    """A model file whose run's data came from the plugin ``digits-plugin`` (package genreg-digits 1.2.0), which is
    then unregistered: the model's parts are built-in, only its dataset is missing."""
    genreg.register_plugin(SampleDigits(), name="digits-plugin")
    try:
        info = next(info for info in plugin_infos() if info.name == "digits-plugin")
        info.distribution, info.version = "genreg-digits", "1.2.0"  # as an installed package would say
        path = recording(tmp_path, {"type": "sample-digits"})
        assert len(recorded_data(path)[1].test) == 1000
    finally:
        genreg.unregister_plugin("digits-plugin")
    return path


def test_the_dataset_plugin_is_recorded_and_named_when_missing(saved_with_a_dataset_plugin: Path) -> None:
    """Issue 16, case 14: the file did not record the dataset's plugin, so "unknown dataset" named none to install."""
    path = saved_with_a_dataset_plugin
    recorded = json.loads(read_metadata(path)["genreg.plugins"])
    assert recorded == {"builtin": f"genreg {genreg.__version__}", "digits-plugin": "genreg-digits 1.2.0"}
    with pytest.raises(ModelFileError, match=r"unknown dataset 'sample-digits'.*It was saved with plugin "):
        recorded_data(path)
    named = "It was saved with plugin 'digits-plugin' (genreg-digits 1.2.0), which is not loaded here: install it"
    assert_user_error(invoke("eval", path), f"the model file {path} records a dataset", named)
    assert_user_error(invoke("latent", path, "-o", path.parent / "latent.png"), "unknown dataset", named)
    assert not (path.parent / "latent.png").exists()
