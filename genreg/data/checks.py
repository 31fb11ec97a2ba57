"""Raw arrays checked and turned into splits: the one set of checks and messages every dataset shares.

A dataset plugin reads its files, then calls :func:`as_split` on each split's
arrays and :func:`finish` on the two splits; every error is a :class:`DataError`
naming the file or dataset, the array and what would be valid.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch

from genreg.data.splits import LABEL, DatasetConfig, DataSplits, Split
from genreg.errors import DataError, DataWarning

# Class indices are stored as int64: a float label must be a whole number below 2**63 to become one exactly.
_INT64_BOUND = 2.0**63
#: How images of 4 axes are laid out: (N, C, H, W), (N, H, W, C), or "auto" (NCHW, refusing arrays that look NHWC).
Layout = Literal["auto", "NCHW", "NHWC"]
_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA: the channel counts of pictures
#: A class column is refused when its classes 0..K-1 number more than this many times the classes present,
#: and more than ABSURD_CLASSES: class ids such as 3000 and 7000 taken for indices (a model of 7,001 classes).
ABSURD_FACTOR, ABSURD_CLASSES = 10, 100


def _tensor(array: object, what: str, source: str) -> torch.Tensor:
    """``array`` as a tensor of a dtype torch computes with; anything but numbers is a :class:`DataError`.

    Booleans, integers and floats are numbers; unsigned integers wider than 8 bits become int64 (torch has
    few operations on them), non-native byte orders native. Strings, objects, complex numbers, dates are not.
    """
    if isinstance(array, torch.Tensor):
        return array
    try:
        array = np.asarray(array)
    except (TypeError, ValueError) as error:
        raise DataError(f"{source}: {what} must be a numeric array ({error}).") from None
    if array.dtype.kind not in "biuf":
        raise DataError(f"{source}: {what} must be a numeric array (integers, floats or booleans), got {array.dtype}.")
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:
        too_big = np.flatnonzero(array.ravel() > np.iinfo(np.int64).max)
        if len(too_big):
            index = int(too_big[0])
            raise DataError(
                f"{source}: {what} must fit in int64 (below 2**63), got {array.ravel()[index]} at index {index}."
            )
        array = array.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("="), copy=False)))


def _first(mask: torch.Tensor) -> int | None:
    """The flat index of the first True in ``mask``, or None."""
    hits = mask.flatten().nonzero()
    return int(hits[0]) if len(hits) else None


def _class_indices(values: torch.Tensor, what: str, source: str) -> torch.Tensor:
    """``values`` as int64 class indices 0, 1, 2, ...; floats must be whole numbers within int64's range.

    Raises :class:`DataError` naming ``what`` and the first offending value with its index.
    """
    if values.dtype == torch.bool:
        values = values.long()
    if values.is_floating_point():
        wide = values.double()
        for problem, mask in (
            ("NaN or infinite values", ~torch.isfinite(wide)),
            ("fractional values", wide != wide.round()),
            ("values outside the int64 range", wide.abs() >= _INT64_BOUND),
        ):
            index = _first(mask)
            if index is not None:
                raise DataError(
                    f"{source}: {what} contain {problem}, the first {float(wide[index]):g} at index {index}; they "
                    "must be whole numbers (class indices 0, 1, 2, ...)."
                )
        values = wide
    values = values.long()
    index = _first(values < 0)
    if index is not None:
        raise DataError(f"{source}: {what} must be class indices >= 0, got {int(values[index])} at index {index}.")
    return values


def _named(role: str, key: str) -> str:
    """How messages call an array: its role, with its name in the file where that differs."""
    return role if key == role else f"{role} (array '{key}')"


def as_split(
    images: torch.Tensor,
    labels: torch.Tensor,
    source: str,
    columns: dict[str, object] | None = None,
    *,
    keys: tuple[str, str] = ("images", "labels"),
    layout: Layout = "auto",
) -> Split:
    """Check and convert raw arrays: images (N, H, W) or (N, C, H, W), uint8 0..255 or floats in [0, 1]; or
    vectors (N, F) of finite real numbers.

    A 2-D array is N vectors of F features (a table's rows: any finite values, integers and booleans taken
    as numbers); 3-D and 4-D arrays are images. ``labels`` must be integers >= 0 or whole-number floats
    within int64's range. ``columns`` are further condition columns (1-D, one value per sample). ``source``
    names the file or dataset in every error message, ``keys`` the samples' and labels' arrays in it.
    ``layout`` says how 4-D images are laid out: ``NHWC`` (channels last, as PIL and TensorFlow store them)
    is transposed; ``auto`` takes (N, C, H, W) but refuses images that look channels-last (see
    :func:`channels_first`). Raises :class:`DataError`.
    """
    image_what, label_what = _named("images", keys[0]), _named("labels", keys[1])
    images, labels = _tensor(images, image_what, source), _tensor(labels, label_what, source)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    images = channels_first(images, layout, image_what, source)
    if images.dim() not in (2, 4) or 0 in images.shape[1:]:
        raise DataError(
            f"{source}: {image_what} must have shape (N, H, W) or (N, C, H, W) for images, or (N, F) for vectors "
            f"of F features, with every size at least 1; got {tuple(images.shape)}."
        )
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{source}: {label_what} must be a 1-D array with one label per sample "
            f"({images.shape[0]}), got shape {tuple(labels.shape)}."
        )
    labels = _class_indices(labels, label_what, source)
    checked = {name: as_column(values, name, images.shape[0], source) for name, values in (columns or {}).items()}
    if images.dim() == 2:
        return Split(_features(images, _named("vectors", keys[0]), source), labels, checked)
    return Split(_pixels(images, image_what, source), labels, checked)


def _features(vectors: torch.Tensor, what: str, source: str) -> torch.Tensor:
    """(N, F) vectors as float32: any finite numbers (integers and booleans as numbers); a NaN or an infinity,
    or a value beyond float32's range, is a :class:`DataError` naming the first row and feature holding one."""
    single = vectors.float()
    bad = ~torch.isfinite(single)
    index = _first(bad)
    if index is not None:
        row, feature = divmod(index, vectors.shape[1])
        raise DataError(
            f"{source}: {what} hold {int(bad.sum())} NaN or infinite values (the first at row {row}, feature "
            f"{feature}: {float(vectors[row, feature]):g}; float32 ends at 3.4e+38); every feature of every row "
            "must be a finite number: fill or drop the missing values first."
        )
    return single.contiguous()


def channels_first(images: torch.Tensor, layout: Layout, what: str, source: str) -> torch.Tensor:
    """4-D ``images`` as (N, C, H, W): ``NHWC`` transposed, ``NCHW`` as given; ``auto`` as given unless the last
    axis holds 1, 3 or 4 values (grey, RGB, RGBA) and axis 1 does not: then a :class:`DataError` asks which."""
    if images.dim() != 4 or layout == "NCHW":
        return images
    if layout == "NHWC":
        return images.permute(0, 3, 1, 2).contiguous()
    n, c, h, w = images.shape
    if w in _CHANNELS and c not in _CHANNELS:
        raise DataError(
            f"{source}: {what} of shape {tuple(images.shape)} look channels-last (N, H, W, C), {c}x{h} images of "
            f"{w} channel(s); genreg reads (N, C, H, W), which would make them {c}-channel images of {h}x{w}. Set "
            '`layout: "NHWC"` in the dataset spec to transpose them (or save numpy.moveaxis(images, -1, 1)), or '
            '`layout: "NCHW"` if the shape is meant as it is.'
        )
    return images


def _pixels(images: torch.Tensor, what: str, source: str) -> torch.Tensor:
    """(N, C, H, W) images as float32 in [0, 1]: uint8 divided by 255, floats checked (finite, in range)."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise DataError(f"{source}: {what} must be uint8 (0..255) or float in [0, 1], got {images.dtype}.")
    bad = (~torch.isfinite(images)).flatten(1).any(1).nonzero().flatten()
    if len(bad):
        raise DataError(
            f"{source}: {len(bad)} of {images.shape[0]} {what} contain NaN or infinite pixels (the first is image "
            f"{int(bad[0])}); fix or drop them."
        )
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise DataError(
            f"{source}: float {what} must lie in [0, 1], got values in "
            f"[{float(images.min()):.3g}, {float(images.max()):.3g}]; divide by 255 or rescale."
        )
    return images.float().contiguous()


def as_column(values: object, name: str, n: int, source: str) -> torch.Tensor:
    """A condition column checked: 1-D, one value per image; integers are classes >= 0, floats finite float32.

    Raises :class:`DataError` naming ``source``, the column and the first offending value.
    """
    what = f"column '{name}'"
    if name == LABEL:
        raise DataError(f"{source}: the {what} is the class label itself; name the extra column differently.")
    values = _tensor(values, what, source)
    if values.dim() != 1 or values.shape[0] != n:
        raise DataError(
            f"{source}: {what} must be a 1-D array with one value per image ({n}), got shape {tuple(values.shape)}."
        )
    if not values.is_floating_point():
        return _class_indices(values, what, source)
    single = values.float()
    bad = ~torch.isfinite(single)
    index = _first(bad)
    if index is not None:
        raise DataError(
            f"{source}: {what} has {int(bad.sum())} NaN or infinite values (the first at image {index}: "
            f"{float(values[index]):g}; float32 ends at 3.4e+38); a continuous condition must be finite for every "
            "image."
        )
    return single


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
    for name, values in train.columns.items():
        if not values.is_floating_point():
            check_classes(name, values, int(max(values.max(), test.columns[name].max())) + 1, source)
    if config.binarize != "none" and train.images.dim() == 2:
        raise DataError(
            f"{source}: binarize '{config.binarize}' draws or rounds pixels in [0, 1]; these samples are vectors of "
            "real values: set binarize to 'none' (the default)."
        )
    if config.binarize == "threshold":
        train = train.with_images((train.images > 0.5).float())
        test = test.with_images((test.images > 0.5).float())
    return DataSplits(train, test, num_classes, config.binarize, source)


def check_classes(column: str, train: torch.Tensor, count: int, source: str) -> None:
    """Classes are the indices 0..count-1 of ``column``: warn (:class:`DataWarning`) naming the classes the training
    values ``train`` lack; raise :class:`DataError` when the count is absurd for the classes present (more than
    :data:`ABSURD_FACTOR` times, and over :data:`ABSURD_CLASSES`), explaining how to remap the ids."""
    present = torch.unique(train)
    if len(present) == count:
        return
    if count > ABSURD_FACTOR * len(present) and count > ABSURD_CLASSES:
        raise DataError(
            f"{source}: column '{column}' holds {len(present)} distinct classes, the largest {count - 1}; genreg "
            f"takes classes as the indices 0..K-1, so this would be a model of {count:,} classes, "
            f"{count - len(present):,} of them without a training image. Map the ids to 0..{len(present) - 1} "
            "first, e.g. ids, labels = numpy.unique(labels, return_inverse=True) (keep ids to map back)."
        )
    missing = sorted(set(range(count)) - set(present.tolist()))
    shown = ", ".join(map(str, missing[:10])) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
    warnings.warn(
        f"{source}: column '{column}' has classes 0..{count - 1} (classes are indices), but the training split has "
        f"no image of {len(missing)} of them: {shown}. A model learns nothing for those; if the ids do not start "
        "at 0 or have gaps, map them to 0..K-1 with numpy.unique(labels, return_inverse=True).",
        DataWarning,
        stacklevel=3,
    )
