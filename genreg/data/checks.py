"""Raw arrays checked and turned into splits: the one set of checks and messages every dataset shares.

A dataset plugin reads its files, then calls :func:`as_split` on each split's
arrays and :func:`finish` on the two splits; every error is a :class:`DataError`
naming the file or dataset and saying what would be valid.
"""

from __future__ import annotations

import torch

from genreg.data.splits import LABEL, DatasetConfig, DataSplits, Split
from genreg.errors import DataError


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
    if len(test) == 0:
        raise DataError(
            f"{source}: the test split is empty, so no epoch could be measured; hold out some images for it "
            f"(e.g. a larger test_fraction, or a test_path), of the {len(train)} there are."
        )
    for name, values in train.columns.items():
        if name not in test.columns or values.is_floating_point() != test.columns[name].is_floating_point():
            raise DataError(f"{source}: column '{name}' must be in both splits, of the same kind (classes or floats).")
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    if config.binarize == "threshold":
        train = train.with_images((train.images > 0.5).float())
        test = test.with_images((test.images > 0.5).float())
    return DataSplits(train, test, num_classes, config.binarize, source)
