"""What a trained model's methods take from users, checked and converted: images, latent codes, conditions.

``encode``, ``decode``, ``reconstruct`` and ``sample`` of
:class:`~genreg.model.generative.GenerativeModel` accept what users hold: a torch tensor
on any device or a numpy array, images as uint8 (0..255) or floats in [0, 1] (the units of
genreg's datasets, see :mod:`genreg.data.checks`), with or without the batch axis, and
conditions as ints, lists, arrays or tensors. Anything else is refused naming what was
given and what would be valid. Training never comes here: the loop feeds the model's
``forward`` batches already checked when the data loaded.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from genreg.data.sparse import RowStore, is_sparse_matrix
from genreg.data.splits import DataInfo
from genreg.errors import ConditionError, InputError
from genreg.limits import check_memory

#: Images (``encode``, ``reconstruct``) or latent codes (``decode``): a tensor (any device) or a numpy array.
Images = Codes = torch.Tensor | np.ndarray
#: Class indices as users hold them: an int, a list, a numpy array or a tensor.
Labels = int | Sequence[int] | np.ndarray | torch.Tensor
#: A condition as users hold it: {column: values}, or the values of a model's only column.
Given = Labels | Mapping[str, object]


def as_images(
    x: Images, shape: Sequence[int], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, bool]:
    """Images as users hold them -> (B, C, H, W) of ``dtype`` on ``device`` in [0, 1], and whether x had the batch
    axis; ``shape`` is the model's (C, H, W). For a model of vectors (``shape`` (F,)) see :func:`as_vectors`.

    ``x`` is a torch tensor (on any device) or a numpy array, of shape (C, H, W) for one image or (B, C, H, W):
    uint8 is read as 0..255 and divided by 255, floats (any precision) must be finite and lie in [0, 1], as in
    genreg's datasets (:mod:`genreg.data.checks`). Raises :class:`~genreg.errors.InputError` saying what was
    given: another shape (naming the expected one), another dtype (bool, complex, other integers), NaN or
    infinite values, or floats outside [0, 1].
    """
    if len(shape) == 1:
        return as_vectors(x, shape, device, dtype)
    x, batched = _batch(_tensor(x, "x", InputError), shape, "x", f"images of shape (C, H, W) = {tuple(shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        whole = "" if x.dtype == torch.bool or x.is_complex() else " (whole numbers 0..255: convert them to uint8)"
        raise InputError(f"x has dtype {x.dtype}; give images as uint8 (0..255) or floats in [0, 1]{whole}.")
    x = x.to(device)
    if x.dtype == torch.uint8:
        return x.to(dtype).div_(255), batched
    low, high = torch.aminmax(x) if x.numel() else (x.new_zeros(()), x.new_zeros(()))  # one pass; NaN propagates
    if low.isnan() or high.isnan():
        raise InputError("x holds NaN values; float images must be finite, in [0, 1].")
    if low < 0 or high > 1:
        raise InputError(
            f"x holds values in [{float(low):.3g}, {float(high):.3g}]; float images must lie in [0, 1] "
            "(divide values of 0..255 by 255, or give them as uint8)."
        )
    return x.to(dtype), batched


def frame_values(x: object, features: Sequence[str] | None) -> object:
    """A pandas DataFrame as a numpy array of its values, its columns taken by name in the order of ``features``
    (the model's feature names, :attr:`~genreg.data.splits.DataInfo.features`) when the model has them, so that a
    frame's column order never matters; a scipy sparse matrix (an AnnData's ``X``) or sparse rows made dense (after
    a memory check); anything else as it is. Raises :class:`~genreg.errors.InputError` naming the features the
    frame lacks, or the memory a dense copy would need."""
    if is_sparse_matrix(x):
        rows, columns = x.shape
        what = f"x: a sparse matrix of {rows:,} x {columns:,} made dense"
        check_memory(rows * columns * 4, what, "give fewer rows at a time.", InputError)
        return x.to_dense() if isinstance(x, RowStore) else x.toarray()
    columns = getattr(x, "columns", None)
    if columns is None or not hasattr(x, "to_numpy"):
        return x
    if features is None:
        return x.to_numpy()
    held = {str(column): column for column in columns}
    missing = [name for name in features if name not in held]
    if missing:
        shown = ", ".join(repr(name) for name in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise InputError(
            f"x is a table without {len(missing)} of the model's {len(features)} features: {shown}; its columns are "
            "taken by name (in any order), so each feature the model was trained on must be one of them."
        )
    return x[[held[name] for name in features]].to_numpy()


def as_vectors(
    x: Images, shape: Sequence[int], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, bool]:
    """Vectors as users hold them -> (B, F) of ``dtype`` on ``device``, and whether x had the batch axis;
    ``shape`` is the model's (F,).

    ``x`` is a tensor (any device) or numpy array of shape (F,) or (B, F), of finite real numbers (floats of any
    precision, integers), in the units the model's data was given in. Raises :class:`~genreg.errors.InputError`
    for another shape (naming the expected one), a bool or complex dtype, or NaN or infinite values.
    """
    return _real_numbers(x, tuple(shape), "x", f"vectors of {shape[0]} features", "vectors", device, dtype)


def as_codes(
    z: Codes, dim: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, bool]:
    """Latent codes -> (B, ``dim``) of ``dtype`` on ``device``, and whether z had the batch axis.

    ``z`` is a tensor (any device) or numpy array of shape (dim,) for one code or (B, dim), of finite real
    numbers (floats of any precision, or integers). Raises :class:`~genreg.errors.InputError` for another
    shape (naming the expected one), a bool or complex dtype, or NaN or infinite values.
    """
    what = f"latent codes of shape (latent_dim,) = ({dim},)"
    return _real_numbers(z, (dim,), "z", what, "latent codes", device, dtype)


def _real_numbers(
    value: Images,
    item: tuple[int, ...],
    name: str,
    what: str,
    kind: str,
    device: torch.device | str,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, bool]:
    """``value`` (one item of shape ``item``, or a batch of them) as finite real numbers of ``dtype`` on ``device``,
    and whether it had the batch axis; an :class:`~genreg.errors.InputError` names ``name`` and says ``kind`` (what
    the items are) must be real and finite."""
    value, batched = _batch(_tensor(value, name, InputError), item, name, what)
    if value.dtype == torch.bool or value.is_complex():
        raise InputError(f"{name} has dtype {value.dtype}; {kind} are real numbers (floats, or integers).")
    value = value.to(device, dtype)
    if not torch.isfinite(value).all():
        raise InputError(f"{name} holds NaN or infinite values; {kind} must be finite.")
    return value, batched


def classes_of(condition: Mapping[str, object], info: DataInfo) -> dict[str, object]:
    """``condition`` with the values of each class column that has a vocabulary in ``info`` (strings, ids as the
    data holds them) as their classes; a tensor holds classes already and is kept. Raises
    :class:`~genreg.errors.ConditionError` for a value the vocabulary does not hold (see
    :meth:`~genreg.data.splits.DataInfo.class_index`)."""
    mapped = dict(condition)
    for column, values in condition.items():
        if column not in info.vocabularies or isinstance(values, torch.Tensor):
            continue
        if isinstance(values, (str, bytes, numbers.Number)):
            mapped[column] = info.class_index(column, values)
        else:
            mapped[column] = [info.class_index(column, value) for value in list(values)]
    return mapped


def condition_values(condition: Mapping[str, object], n: int | None) -> dict[str, torch.Tensor]:
    """Each column's values as a 1-D tensor of ``n`` values (one value given is repeated ``n`` times; ``n`` None:
    as many as the longest column holds).

    Raises :class:`~genreg.errors.ConditionError` for values that are not numbers (a bool, complex or string),
    or a number of values that is neither 1 nor ``n``. What the values may be (classes the model knows, finite)
    is the model's conditioners' check.
    """
    values = {
        column: _tensor(value, f"column '{column}' of the condition", ConditionError).reshape(-1)
        for column, value in condition.items()
    }
    n = max((len(value) for value in values.values()), default=1) if n is None else n
    for column, value in values.items():
        if value.dtype == torch.bool or value.is_complex():
            raise ConditionError(f"column '{column}' of the condition has dtype {value.dtype}; give numbers.")
        if len(value) not in (1, n):
            raise ConditionError(
                f"column '{column}' of the condition has {len(value)} values for {n} images; give one per image, "
                "or one for all."
            )
    return {column: value.expand(n) for column, value in values.items()}


def _tensor(value: object, name: str, error: type[Exception]) -> torch.Tensor:
    """``value`` (a tensor, numpy array, number or list) as a tensor, or ``error`` naming what it was."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.ascontiguousarray(value))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise error(f"{name} must be a tensor or array of numbers; got {type(value).__name__} ({exc}).") from None


def _batch(value: torch.Tensor, item: Sequence[int], name: str, what: str) -> tuple[torch.Tensor, bool]:
    """``value`` with a batch axis (one item of shape ``item`` gains one), and whether it had one."""
    if tuple(value.shape) == tuple(item):
        return value.unsqueeze(0), False
    if value.dim() == len(item) + 1 and tuple(value.shape[1:]) == tuple(item):
        return value, True
    batch = ", ".join(["B", *map(str, item)])
    raise InputError(f"{name} has shape {tuple(value.shape)}; this model takes {what}, one, or a batch ({batch}).")
