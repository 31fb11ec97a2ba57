"""Tests genreg/data/checks.py: bad data is caught before training, naming the file.

Wrong shapes, NaN pixels and bad labels in a ``.npz`` are an error at ``genreg validate`` and at
``genreg run`` before any training step (exit code 2, one message, no traceback, no run folder), and the
classes of a dataset are counted over both of its files.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from genreg.errors import DataError
from tests.helpers import N, assert_user_error, good_arrays, spec_file, write_npz


def nan_images() -> np.ndarray:
    images = good_arrays()["images"] / 255.0
    images[3, 2, 2] = np.nan
    images[17, 0, 5] = np.inf
    return images


BAD_DATA = {
    "one value per sample": ({"images": np.zeros(N, np.uint8)}, "images must have shape (N, H, W) or (N, C, H, W)"),
    "5-D images": ({"images": np.zeros((N, 1, 1, 8, 8), np.uint8)}, "got (40, 1, 1, 8, 8)"),
    "zero-width images": ({"images": np.zeros((N, 8, 0), np.uint8)}, "with every size at least 1; got (40, 1, 8, 0)"),
    "labels per row": ({"labels": np.zeros((N, 1), np.int64)}, "one label per sample (40), got shape (40, 1)"),
    "too few labels": ({"labels": np.zeros(N - 1, np.int64)}, "one label per sample (40), got shape (39,)"),
    "NaN pixels": ({"images": nan_images()}, "2 of 40 images contain NaN or infinite pixels (the first is image 3)"),
    "NaN labels": ({"labels": np.full(N, np.nan)}, "labels contain NaN or infinite values"),
    "fractional labels": ({"labels": np.full(N, 0.5)}, "labels contain fractional values, the first 0.5 at index 0"),
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


@pytest.mark.parametrize("case", ["NaN pixels", "5-D images", "fractional labels"])
def test_the_cli_reports_bad_data_before_training(tmp_path, no_training, case):
    changes, problem = BAD_DATA[case]
    data = write_npz(tmp_path / "digits.npz", **changes)
    spec = spec_file(tmp_path, {"type": "npz", "path": str(data)})
    out = tmp_path / "run"
    for command in (["validate", str(spec)], ["run", str(spec), "--out", str(out), "--quiet"]):
        assert_user_error(CliRunner().invoke(cli, command), f"Error: {data}: ", problem)
    assert not out.exists()


def test_a_label_only_the_test_file_has_counts_too(tmp_path, no_training):
    train = write_npz(tmp_path / "train.npz", labels=np.arange(N) % 3)
    test = write_npz(tmp_path / "test.npz", labels=np.full(N, 6))
    data = {"type": "npz", "path": str(train), "test_path": str(test)}
    spec = spec_file(tmp_path, data, {"conditioner": {"type": "onehot", "num_classes": 3}})
    result = CliRunner().invoke(cli, ["run", str(spec), "--out", str(tmp_path / "run"), "--quiet"])
    assert_user_error(
        result, "num_classes=3, but the dataset's column has 7 classes", f"The data, {train} and {test}, has 7 classes"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("images", [1, 9])
def test_a_dataset_without_test_images_is_refused_when_it_loads(tmp_path, images) -> None:
    """Case 13 of issue 15: an empty test split passed validation and crashed after the first epoch."""
    arrays = {"images": np.zeros((images, 4, 4), dtype=np.uint8), "labels": np.zeros(images, dtype=np.int64)}
    np.savez(tmp_path / "few.npz", **arrays)
    with pytest.raises(DataError, match=r"few\.npz: the test split is empty, so no epoch could be measured"):
        genreg.load_data({"type": "npz", "path": str(tmp_path / "few.npz"), "test_fraction": 0.01})


def huge_label() -> np.ndarray:
    labels = (np.arange(N) % 5).astype(np.float64)
    labels[3] = 1e30
    return labels


# Case 19 of issue 15: a float label of 1e30 was cast to int64 and reported as -9223372036854775808.
BAD_CLASSES = {
    "float label 1e30": ({"labels": huge_label()}, "labels contain values outside the int64 range, the first 1e+30 "
                         "at index 3; they must be whole numbers (class ids) or strings"),
    "uint64 label 2**63": ({"labels": np.full(N, 2**63, np.uint64)}, "labels must fit in int64 (below 2**63), got "
                           "9223372036854775808 at index 0"),
    "complex labels": ({"labels": np.zeros(N, np.complex64)}, "labels must be a numeric array (integers, floats or "
                       "booleans), got complex64"),
    "column beyond float32": ({"dose": np.full(N, 1e300)}, "column 'dose' has 40 NaN or infinite values (the first "
                              "at row 0: 1e+300; float32 ends at 3.4e+38)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_CLASSES))
def test_bad_classes_name_the_file_the_array_and_the_value(tmp_path, case):
    changes, problem = BAD_CLASSES[case]
    path = write_npz(tmp_path / "digits.npz", **changes)
    with pytest.raises(DataError) as caught:
        genreg.load_data({"type": "npz", "path": str(path), "columns": [k for k in changes if k != "labels"]})
    assert str(caught.value).startswith(f"{path}: {problem}")


def test_renamed_arrays_are_named_in_messages(tmp_path):
    arrays = good_arrays()
    np.savez(tmp_path / "d.npz", x=arrays["images"], y=huge_label())
    with pytest.raises(DataError, match=r"d\.npz: labels \(array 'y'\) contain values outside the int64 range"):
        genreg.load_data({"type": "npz", "path": str(tmp_path / "d.npz"), "images_key": "x", "labels_key": "y"})


def test_whole_float_labels_and_wide_unsigned_labels_are_classes(tmp_path):
    for labels in (np.arange(N) % 5 + 0.0, (np.arange(N) % 5).astype(np.uint32), (np.arange(N) % 5).astype(">i8")):
        data = genreg.load_data({"type": "npz", "path": str(write_npz(tmp_path / "d.npz", labels=labels))})
        assert data.num_classes == 5 and data.train.labels.dtype == torch.int64


# --------------------------------------------------------------------------- issue 16, cases 6 and 8


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_last_images_are_refused_naming_the_layout_option(channels: int) -> None:
    """Case 6 of issue 16: (N, 16, 16, C) images validated as 16-channel images of 16xC, trained, then crashed
    drawing samples.png."""
    images = np.zeros((4, 16, 16, channels), np.uint8)
    with pytest.raises(DataError, match='look channels-last .* Set `layout: "NHWC"`'):
        genreg.data.as_split(images, np.arange(4), "x.npz")
    images[1, 2, 3] = 255
    split = genreg.data.as_split(images, np.arange(4), "x.npz", layout="NHWC")
    assert split.images.shape == (4, channels, 16, 16) and split.images[1, :, 2, 3].eq(1).all()
    assert genreg.data.as_split(images, np.arange(4), "x.npz", layout="NCHW").images.shape == (4, 16, 16, channels)


def splits(train: list[int], test: list[int]) -> tuple[genreg.Split, genreg.Split]:
    return tuple(genreg.Split(torch.zeros(len(k), 1, 2, 2), torch.tensor(k)) for k in (train, test))


def test_classes_the_training_split_lacks_are_a_warning_naming_them() -> None:
    """Case 8 of issue 16: labels 1..10 silently became 11 classes with an empty class 0."""
    with pytest.warns(genreg.errors.DataWarning, match=r"column 'label' has 11 classes, .* no sample of 1 of them: 0"):
        data = genreg.data.finish(*splits(list(range(1, 11)), [1, 2]), genreg.data.DatasetConfig(), "x.npz")
    assert data.num_classes == 11 and data.info.absent == {"label": [0]}
    assert data.info.vocabularies == {}  # ids are class indices


def test_ids_that_are_not_0_to_k_minus_1_are_classes_through_a_sorted_vocabulary() -> None:
    """Issue 18: ids 3000 and 7000 train as 2 classes (they were a model of 7,001); ids 1..10 as 10."""
    data = genreg.data.finish(*splits([7000, 3000, 7000], [3000]), genreg.data.DatasetConfig(), "x.npz")
    assert data.num_classes == 2 and data.info.vocabularies == {"label": [3000, 7000]}
    assert data.train.labels.tolist() == [1, 0, 1] and data.test.labels.tolist() == [0]
    assert data.info.class_names() == ["3000", "7000"] and data.info.class_index("label", 7000) == 1
    negative = genreg.data.finish(*splits([-1, 0, 1], [-1]), genreg.data.DatasetConfig(), "x.npz")
    assert negative.info.vocabularies == {"label": [-1, 0, 1]} and negative.test.labels.tolist() == [0]


def test_text_labels_with_a_missing_value_name_the_row() -> None:
    labels = np.array(["cat", None] * (N // 2), dtype=object)
    with pytest.raises(DataError, match=r"^x.csv: labels has 20 missing or non-text values \(the first at row 1: None"):
        genreg.data.as_split(np.zeros((N, 3), np.float32), labels, "x.csv")
