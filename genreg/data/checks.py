"""Raw arrays checked and turned into splits: the one set of checks and messages every dataset shares.

A dataset plugin reads its files, then calls :func:`as_split` on each split's
arrays and :func:`finish` on the two splits; every error is a :class:`DataError`
naming the file or dataset, the array and what would be valid.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from genreg.data.sparse import RowStore, checked_rows, dense, is_sparse_matrix
from genreg.data.splits import LABEL, ClassValue, DatasetConfig, DataSplits, Split
from genreg.data.transforms import Transform
from genreg.errors import DataError, DataWarning, listing

# Class indices are stored as int64: a float label must be a whole number below 2**63 to become one exactly.
_INT64_BOUND = 2.0**63
#: How images of 4 axes are laid out: (N, C, H, W), (N, H, W, C), or "auto" (NCHW, refusing arrays that look NHWC).
Layout = Literal["auto", "NCHW", "NHWC"]
_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA: the channel counts of pictures
#: Rows of vectors checked at a time for NaN and infinities (a mask of this many rows at most).
CHECKED_ROWS = 8192
_TEXT = "USO"  # numpy's kinds of text: unicode, bytes, Python objects (a pandas column of strings)
#: Integer ids are class indices 0..K-1 unless some is negative or the largest is absurd for the ids present (K over
#: ABSURD_FACTOR times their number and over ABSURD_CLASSES, e.g. ids 3000 and 7000): then a vocabulary maps them.
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


def _class_ids(values: torch.Tensor, what: str, source: str) -> torch.Tensor:
    """``values`` as int64 class ids (any integers: :func:`finish` maps ids that are not 0..K-1 through a
    vocabulary); floats must be whole numbers within int64's range.

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
                    "must be whole numbers (class ids) or strings."
                )
        values = wide
    return values.long()


def _classes(values: object, what: str, n: int, source: str) -> tuple[torch.Tensor, list[ClassValue] | None]:
    """A class column's values, one per sample, -> (N,) int64 and its vocabulary: strings (numpy text, or Python
    objects such as a pandas column of strings) become indices into their sorted distinct values, the vocabulary;
    numbers stay the ids they are (vocabulary None: :func:`finish` fits one over both splits when the ids are not
    0..K-1). Raises :class:`DataError` naming ``what`` for another shape or a missing value (None, NaN)."""
    if not isinstance(values, torch.Tensor):
        try:
            array = np.asarray(values)
        except (TypeError, ValueError) as error:
            raise DataError(f"{source}: {what} must be a 1-D array of numbers or strings ({error}).") from None
        if array.dtype.kind in _TEXT:
            _check_length(array.shape, what, n, source)
            vocabulary, codes = np.unique(_texts(array, what, source), return_inverse=True)
            return torch.from_numpy(codes.astype(np.int64).reshape(-1)), vocabulary.tolist()
    tensor = _tensor(values, what, source)
    _check_length(tuple(tensor.shape), what, n, source)
    return _class_ids(tensor, what, source), None


def _texts(array: np.ndarray, what: str, source: str) -> np.ndarray:
    """A text array as unicode strings; a missing value (None, NaN, pandas' NA) is a :class:`DataError`."""
    if array.dtype.kind == "O":
        missing = [i for i, value in enumerate(array) if not isinstance(value, (str, bytes, int, np.integer))]
        if missing:
            raise DataError(
                f"{source}: {what} has {len(missing)} missing or non-text values (the first at row {missing[0]}: "
                f"{array[missing[0]]!r}); every sample needs a value: fill or drop those rows."
            )
    return array.astype(str)


def _check_length(shape: tuple[int, ...], what: str, n: int, source: str) -> None:
    if len(shape) != 1 or shape[0] != n:
        one = "one label" if what.startswith("labels") else "one value"
        raise DataError(f"{source}: {what} must be a 1-D array with {one} per sample ({n}), got shape {shape}.")


def _named(role: str, key: str) -> str:
    """How messages call an array: its role, with its name in the file where that differs."""
    return role if key == role else f"{role} (array '{key}')"


def as_split(
    images: torch.Tensor,
    labels: object | None,
    source: str,
    columns: dict[str, object] | None = None,
    *,
    keys: tuple[str, str] = ("images", "labels"),
    layout: Layout = "auto",
) -> Split:
    """Check and convert raw arrays: images (N, H, W) or (N, C, H, W), uint8 0..255 or floats in [0, 1]; or
    vectors (N, F) of finite real numbers.

    A 2-D array is N vectors of F features (a table's rows: any finite values, integers and booleans taken
    as numbers), or a scipy sparse matrix (N, F), kept sparse (:class:`~genreg.data.sparse.SparseRows`); 3-D and
    4-D arrays are images. ``labels`` are one class per sample: integer ids (or
    whole-number floats within int64's range), or strings (numpy text or a list, or a pandas column of
    strings); None for data without labels (one class). :func:`finish` maps values that are not 0..K-1 to
    classes through a sorted vocabulary. ``columns`` are further condition columns (1-D, one value per
    sample): floats are continuous, integers and strings classes. ``source`` names the file or dataset in
    every error message, ``keys`` the samples' and labels' arrays in it. ``layout`` says how 4-D images are
    laid out: ``NHWC`` (channels last, as PIL and TensorFlow store them) is transposed; ``auto`` takes
    (N, C, H, W) but refuses images that look channels-last (see :func:`channels_first`). Raises
    :class:`DataError`.
    """
    image_what, label_what = _named("images", keys[0]), _named("labels", keys[1])
    if is_sparse_matrix(images):  # kept sparse: vectors (N, F), dense only when batches are gathered
        images = checked_rows(images, _named("vectors", keys[0]), source)
    else:
        images = _tensor(images, image_what, source)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    images = channels_first(images, layout, image_what, source)
    if images.dim() not in (2, 4) or 0 in images.shape[1:]:
        raise DataError(
            f"{source}: {image_what} must have shape (N, H, W) or (N, C, H, W) for images, or (N, F) for vectors "
            f"of F features, with every size at least 1; got {tuple(images.shape)}."
        )
    n, labelled = images.shape[0], labels is not None
    if labels is None:
        labels, vocabularies = torch.zeros(n, dtype=torch.long), {}
    else:
        labels, vocabulary = _classes(labels, label_what, n, source)
        vocabularies = {} if vocabulary is None else {LABEL: vocabulary}
    checked = {}
    for name, values in (columns or {}).items():
        checked[name], vocabulary = _column(values, name, n, source)
        if vocabulary is not None:
            vocabularies[name] = vocabulary
    if isinstance(images, RowStore):
        samples = images
    elif images.dim() == 2:
        samples = _features(images, _named("vectors", keys[0]), source)
    else:
        samples = _pixels(images, image_what, source)
    return Split(samples, labels, checked, vocabularies, labelled)


def _features(vectors: torch.Tensor, what: str, source: str) -> torch.Tensor:
    """(N, F) vectors as float32: any finite numbers (integers and booleans as numbers); a NaN or an infinity,
    or a value beyond float32's range, is a :class:`DataError` naming the first row and feature holding one.
    One ``aminmax`` pass tells (a NaN or an infinity is its minimum or maximum), so that a large table needs no
    mask of its own size; only a table that holds one is searched, :data:`CHECKED_ROWS` rows at a time."""
    single = vectors.float().contiguous()
    if not len(single) or all(math.isfinite(float(bound)) for bound in torch.aminmax(single)):
        return single
    chunks = enumerate(single.split(CHECKED_ROWS))
    holding = [(k, mask) for k, chunk in chunks if bool((mask := ~torch.isfinite(chunk)).any())]  # masks kept: few
    bad = torch.cat([mask for _, mask in holding])
    row, feature = divmod(_first(bad), vectors.shape[1])
    row += holding[0][0] * CHECKED_ROWS
    raise DataError(
        f"{source}: {what} hold {int(bad.sum())} NaN or infinite values (the first at row {row}, feature "
        f"{feature}: {float(vectors[row, feature]):g}; float32 ends at 3.4e+38); every feature of every row "
        "must be a finite number: fill or drop the missing values first."
    )


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


def _column(values: object, name: str, n: int, source: str) -> tuple[torch.Tensor, list[ClassValue] | None]:
    """A condition column checked: 1-D, one value per sample; floats are a continuous quantity (finite float32),
    integers and strings classes (see :func:`_classes`), with their vocabulary.

    Raises :class:`DataError` naming ``source``, the column and the first offending value.
    """
    what = f"column '{name}'"
    if name == LABEL:
        raise DataError(f"{source}: the {what} is the class label itself; name the extra column differently.")
    array = values if isinstance(values, torch.Tensor) else np.asarray(values)
    if isinstance(array, np.ndarray) and array.dtype.kind in _TEXT:
        return _classes(array, what, n, source)
    values = _tensor(array, what, source)
    _check_length(tuple(values.shape), what, n, source)
    if not values.is_floating_point():
        return _class_ids(values, what, source), None
    single = values.float()
    bad = ~torch.isfinite(single)
    index = _first(bad)
    if index is not None:
        raise DataError(
            f"{source}: {what} has {int(bad.sum())} NaN or infinite values (the first at row {index}: "
            f"{float(values[index]):g}; float32 ends at 3.4e+38); a continuous condition must be finite for every "
            "sample."
        )
    return single, None


def finish(
    train: Split, test: Split, config: DatasetConfig, source: str, features: Sequence[str] | None = None
) -> DataSplits:
    """Combine checked splits into :class:`DataSplits`: class columns mapped to classes over both splits, static
    binarisation applied, the spec's ``transform`` fitted on the training split and applied to both.

    Integer ids are class indices 0..K-1 (K the largest id + 1, over both splits). A class column of strings, or
    of ids some negative or far beyond the number of ids present (3000 and 7000, see :data:`ABSURD_FACTOR`), gets
    the sorted distinct values over both splits as its vocabulary, class k being the k-th. A class the training
    split lacks is a warning (:class:`DataWarning`): the model learns nothing for it. ``features`` names the F
    features of vectors (a table's column names), kept with the model for pictures. Raises :class:`DataError`
    naming ``source``.
    """
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{source}: train and test samples differ in shape: "
            f"{tuple(train.images.shape[1:])} vs {tuple(test.images.shape[1:])}."
        )
    if len(train) == 0:
        raise DataError(f"{source}: the training split is empty.")
    if len(test) == 0:
        raise DataError(
            f"{source}: the test split is empty, so no epoch could be measured; hold out some samples for it "
            f"(e.g. a larger test_fraction, or a test_path), of the {len(train)} there are."
        )
    if train.labelled != test.labelled:
        raise DataError(f"{source}: one split has class labels and the other has none; give labels to both or none.")
    for name, values in train.columns.items():
        if name not in test.columns or values.is_floating_point() != test.columns[name].is_floating_point():
            raise DataError(f"{source}: column '{name}' must be in both splits, of the same kind (classes or floats).")
    train, test = _classes_over(train, test, source)
    if config.binarize != "none" and train.images.dim() == 2:
        raise DataError(
            f"{source}: binarize '{config.binarize}' draws or rounds pixels in [0, 1]; these samples are vectors of "
            "real values: set binarize to 'none' (the default)."
        )
    if config.binarize == "threshold":
        train = train.with_images((train.images > 0.5).float())
        test = test.with_images((test.images > 0.5).float())
    if features is not None and (train.images.dim() != 2 or len(features) != train.images.shape[1]):
        shape = tuple(train.images.shape[1:])
        raise DataError(f"{source}: {len(features)} feature names for samples of shape {shape}.")
    if config.transform_steps:  # a transform makes zeros non-zero (standardize): dense
        train, test = train.with_images(dense(train.images)), test.with_images(dense(test.images))
    transform, samples = Transform.fit_apply(config.transform_steps, train.images, f"{source} (training split)")
    if transform is not None:
        train = train.with_images(samples)
        test = test.with_images(transform.apply(test.images, f"{source} (test split)"))
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    features = None if features is None else [str(name) for name in features]
    return DataSplits(train, test, num_classes, config.binarize, source, features, transform)


def _classes_over(train: Split, test: Split, source: str) -> tuple[Split, Split]:
    """Both splits with every class column's values mapped to classes 0..K-1 over both (see :func:`finish`)."""
    train_columns, test_columns, vocabularies = dict(train.columns), dict(test.columns), {}
    for name, values in train.columns.items():
        if values.is_floating_point():
            continue
        own, other = train.vocabularies.get(name), test.vocabularies.get(name)
        if (own is None) != (other is None):
            raise DataError(
                f"{source}: column '{name}' holds strings in one split and numbers in the other; give both splits "
                "the same kind of values."
            )
        if own is None:  # integer ids
            own = other = torch.unique(torch.cat([values, test.columns[name]])).tolist()
            if _ids_are_indices(own):
                check_classes(name, values, own[-1] + 1, source)
                continue
        vocabulary = sorted(set(own) | set(other))
        train_columns[name] = _recoded(values, own, vocabulary)
        test_columns[name] = _recoded(test.columns[name], other, vocabulary)
        vocabularies[name] = vocabulary
        check_classes(name, train_columns[name], len(vocabulary), source, vocabulary)
    return (
        Split(train.images, train_columns[LABEL], train_columns, vocabularies, train.labelled),
        Split(test.images, test_columns[LABEL], test_columns, vocabularies, test.labelled),
    )


def _ids_are_indices(ids: list[int]) -> bool:
    """Whether sorted distinct integer ids are read as class indices 0..max (see :data:`ABSURD_FACTOR`)."""
    count = ids[-1] + 1
    return ids[0] >= 0 and not (count > ABSURD_FACTOR * len(ids) and count > ABSURD_CLASSES)


def _recoded(codes: torch.Tensor, values: list[ClassValue], vocabulary: list[ClassValue]) -> torch.Tensor:
    """``codes`` that index ``values`` (or, for integer ids, that are the values) as indices into ``vocabulary``."""
    if isinstance(values[0], str):
        position = {value: k for k, value in enumerate(vocabulary)}
        return torch.tensor([position[value] for value in values], dtype=torch.long)[codes]
    return torch.searchsorted(torch.tensor(vocabulary, dtype=torch.long), codes)


def check_classes(
    column: str, train: torch.Tensor, count: int, source: str, vocabulary: list[ClassValue] | None = None
) -> None:
    """Warn (:class:`DataWarning`) naming the classes of 0..count-1 (their values, with a ``vocabulary``) that the
    training classes ``train`` of ``column`` lack."""
    present = torch.unique(train)
    if len(present) == count:
        return
    missing = sorted(set(range(count)) - set(present.tolist()))
    shown = listing([vocabulary[k] for k in missing] if vocabulary else missing, 10)
    if vocabulary:
        why = "only the test split holds them"
    else:
        why = (
            f"integer ids are the class indices 0..{count - 1}; if the ids do not start at 0 or have gaps, map "
            "them to 0..K-1 with numpy.unique(labels, return_inverse=True), or give them as strings"
        )
    warnings.warn(
        f"{source}: column '{column}' has {count} classes, but the training split has no sample of {len(missing)} "
        f"of them: {shown} ({why}). A model learns nothing for those.",
        DataWarning,
        stacklevel=3,
    )
