"""Tests plugins/genreg_builtin/datasets.py: the built-in datasets load real files, split them as documented,
derive the ink column, read extra npz columns as conditions, and fail with clear DataErrors."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg import limits
from genreg.cli import cli
from genreg.errors import DataError
from genreg_builtin import datasets
from genreg_builtin.datasets import (
    MnistSampleConfig,
    NpzConfig,
    TorchvisionConfig,
    load_fashion_mnist,
    load_mnist,
    load_mnist_sample,
    load_npz,
)
from tests.helpers import npy_bytes, npy_header, zip_npz

# --------------------------------------------------------------------------- mnist-sample


@pytest.fixture(scope="module")
def sample():
    return load_mnist_sample(MnistSampleConfig())


def test_mnist_sample_shapes_and_range(sample):
    assert sample.train.images.shape == (4000, 1, 28, 28)
    assert sample.test.images.shape == (1000, 1, 28, 28)
    assert sample.train.images.dtype == torch.float32
    assert sample.train.labels.dtype == torch.int64
    for split in (sample.train, sample.test):
        assert split.images.min() >= 0 and split.images.max() <= 1
    # Real grey levels survive: not already binary.
    assert ((sample.train.images > 0) & (sample.train.images < 1)).any()
    assert sample.num_classes == 10
    assert sample.info.image_shape == (1, 28, 28)


def test_mnist_sample_is_stratified_400_100(sample):
    assert torch.bincount(sample.train.labels, minlength=10).tolist() == [400] * 10
    assert torch.bincount(sample.test.labels, minlength=10).tolist() == [100] * 10


def test_mnist_sample_train_and_test_do_not_overlap(sample):
    train_bytes = {row.tobytes() for row in sample.train.images.flatten(1).numpy()}
    test_bytes = {row.tobytes() for row in sample.test.images.flatten(1).numpy()}
    assert len(train_bytes) == 4000 and len(test_bytes) == 1000
    assert not train_bytes & test_bytes


def test_mnist_sample_split_is_fixed(sample):
    torch.manual_seed(123)
    np.random.seed(123)
    again = load_mnist_sample(MnistSampleConfig())
    assert torch.equal(again.train.images, sample.train.images)
    assert torch.equal(again.train.labels, sample.train.labels)
    assert torch.equal(again.test.images, sample.test.images)
    assert torch.equal(again.test.labels, sample.test.labels)


def test_mnist_sample_threshold_binarize_gives_zeros_and_ones(sample):
    data = load_mnist_sample(MnistSampleConfig(binarize="threshold"))
    for split in (data.train, data.test):
        assert set(split.images.unique().tolist()) == {0.0, 1.0}
    assert data.binarize == "threshold"
    assert torch.equal(data.train.images, (sample.train.images > 0.5).float())


def test_mnist_data_carries_the_label_and_the_derived_ink(mnist: genreg.DataSplits) -> None:
    assert mnist.info.columns == {"label": 10, "ink": 0}
    ink = mnist.train.columns["ink"]
    assert torch.allclose(ink, mnist.train.images.mean(dim=(1, 2, 3)))
    assert set(mnist.train.condition(slice(0, 3))) == {"label", "ink"}


# --------------------------------------------------------------------------- torchvision (real IDX files)


def _write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3: big-endian magic 2051 (uint8, 3 dims), the three dims, then the pixels."""
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes())


def _write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """IDX1: big-endian magic 2049 (uint8, 1 dim), the count, then the labels."""
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def _write_torchvision_files(root: Path, folder: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train_images": rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(12, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8),
        "test_labels": np.array([9, 3, 0, 1, 2], dtype=np.uint8),
    }
    _write_idx_images(raw / "train-images-idx3-ubyte", arrays["train_images"])
    _write_idx_labels(raw / "train-labels-idx1-ubyte", arrays["train_labels"])
    _write_idx_images(raw / "t10k-images-idx3-ubyte", arrays["test_images"])
    _write_idx_labels(raw / "t10k-labels-idx1-ubyte", arrays["test_labels"])
    return arrays


@pytest.mark.parametrize(("loader", "folder"), [(load_mnist, "MNIST"), (load_fashion_mnist, "FashionMNIST")])
def test_torchvision_datasets_read_idx_files(tmp_path, loader, folder):
    written = _write_torchvision_files(tmp_path, folder, seed=len(folder))
    data = loader(TorchvisionConfig(root=str(tmp_path)))
    assert data.train.images.shape == (12, 1, 28, 28)
    assert data.test.images.shape == (5, 1, 28, 28)
    expected_train = torch.from_numpy(written["train_images"]).float().div(255).unsqueeze(1)
    expected_test = torch.from_numpy(written["test_images"]).float().div(255).unsqueeze(1)
    assert torch.equal(data.train.images, expected_train)
    assert torch.equal(data.test.images, expected_test)
    assert data.train.labels.tolist() == written["train_labels"].tolist()
    assert data.test.labels.tolist() == written["test_labels"].tolist()
    assert data.num_classes == 10


def test_mnist_and_fashion_mnist_read_their_own_folders(tmp_path):
    mnist = _write_torchvision_files(tmp_path, "MNIST", seed=1)
    fashion = _write_torchvision_files(tmp_path, "FashionMNIST", seed=2)
    config = TorchvisionConfig(root=str(tmp_path))
    for loader, written in ((load_mnist, mnist), (load_fashion_mnist, fashion)):
        pixels = loader(config).test.images[:, 0].mul(255).round().byte()
        assert torch.equal(pixels, torch.from_numpy(written["test_images"]))


@pytest.mark.parametrize(("loader", "folder"), [(load_mnist, "MNIST"), (load_fashion_mnist, "FashionMNIST")])
def test_missing_torchvision_files_raise_data_error_naming_root(tmp_path, loader, folder):
    root = tmp_path / "no-data-here"
    with pytest.raises(DataError) as caught:
        loader(TorchvisionConfig(root=str(root)))
    message = str(caught.value)
    assert str(root) in message
    assert str(root / folder / "raw" / "train-images-idx3-ubyte") in message
    assert "download: true" in message
    assert "\n" not in message


def test_partly_missing_torchvision_files_are_listed(tmp_path):
    _write_torchvision_files(tmp_path, "MNIST", seed=0)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"missing: t10k-labels-idx1-ubyte\)"):
        load_mnist(TorchvisionConfig(root=str(tmp_path)))


def test_failed_download_raises_data_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def no_network(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirror, got: no route")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", no_network)
    with pytest.raises(DataError) as caught:
        load_mnist(TorchvisionConfig(root=str(tmp_path), download=True))
    message = str(caught.value)
    assert "could not download MNIST" in message and str(tmp_path) in message
    assert "\n" not in message


# --------------------------------------------------------------------------- npz


def _save(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return str(path)


def test_npz_round_trip_uint8_with_test_file(tmp_path):
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, size=(6, 3, 8, 5), dtype=np.uint8)
    test_images = rng.integers(0, 256, size=(4, 3, 8, 5), dtype=np.uint8)
    train = _save(tmp_path / "train.npz", images=train_images, labels=np.array([0, 1, 2, 0, 1, 2]))
    test = _save(tmp_path / "test.npz", images=test_images, labels=np.array([3, 0, 1, 2]))
    data = load_npz(NpzConfig(path=train, test_path=test))
    assert torch.equal(data.train.images, torch.from_numpy(train_images).float() / 255)
    assert torch.equal(data.test.images, torch.from_numpy(test_images).float() / 255)
    assert data.train.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert data.test.labels.tolist() == [3, 0, 1, 2]
    assert data.num_classes == 4
    assert data.info.image_shape == (3, 8, 5)


def test_npz_round_trip_float_with_custom_keys(tmp_path):
    images = np.random.default_rng(1).random((10, 7, 7)).astype(np.float32)
    labels = np.repeat(np.arange(5), 2)
    path = _save(tmp_path / "x.npz", x=images, y=labels)
    test = _save(tmp_path / "t.npz", x=images[:3], y=labels[:3])
    data = load_npz(NpzConfig(path=path, test_path=test, images_key="x", labels_key="y"))
    assert data.train.images.shape == (10, 1, 7, 7)
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(images))
    assert data.train.labels.tolist() == labels.tolist()


def test_npz_test_fraction_split_is_stratified_and_seeded(tmp_path):
    labels = np.repeat(np.arange(4), [50, 30, 20, 10])
    images = np.arange(len(labels), dtype=np.uint8)[:, None, None].repeat(2, axis=1).repeat(2, axis=2)
    path = _save(tmp_path / "d.npz", images=images, labels=labels)
    data = load_npz(NpzConfig(path=path, test_fraction=0.2))
    assert torch.bincount(data.test.labels, minlength=4).tolist() == [10, 6, 4, 2]
    assert torch.bincount(data.train.labels, minlength=4).tolist() == [40, 24, 16, 8]
    # Every image (unique pixel value) ends up in exactly one split.
    train_ids = set(data.train.images[:, 0, 0, 0].mul(255).round().long().tolist())
    test_ids = set(data.test.images[:, 0, 0, 0].mul(255).round().long().tolist())
    assert not train_ids & test_ids and train_ids | test_ids == set(range(len(labels)))
    # Same seed, same split; another seed, another split.
    assert torch.equal(load_npz(NpzConfig(path=path, test_fraction=0.2)).test.images, data.test.images)
    other = load_npz(NpzConfig(path=path, test_fraction=0.2, split_seed=1))
    assert not torch.equal(other.test.images, data.test.images)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_npz_test_fraction_must_be_between_0_and_1(fraction):
    with pytest.raises(pydantic.ValidationError):
        NpzConfig(path="x.npz", test_fraction=fraction)


def test_npz_missing_file(tmp_path):
    path = str(tmp_path / "nope.npz")
    with pytest.raises(DataError, match="file not found") as caught:
        load_npz(NpzConfig(path=path))
    assert path in str(caught.value)


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda path: path.mkdir(), "a directory"),
        (os.mkfifo, r"a named pipe \(FIFO\)"),
        (lambda path: path.symlink_to("/dev/null"), "a character device"),
    ],
)
def test_an_npz_path_that_is_not_a_regular_file_is_named_by_its_kind(tmp_path, make, kind):
    """They were all reported as "file not found"."""
    path = _save(tmp_path / "d.npz", images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 1]))
    odd = tmp_path / "test.npz"
    make(odd)
    with pytest.raises(DataError, match=rf"test\.npz is {kind}, not a regular file"):
        load_npz(NpzConfig(path=path, test_path=str(odd)))


def test_npz_missing_test_file(tmp_path):
    path = _save(tmp_path / "d.npz", images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 1]))
    missing = str(tmp_path / "test-missing.npz")
    with pytest.raises(DataError) as caught:
        load_npz(NpzConfig(path=path, test_path=missing))
    assert missing in str(caught.value)


def test_npz_not_an_npz(tmp_path):
    path = tmp_path / "d.npz"
    path.write_text("1,2,3\n")
    with pytest.raises(DataError, match="not a .npz archive") as caught:
        load_npz(NpzConfig(path=str(path)))
    assert str(path) in str(caught.value)


def test_npz_missing_key_lists_keys_present(tmp_path):
    path = _save(tmp_path / "d.npz", pixels=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 1]))
    with pytest.raises(DataError) as caught:
        load_npz(NpzConfig(path=path))
    message = str(caught.value)
    assert path in message and "'images'" in message
    assert "'pixels'" in message and "'labels'" in message


def test_npz_wrong_label_length(tmp_path):
    path = _save(tmp_path / "d.npz", images=np.zeros((3, 4, 4), np.uint8), labels=np.array([0, 1]))
    with pytest.raises(DataError, match="one label per sample") as caught:
        load_npz(NpzConfig(path=path))
    assert path in str(caught.value)


def test_npz_nan_pixels(tmp_path):
    images = np.zeros((3, 4, 4), np.float32)
    images[1, 2, 3] = np.nan
    path = _save(tmp_path / "d.npz", images=images, labels=np.array([0, 1, 0]))
    with pytest.raises(DataError, match="NaN") as caught:
        load_npz(NpzConfig(path=path))
    assert path in str(caught.value)


def test_npz_float_pixels_outside_unit_interval(tmp_path):
    images = np.full((3, 4, 4), 200.0, np.float32)
    path = _save(tmp_path / "d.npz", images=images, labels=np.array([0, 1, 0]))
    with pytest.raises(DataError, match=r"\[0, 1\]") as caught:
        load_npz(NpzConfig(path=path))
    assert path in str(caught.value)


def test_npz_errors_in_test_file_name_the_test_file(tmp_path):
    path = _save(tmp_path / "d.npz", images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 1]))
    test = _save(tmp_path / "t.npz", images=np.full((2, 4, 4), -1.0), labels=np.array([0, 1]))
    with pytest.raises(DataError) as caught:
        load_npz(NpzConfig(path=path, test_path=test))
    assert test in str(caught.value)


def test_npz_threshold_binarize(tmp_path):
    images = np.array([[[0, 100], [200, 255]]] * 4, dtype=np.uint8)
    path = _save(tmp_path / "d.npz", images=images, labels=np.array([0, 0, 1, 1]))
    data = load_npz(NpzConfig(path=path, test_path=path, binarize="threshold"))
    assert data.train.images[0, 0].tolist() == [[0.0, 0.0], [1.0, 1.0]]


# Case 19 of issue 15: an npz whose header claims 2**31 images was allocated before anything checked it, and
# the failed allocation blamed latent_dim; every header is now read first, and each problem names the array.

LABELS = npy_bytes(np.arange(4) % 2)


@pytest.mark.parametrize(
    ("images", "says"),
    [
        (npy_header((2**31, 28, 28)) + bytes(100), "array 'images' claims shape (2147483648, 28, 28) of uint8 "
         "(1.7 TB), but the file holds only 100 bytes for it: it is truncated or damaged"),
        (npy_header((-4, 2, 2)), "array 'images' claims a negative shape (-4, 2, 2); the file is damaged"),
        (b"1,2,3\n" * 20, "array 'images' is not a valid .npy array (the magic string is not correct"),
        (npy_bytes(np.array([{"x": 1}] * 4, dtype=object)), "array 'images' holds Python objects (dtype object), "
         "which genreg never unpickles"),
    ],
    ids=["claims 2**31 images", "negative shape", "not npy", "pickled objects"],
)  # fmt: skip
def test_a_damaged_npz_array_is_a_data_error_naming_file_and_array(tmp_path, images, says):
    path = zip_npz(tmp_path / "d.npz", {"images.npy": images, "labels.npy": LABELS})
    with pytest.raises(DataError) as caught:
        genreg.load_data({"type": "npz", "path": str(path)})
    assert str(caught.value).startswith(f"{path}: {says}")


def test_an_npz_larger_than_the_machine_is_refused_before_reading(tmp_path, monkeypatch):
    path = _save(tmp_path / "d.npz", images=np.zeros((4, 8, 8), np.uint8), labels=np.arange(4) % 2)
    monkeypatch.setattr(limits, "available_memory", lambda: (200, "available on this machine"))
    monkeypatch.setattr(datasets.npy, "read_array", lambda *_, **__: pytest.fail("read an array too large"))
    with pytest.raises(DataError, match=r"loading the arrays 'images', 'labels' needs about 288 bytes of memory, "
                       r"but only 200 bytes is available on this machine; use a smaller file"):  # fmt: skip
        load_npz(NpzConfig(path=path))


def test_a_truncated_npz_is_a_data_error(tmp_path):
    path = Path(_save(tmp_path / "d.npz", images=np.zeros((40, 8, 8), np.uint8), labels=np.arange(40) % 2))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match=f"^{path}: not a"):
        load_npz(NpzConfig(path=str(path)))


def test_npz_members_in_other_byte_orders_and_widths_load(tmp_path):
    labels = (np.arange(6) % 3).astype(">u4")
    path = _save(tmp_path / "d.npz", images=np.zeros((6, 4, 4), ">f8"), labels=labels)
    data = load_npz(NpzConfig(path=path, test_path=path))
    assert data.train.labels.tolist() == [0, 1, 2, 0, 1, 2] and data.train.images.dtype == torch.float32


def test_a_run_on_a_relative_npz_path_is_read_back_from_another_folder(tmp_path, monkeypatch):
    """The recorded spec holds the absolute path, so later commands work from any working folder."""
    data = tmp_path / "project"
    data.mkdir()
    rng = np.random.default_rng(0)
    np.savez(data / "d.npz", images=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), labels=np.arange(40) % 2)
    spec = {"model": {"type": "vae", "latent_dim": 2, "encoder": {"hidden": [8]}, "decoder": {"hidden": [8]}},
            "data": {"type": "npz", "path": "d.npz"}, "train": {"epochs": 1, "batch_size": 16}}  # fmt: skip
    (data / "spec.json").write_text(json.dumps(spec))
    monkeypatch.chdir(data)
    result = CliRunner().invoke(cli, ["run", "spec.json", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "spec.json").read_text())["data"]["path"] == str(data / "d.npz")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["latent", str(tmp_path / "run"), "-o", str(tmp_path / "latent.png")])
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- npz columns as conditions


def write_npz(path: Path, **columns: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 8, 8), dtype=np.uint8)
    np.savez(path, images=images, labels=np.arange(60) % 3, **columns)
    return path


def run_spec(tmp_path: Path, model: dict, data: dict) -> tuple[int, str]:
    spec = {"model": model, "data": data, "train": {"epochs": 1, "batch_size": 16}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "spec.json"), "--out", str(out), "--quiet"])
    return result.exit_code, result.output


SMALL = {"type": "cvae", "latent_dim": 2, "encoder": {"hidden": [16]}, "decoder": {"hidden": [16]}}


def test_an_npz_column_becomes_a_condition(tmp_path: Path) -> None:
    dose = np.linspace(0.0, 5.0, 60).astype(np.float32)
    path = write_npz(tmp_path / "d.npz", dose=dose, lab=np.arange(60) % 2)
    conditioner = [{"type": "onehot"}, {"type": "onehot", "column": "lab"}, {"type": "continuous", "column": "dose"}]
    code, output = run_spec(tmp_path, {**SMALL, "conditioner": conditioner}, {"type": "npz", "path": str(path),
                                                                              "columns": ["dose", "lab"]})  # fmt: skip
    assert code == 0, output
    model = genreg.load_model(tmp_path / "run")
    assert model.data_info.columns == {"label": 3, "dose": 0, "lab": 2}
    assert model.conditioner.dim == 3 + 2 + 1


@pytest.mark.parametrize(
    ("columns", "conditioner", "data_columns", "says"),
    [
        ({}, {"type": "continuous", "column": "dose"}, ["dose"], "no array named 'dose' (named in `columns`)"),
        ({}, {"type": "continuous", "column": "dose"}, [], "the data has no column 'dose'; its columns: label"),
        ({"dose": np.r_[np.nan, np.ones(59)]}, {"type": "continuous", "column": "dose"}, ["dose"],
         "column 'dose' has 1 NaN or infinite values (the first at row 0: nan"),
        ({}, {"type": "onehot", "num_classes": 2}, [], "column 'label'): conditioner 'onehot': num_classes=2"),
    ],
)  # fmt: skip
def test_bad_condition_data_exits_2_naming_the_column(tmp_path, columns, conditioner, data_columns, says) -> None:
    path = write_npz(tmp_path / "d.npz", **columns)
    code, output = run_spec(tmp_path, {**SMALL, "conditioner": conditioner},
                            {"type": "npz", "path": str(path), "columns": data_columns})  # fmt: skip
    assert code == 2, output
    assert says in " ".join(output.split()) and "Traceback" not in output
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_npz_layout_nhwc_reads_channels_last_images(tmp_path: Path) -> None:
    """Case 6 of issue 16: a documented `layout` reads (N, H, W, C) arrays; the default refuses them."""
    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    path = tmp_path / "rgb.npz"
    np.savez(path, images=images, labels=np.arange(20) % 2)
    with pytest.raises(DataError, match="look channels-last"):
        genreg.load_data({"type": "npz", "path": str(path)})
    data = genreg.load_data({"type": "npz", "path": str(path), "layout": "NHWC"})
    assert data.info.image_shape == (3, 8, 8)
    first = data.train.images[0].permute(1, 2, 0).numpy() * 255
    assert any(np.allclose(first, image) for image in images)


def test_the_stratified_split_reuses_the_tables_memory_for_its_training_rows() -> None:
    """Issue 18: splitting a large table held it twice (the whole and both halves); the training half is now
    compacted into the whole's memory, and only the test rows are copied."""
    from genreg_builtin.datasets import _stratified_split

    x = np.random.default_rng(0).normal(size=(10_000, 7)).astype(np.float32)
    labels = np.arange(10_000) % 3
    kept = x.copy()
    split = genreg.data.as_split(x, labels, "t")
    train, test = _stratified_split(split, 0.2, seed=0)
    assert len(train) + len(test) == 10_000 and len(test) == 2_001  # 667 of each class's 3,334 or 3,333
    assert train.images.untyped_storage().data_ptr() == split.images.untyped_storage().data_ptr()
    # every row is one of the table's, in the table's order, its label beside it
    train_rows = [int(i) for i in np.flatnonzero(np.isin(kept[:, 0], train.images[:, 0].numpy()))]
    assert np.array_equal(train.images.numpy(), kept[train_rows]) and np.array_equal(train.labels, labels[train_rows])
    test_rows = sorted(set(range(10_000)) - set(train_rows))
    assert np.array_equal(test.images.numpy(), kept[test_rows])
