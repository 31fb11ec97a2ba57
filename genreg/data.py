"""In-memory datasets: every split is a few tensors, moved to the device once.

Dataset plugins return :class:`DataSplits`; the trainer slices batches out of
the resident tensors instead of running a per-sample ``DataLoader``.

Besides the images, a split holds condition columns, one value per image: the
class label (column ``label``) and any others a dataset provides, e.g. the
derived ``ink`` of the MNIST datasets or arrays named in an ``npz`` spec. An
integer column holds classes 0..K-1; a float column is a continuous quantity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


LABEL = "label"  # the name of the class-label column


@dataclass
class Split:
    """Images as float32 in [0, 1], shape (N, C, H, W), int64 labels (N,) and more condition columns.

    ``columns`` maps a name to one value per image: int64 for classes, float32
    for a continuous quantity. The labels are the column named ``label``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    columns: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Split:
        columns = {name: values.to(device) for name, values in self.columns.items()}
        return Split(self.images.to(device), self.labels.to(device), columns)

    def take(self, index: torch.Tensor | slice) -> Split:
        """The images at ``index`` with all their columns."""
        return Split(self.images[index], self.labels[index], {k: v[index] for k, v in self.columns.items()})

    def with_images(self, images: torch.Tensor) -> Split:
        """The same columns beside other images (e.g. binarised ones)."""
        return Split(images, self.labels, self.columns)

    def condition(self, index: torch.Tensor | slice = slice(None)) -> dict[str, torch.Tensor]:
        """Every condition column (the labels under ``label``) at ``index``: what a model's conditioners read."""
        return {LABEL: self.labels[index], **{name: values[index] for name, values in self.columns.items()}}


def column_classes(values: torch.Tensor) -> int:
    """A column's kind as :class:`DataInfo` records it: the number of classes, or 0 for a continuous one."""
    if values.is_floating_point():
        return 0
    return int(values.max()) + 1 if values.numel() else 1


@dataclass
class DataInfo:
    """What a model needs to know about its data to be rebuilt without it.

    ``columns`` names every condition column with its number of classes (0 for a
    continuous column); ``label`` is always there, with ``num_classes``.
    """

    image_shape: tuple[int, int, int]
    num_classes: int
    columns: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.columns = {LABEL: self.num_classes, **{k: v for k, v in self.columns.items() if k != LABEL}}

    def to_json(self) -> dict:
        return {"image_shape": list(self.image_shape), "num_classes": self.num_classes, "columns": self.columns}

    @classmethod
    def from_json(cls, value: dict) -> DataInfo:
        columns = {str(k): int(v) for k, v in value.get("columns", {}).items()}
        return cls(tuple(value["image_shape"]), int(value["num_classes"]), columns)


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
        columns = {
            name: max(column_classes(values), column_classes(self.test.columns.get(name, values)))
            for name, values in self.train.columns.items()
        }
        return DataInfo(tuple(self.train.images.shape[1:]), self.num_classes, columns)


def _tensor(array: object, what: str, source: str) -> torch.Tensor:
    """``array`` as a tensor; an array of strings or objects is a :class:`DataError`, not a TypeError."""
    try:
        return torch.as_tensor(array)
    except (TypeError, ValueError, RuntimeError):
        kind = getattr(array, "dtype", type(array).__name__)
        raise DataError(f"{source}: {what} must be a numeric array, got {kind}.") from None


def as_split(
    images: torch.Tensor, labels: torch.Tensor, source: str, columns: dict[str, object] | None = None
) -> Split:
    """Check and convert raw arrays: uint8 0..255 or floats in [0, 1], (N,H,W) or (N,C,H,W).

    ``columns`` are further condition columns (1-D, one value per image). ``source``
    names the file or dataset in every error message.
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
    checked = {name: as_column(values, name, images.shape[0], source) for name, values in (columns or {}).items()}
    if images.dtype == torch.uint8:
        return Split(images.float().div_(255.0), labels, checked)
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
    return Split(images.contiguous(), labels, checked)


def as_column(values: object, name: str, n: int, source: str) -> torch.Tensor:
    """A condition column checked: 1-D, one value per image, classes >= 0 or finite floats."""
    what = f"column '{name}'"
    if name == LABEL:
        raise DataError(f"{source}: the {what} is the class label itself; name the extra column differently.")
    values = _tensor(values, what, source)
    if values.dim() != 1 or values.shape[0] != n:
        raise DataError(
            f"{source}: {what} must be a 1-D array with one value per image ({n}), got shape {tuple(values.shape)}."
        )
    if values.dtype == torch.bool:
        values = values.long()
    if values.is_floating_point():
        bad = (~torch.isfinite(values)).nonzero().flatten()
        if len(bad):
            raise DataError(
                f"{source}: {what} has {len(bad)} NaN or infinite values (the first at image {int(bad[0])}); a "
                "continuous condition must be finite for every image."
            )
        return values.float()
    values = values.long()
    if values.numel() and values.min() < 0:
        raise DataError(
            f"{source}: {what} holds integers, read as classes, so they must be >= 0; got {int(values.min())}."
        )
    return values


def finish(train: Split, test: Split, config: DatasetConfig, source: str) -> DataSplits:
    """Combine checked splits into :class:`DataSplits`, applying static binarisation."""
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{source}: train and test images differ in shape: "
            f"{tuple(train.images.shape[1:])} vs {tuple(test.images.shape[1:])}."
        )
    if len(train) == 0:
        raise DataError(f"{source}: the training split is empty.")
    for name, values in train.columns.items():
        if name not in test.columns or values.is_floating_point() != test.columns[name].is_floating_point():
            raise DataError(f"{source}: column '{name}' must be in both splits, of the same kind (classes or floats).")
    num_classes = int(max(train.labels.max(), test.labels.max() if len(test) else 0)) + 1
    if config.binarize == "threshold":
        train = train.with_images((train.images > 0.5).float())
        test = test.with_images((test.images > 0.5).float())
    return DataSplits(train, test, num_classes, config.binarize, source)


def fixed_binarization(split: Split, binarize: str, seed: int = 0) -> Split:
    """With dynamic binarisation, one fixed Bernoulli draw: training's test metrics and `genreg eval` share it."""
    if binarize != "dynamic":
        return split
    generator = torch.Generator(device=split.images.device).manual_seed(seed)
    return split.with_images(torch.bernoulli(split.images, generator=generator))
