"""Tests genreg/spec/train.py, ``TrainConfig``: the fast-path settings are auto, true or false, and numbers
must be finite (here and, in the same test, a loss term's weight); a device is one torch knows."""

from __future__ import annotations

import re

import pytest

import genreg
from genreg.errors import SpecError
from genreg.spec import TrainConfig


@pytest.mark.parametrize("field", ["compile", "cuda_graph"])
def test_fast_path_settings_are_auto_true_or_false(field: str) -> None:
    assert getattr(TrainConfig(), field) == "auto"
    assert getattr(TrainConfig(**{field: False}), field) is False
    with pytest.raises(SpecError, match=f"train.{field}"):
        genreg.validate_spec({"model": {"type": "vae"}, "data": {"type": "mnist-sample"}, "train": {field: "yes"}})


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("train", "lr", "inf"),
        ("train", "grad_clip", "inf"),
        ("train", "weight_decay", "nan"),
        ("loss", "weight", "inf"),
    ],
)
def test_infinite_or_nan_numbers_are_refused(section: str, field: str, value: str) -> None:
    spec = {"model": {"type": "vae"}, "data": {"type": "mnist-sample"}}
    if section == "train":
        spec["train"], path = {field: float(value)}, f"train.{field}"
    else:
        spec["model"]["losses"], path = [{"type": "bce", field: float(value)}], f"model.losses[0].{field}"
    with pytest.raises(SpecError, match=rf"{re.escape(path)}: Input should be a finite number"):
        genreg.validate_spec(spec)


@pytest.mark.parametrize("device", ["banana", "cuda:x", "gpu0", "mps", "meta", "xla", "hpu", "cpu:5", "CUDA", ""])
def test_a_device_genreg_does_not_train_on_is_refused_at_validation(device: str) -> None:
    """Case 1 of issue 15: validate accepted `device: banana`, which run then refused after deleting a run; and
    devices torch knows but genreg's training does not support (mps, meta, ...) ended in tracebacks mid-run."""
    spec = {"model": {"type": "vae"}, "data": {"type": "mnist-sample"}, "train": {"device": device}}
    with pytest.raises(SpecError, match=r"train\.device: Value error, must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        genreg.validate_spec(spec)
    assert TrainConfig(device="cuda:1").device == "cuda:1"  # a device this machine may lack is a device


def test_pictures_are_on_by_default_and_a_boolean() -> None:
    """Case 7 of issue 16: a run must be able to skip its pictures."""
    assert TrainConfig().pictures is True and TrainConfig(pictures=False).pictures is False
    with pytest.raises(SpecError, match="train.pictures"):
        genreg.validate_spec({"model": {"type": "vae"}, "data": {"type": "mnist-sample"}, "train": {"pictures": "no"}})
