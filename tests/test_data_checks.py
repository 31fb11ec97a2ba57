"""Bad data and misfitting plugins are caught before training, naming the file or the plugin and component.

Wrong shapes, NaN pixels and bad labels in a ``.npz``, labels the conditioner cannot encode, and a
third-party component that returns the wrong shape: each is an error at ``genreg validate`` and at
``genreg run`` before any training step (exit code 2, one message, no traceback, no run folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from genreg.errors import AssemblyError, DataError
from genreg.plugin.protocols import LatentSample
from genreg.training import runner
from genreg_builtin.conditioners import OneHot, OneHotConfig
from genreg_builtin.latents import GaussianConfig, GaussianLatent
from genreg_builtin.mlp import MLPDecoder, MLPDecoderConfig, MLPEncoder, MLPEncoderConfig

N = 40
SMALL = {"latent_dim": 2, "encoder": {"type": "mlp", "hidden": [8]}, "decoder": {"type": "mlp", "hidden": [8]}}


def good_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"images": rng.integers(0, 256, (N, 8, 8), dtype=np.uint8), "labels": np.arange(N) % 5}


def write_npz(path: Path, **changes: np.ndarray) -> Path:
    np.savez(path, **{**good_arrays(), **changes})
    return path


def nan_images() -> np.ndarray:
    images = good_arrays()["images"] / 255.0
    images[3, 2, 2] = np.nan
    images[17, 0, 5] = np.inf
    return images


BAD_DATA = {
    "flat images": ({"images": np.zeros((N, 64), np.uint8)}, "images must have shape (N, H, W) or (N, C, H, W)"),
    "5-D images": ({"images": np.zeros((N, 1, 1, 8, 8), np.uint8)}, "got (40, 1, 1, 8, 8)"),
    "zero-width images": ({"images": np.zeros((N, 8, 0), np.uint8)}, "with C, H and W at least 1, got (40, 1, 8, 0)"),
    "labels per row": ({"labels": np.zeros((N, 1), np.int64)}, "one label per image (40), got shape (40, 1)"),
    "too few labels": ({"labels": np.zeros(N - 1, np.int64)}, "one label per image (40), got shape (39,)"),
    "NaN pixels": ({"images": nan_images()}, "2 of 40 images contain NaN or infinite pixels (the first is image 3)"),
    "NaN labels": ({"labels": np.full(N, np.nan)}, "labels contain NaN or infinite values"),
    "fractional labels": ({"labels": np.full(N, 0.5)}, "labels must be whole numbers (class indices)"),
    "negative labels": ({"labels": np.arange(N) - 1}, "labels must be class indices >= 0, got -1"),
    "text labels": ({"labels": np.array(["cat"] * N)}, "labels must be a numeric array, got <U3"),
    "int16 images": ({"images": np.zeros((N, 8, 8), np.int16)}, "images must be uint8 (0..255) or float in [0, 1]"),
    "grey levels 0..255 as floats": ({"images": np.full((N, 8, 8), 255.0)}, "float images must lie in [0, 1]"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_arrays_are_a_data_error_naming_the_file(tmp_path, case):
    changes, problem = BAD_DATA[case]
    path = write_npz(tmp_path / "digits.npz", **changes)
    with pytest.raises(DataError) as caught:
        genreg.load_data({"type": "npz", "path": str(path)})
    assert str(caught.value).startswith(f"{path}: ") and problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_arrays_in_the_test_file_name_the_test_file(tmp_path):
    train = write_npz(tmp_path / "train.npz")
    test = write_npz(tmp_path / "test.npz", images=nan_images())
    with pytest.raises(DataError, match=f"^{test}: 2 of 40 images contain NaN"):
        genreg.load_data({"type": "npz", "path": str(train), "test_path": str(test)})


@pytest.fixture
def no_training(monkeypatch):
    """Make any training step a test failure: the errors under test must come first."""

    def train(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(runner, "train", train)


def spec_file(tmp_path: Path, data: dict, model: dict | None = None) -> Path:
    path = tmp_path / "spec.json"
    spec = {"model": {"type": "cvae", **SMALL, **(model or {})}, "data": data, "train": {"epochs": 1}}
    path.write_text(json.dumps(spec))
    return path


def assert_exit_2(result, *fragments: str) -> None:
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert "Traceback" not in result.output and result.stdout == ""
    assert result.stderr.startswith("Error: ")
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.mark.parametrize("case", ["NaN pixels", "5-D images", "text labels"])
def test_the_cli_reports_bad_data_before_training(tmp_path, no_training, case):
    changes, problem = BAD_DATA[case]
    data = write_npz(tmp_path / "digits.npz", **changes)
    spec = spec_file(tmp_path, {"type": "npz", "path": str(data)})
    out = tmp_path / "run"
    for command in (["validate", str(spec)], ["run", str(spec), "--out", str(out), "--quiet"]):
        assert_exit_2(CliRunner().invoke(cli, command), f"Error: {data}: ", problem)
    assert not out.exists()


# --------------------------------------------------------------------------- labels the conditioner cannot encode


@pytest.mark.parametrize("conditioner", ["onehot", "embedding"])
def test_labels_beyond_the_conditioners_classes_fail_before_training(tmp_path, no_training, conditioner):
    data = write_npz(tmp_path / "digits.npz")  # labels 0..4
    spec = genreg.load_spec(spec_file(tmp_path, {"type": "npz", "path": str(data)}))
    spec = genreg.load_spec(spec.model_dump(mode="json"), [f'model.conditioner={{"type": "{conditioner}"}}'])
    spec = genreg.load_spec(spec.model_dump(mode="json"), ["model.conditioner.num_classes=3"])
    with pytest.raises(AssemblyError) as caught:
        genreg.run(spec, tmp_path / "run", progress=False)
    assert str(caught.value) == (
        f"model.conditioner[0] (column 'label'): conditioner '{conditioner}': num_classes=3, but the dataset "
        "has labels up to 4; set num_classes >= 5 "
        f"or null (the dataset's). The data, {data}, has 5 classes and images of 1x8x8."
    )
    assert not (tmp_path / "run").exists()


def test_a_label_only_the_test_file_has_counts_too(tmp_path, no_training):
    train = write_npz(tmp_path / "train.npz", labels=np.arange(N) % 3)
    test = write_npz(tmp_path / "test.npz", labels=np.full(N, 6))
    data = {"type": "npz", "path": str(train), "test_path": str(test)}
    spec = spec_file(tmp_path, data, {"conditioner": {"type": "onehot", "num_classes": 3}})
    result = CliRunner().invoke(cli, ["run", str(spec), "--out", str(tmp_path / "run"), "--quiet"])
    assert_exit_2(
        result, "num_classes=3, but the dataset has labels up to 6", f"The data, {train} and {test}, has 7 classes"
    )
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- plugin parts that return the wrong shape


class WideConditioner(OneHot):
    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([super().forward(labels), torch.zeros(len(labels), 1)], dim=1)


class ShortEncoder(MLPEncoder):
    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return super().forward(x, condition)[:, :-1]


class NarrowLatent(GaussianLatent):
    def forward(self, features: torch.Tensor) -> LatentSample:
        sample = super().forward(features)
        return LatentSample(sample.z[:, :-1], sample.params)


class CroppedDecoder(MLPDecoder):
    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return super().forward(z, condition)[..., :-1]


class Misfits:
    """A third-party plugin whose parts each return one column too few or too many."""

    @genreg.hookimpl
    def register_components(self, register):
        register("conditioner", "wide", WideConditioner, OneHotConfig)
        register("encoder", "short", ShortEncoder, MLPEncoderConfig)
        register("latent", "narrow", NarrowLatent, GaussianConfig)
        register("decoder", "cropped", CroppedDecoder, MLPDecoderConfig)


@pytest.fixture(scope="module")
def misfits():
    genreg.register_plugin(Misfits(), name="misfits")
    yield
    genreg.unregister_plugin("misfits")


MISFITS = {
    "conditioner": ({"type": "wide"}, "conditioner 'wide' (plugin 'misfits') returned condition of shape (2, 6); "
                    "expected (2, 5)."),
    "encoder": ({"type": "short", "hidden": [8]}, "encoder 'short' (plugin 'misfits') returned features of shape "
                "(2, 7); expected (2, 8)."),
    "latent": ({"type": "narrow"}, "latent 'narrow' (plugin 'misfits') returned z of shape (2, 1); expected (2, 2)."),
    "decoder": ({"type": "cropped", "hidden": [8]}, "decoder 'cropped' (plugin 'misfits') returned logits of shape "
                "(2, 1, 8, 7); expected (2, 1, 8, 8)."),
}  # fmt: skip


@pytest.mark.parametrize("slot", list(MISFITS))
def test_a_plugin_part_with_the_wrong_shape_is_caught_at_assembly(misfits, slot):
    part, message = MISFITS[slot]
    with pytest.raises(AssemblyError) as caught:
        genreg.build_model({"type": "cvae", **SMALL, slot: part}, genreg.DataInfo((1, 8, 8), 5))
    assert str(caught.value) == message


@pytest.mark.parametrize("slot", ["conditioner", "decoder"])
def test_the_cli_names_the_plugin_and_component_before_training(tmp_path, misfits, no_training, slot):
    part, message = MISFITS[slot]
    data = write_npz(tmp_path / "digits.npz")
    spec = spec_file(tmp_path, {"type": "npz", "path": str(data)}, {slot: part})
    out = tmp_path / "run"
    for command in (["validate", str(spec)], ["run", str(spec), "--out", str(out), "--quiet"]):
        assert_exit_2(
            CliRunner().invoke(cli, command), message, f"The data, {data}, has 5 classes and images of 1x8x8."
        )
    assert not out.exists()
