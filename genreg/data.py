"""In-memory datasets: every split is two tensors, moved to the device once.

Dataset plugins return :class:`DataSplits`; the trainer slices batches out of
the resident tensors instead of running a per-sample ``DataLoader``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from genreg.errors import DataError


class DatasetConfig(BaseModel):
    """Fields every dataset accepts; a dataset's config class subclasses this.

    ``binarize``: ``none`` keeps grey levels in [0, 1]; ``dynamic`` draws a fresh
    Bernoulli sample of every training image each time it is used (the usual
    regulariser for Bernoulli VAEs); ``threshold`` rounds every image once.
    """

    model_config = ConfigDict(extra="forbid")

    binarize: Literal["none", "dynamic", "threshold"] = "none"


@dataclass
class Split:
    """Images as float32 in [0, 1], shape (N, C, H, W), and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class DataInfo:
    """What a model needs to know about its data to be rebuilt without it."""

    image_shape: tuple[int, int, int]
    num_classes: int

    def to_json(self) -> dict:
        return {"image_shape": list(self.image_shape), "num_classes": self.num_classes}

    @classmethod
    def from_json(cls, value: dict) -> DataInfo:
        return cls(tuple(value["image_shape"]), int(value["num_classes"]))


@dataclass
class DataSplits:
    """A dataset: a training split, a test split and the number of classes.

    ``source`` names where the data came from (a file, a bundled sample), so that
    a later error about the data, e.g. at model assembly, can name it too.
    """

    train: Split
    test: Split
    num_classes: int
    binarize: str = "none"
    source: str = ""

    @property
    def info(self) -> DataInfo:
        return DataInfo(tuple(self.train.images.shape[1:]), self.num_classes)


def _tensor(array: object, what: str, source: str) -> torch.Tensor:
    """``array`` as a tensor; an array of strings or objects is a :class:`DataError`, not a TypeError."""
    try:
        return torch.as_tensor(array)
    except (TypeError, ValueError, RuntimeError):
        kind = getattr(array, "dtype", type(array).__name__)
        raise DataError(f"{source}: {what} must be a numeric array, got {kind}.") from None


def as_split(images: torch.Tensor, labels: torch.Tensor, source: str) -> Split:
    """Check and convert raw arrays: uint8 0..255 or floats in [0, 1], (N,H,W) or (N,C,H,W).

    ``source`` names the file or dataset in every error message.
    """
    images, labels = _tensor(images, "images", source), _tensor(labels, "labels", source)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or 0 in images.shape[1:]:
        raise DataError(
            f"{source}: images must have shape (N, H, W) or (N, C, H, W) with C, H and W at least 1, "
            f"got {tuple(images.shape)}."
        )
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{source}: labels must be a 1-D array with one label per image "
            f"({images.shape[0]}), got shape {tuple(labels.shape)}."
        )
    if labels.is_floating_point() and not torch.isfinite(labels).all():
        raise DataError(f"{source}: labels contain NaN or infinite values; they must be class indices 0, 1, 2, ...")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise DataError(f"{source}: labels must be whole numbers (class indices), got fractional values.")
    labels = labels.long()
    if labels.numel() and labels.min() < 0:
        raise DataError(f"{source}: labels must be class indices >= 0, got {int(labels.min())}.")
    if images.dtype == torch.uint8:
        return Split(images.float().div_(255.0), labels)
    if not images.is_floating_point():
        raise DataError(f"{source}: images must be uint8 (0..255) or float in [0, 1], got {images.dtype}.")
    images = images.float()
    bad = (~torch.isfinite(images)).flatten(1).any(1).nonzero().flatten()
    if len(bad):
        raise DataError(
            f"{source}: {len(bad)} of {images.shape[0]} images contain NaN or infinite pixels (the first is image "
            f"{int(bad[0])}); fix or drop them."
        )
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise DataError(
            f"{source}: float images must lie in [0, 1], got values in "
            f"[{float(images.min()):.3g}, {float(images.max()):.3g}]; divide by 255 or rescale."
        )
    return Split(images.contiguous(), labels)


def finish(train: Split, test: Split, config: DatasetConfig, source: str) -> DataSplits:
    """Combine checked splits into :class:`DataSplits`, applying static binarisation."""
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{source}: train and test images differ in shape: "
            f"{tuple(train.images.shape[1:])} vs {tuple(test.images.shape[1:])}."
        )
    if len(train) == 0:
        raise DataError(f"{source}: the training split is empty.")
    num_classes = int(max(train.labels.max(), test.labels.max() if len(test) else 0)) + 1
    if config.binarize == "threshold":
        train = Split((train.images > 0.5).float(), train.labels)
        test = Split((test.images > 0.5).float(), test.labels)
    return DataSplits(train, test, num_classes, config.binarize, source)


def fixed_binarization(split: Split, binarize: str, seed: int = 0) -> Split:
    """With dynamic binarisation, one fixed Bernoulli draw: training's test metrics and `genreg eval` share it."""
    if binarize != "dynamic":
        return split
    generator = torch.Generator(device=split.images.device).manual_seed(seed)
    return Split(torch.bernoulli(split.images, generator=generator), split.labels)
