"""Rows of a data file, shared by the ``table`` and ``anndata`` datasets: the fields both take, one file's checked
arrays, and the split of one or two files into training and test splits.

Both read N rows of F numeric features as vectors (N, F) of float32, in the file's own units, beside the class
label and more condition columns, and split them as ``npz`` does: a second file (``test_path``) is the test
split, or else a stratified ``test_fraction`` of the rows is held out, chosen with ``split_seed`` alone. Every
error is a :class:`~genreg.errors.DataError` naming the file, the column and the config field that named it
(``features``, ``label``, ``columns``, ``layer``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from pydantic import model_validator

from genreg.data import DataSplits, as_split, finish
from genreg.data.columns import LABEL
from genreg.data.sparse import is_sparse_matrix
from genreg.errors import DataError, file_kind, first_line, listing
from genreg_builtin import datasets


class FileConfig(datasets.FileConfig):
    """The fields both table datasets share (:class:`genreg_builtin.datasets.FileConfig`), each column playing one
    part."""

    @model_validator(mode="after")
    def _named_once(self) -> FileConfig:
        """Every column plays one part: a name twice, or ``label`` among ``columns``, is an error."""
        features = getattr(self, "features", None) or []
        named = [*features, *self.columns]
        twice = sorted({name for name in named if named.count(name) > 1})
        if twice:
            raise ValueError(f"the column(s) {listing(twice)} are named twice among `features` and `columns`")
        for name in (getattr(self, "label", None), LABEL):
            if name in self.columns:
                raise ValueError(
                    f"`columns` names {name!r}, the class label's column; set `label` to it instead (genreg keeps "
                    f"the name {LABEL!r} for the class)"
                )
        label = getattr(self, "label", None)
        if label in features:
            raise ValueError(
                f"`features` names {label!r}, the class column `label` names; a column plays one part (set "
                "`label: null` to read no labels)"
            )
        return self


@dataclass
class Rows:
    """One file's rows: ``x`` (N, F) float32 (dense, or a scipy sparse matrix kept sparse), ``labels`` (N,) or
    None, condition ``columns``, and ``path``."""

    x: Any
    labels: np.ndarray | None
    columns: dict[str, np.ndarray]
    path: str


def require(name: str, extra: str, dataset: str) -> ModuleType:
    """The module ``name``, or a :class:`DataError` saying how to install the extra that brings it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise DataError(
            f"the `{dataset}` dataset reads its files with the {name} package, which is not installed here "
            f"({first_line(error)}): pip install 'genreg[{extra}]'."
        ) from None


def check_file(path: str, give: str) -> None:
    """A missing path, or one that is not a regular file (a folder, a FIFO), is a :class:`DataError`."""
    kind = file_kind(path)  # before opening: a FIFO or /dev/zero would be read for ever
    if kind is None:
        raise DataError(f"{path}: file not found (working folder: {Path.cwd()}).")
    if kind != "a regular file":
        raise DataError(f"{path} is {kind}, not a regular file; give {give}.")


def missing(path: str, names: list[str], present: Any, field: str, noun: str = "column") -> None:
    """A :class:`DataError` for the first of ``names`` (named in ``field``) not ``present``, listing those present."""
    held = set(present)
    absent = [name for name in names if name not in held]
    if absent:
        more = f" nor {listing(absent[1:])}" if len(absent) > 1 else ""
        raise DataError(
            f"{path}: no {noun} {absent[0]!r}{more} (named in `{field}`); {noun}s present: {listing(present)}."
        )


def condition(series: Any, path: str, name: str, field: str) -> np.ndarray:
    """A label or condition column as numpy: integers, booleans and floats as they are, anything else (text,
    categories of text, dates) as strings; a missing value is a :class:`DataError` naming file and column."""
    import pandas as pd

    missing = np.flatnonzero(series.isna().to_numpy())
    if len(missing):
        raise DataError(
            f"{path}: column {name!r} (named in `{field}`) has {len(missing)} missing value(s), the first at row "
            f"{missing[0]}; a condition must be given for every row: fill them, or drop those rows."
        )
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.dtype.categories.dtype)
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.to_numpy(dtype=np.int64 if series.dtype.kind == "i" else np.uint64)
    if pd.api.types.is_float_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64)
    return np.asarray(series.to_numpy(), dtype=str)


def check_finite(x: np.ndarray, names: list[str], path: str, what: str, advice: str) -> None:
    """A NaN or an infinity (or a value beyond float32's range, inf in ``x``) is a :class:`DataError` naming the
    file, the feature holding the first one (``what``, formatted with its name) and its row."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    row, column = np.unravel_index(int(np.argmax(bad)), bad.shape)
    counts = bad.sum(axis=0)
    total, spread = int(counts.sum()), int((counts > 0).sum())
    elsewhere = f" ({total} in {spread} features in all)" if spread > 1 else ""
    raise DataError(
        f"{path}: {what.format(repr(names[column]))} holds {int(counts[column])} missing (NaN) or infinite value(s), "
        f"the first at row {row}: {x[row, column]:g}{elsewhere}; every feature must be a finite number in every "
        f"row (float32 ends at 3.4e+38): {advice}."
    )


def split_rows(parts: list[Rows], config: FileConfig, features: list[str]) -> DataSplits:
    """The rows of one file split by ``test_fraction``, or of two files as train and test, checked together by
    :func:`as_split` (so that text classes take one vocabulary over both files) and finished."""
    source = " and ".join(part.path for part in parts)
    named = {name: [part.columns[name] for part in parts] for name in parts[0].columns}
    if parts[0].labels is not None:
        named[config.label] = [part.labels for part in parts]
    for name, arrays in named.items():
        numeric = [values.dtype.kind in "biuf" for values in arrays]
        if len(set(numeric)) > 1:
            raise DataError(
                f"{source}: column {name!r} holds text in {parts[numeric.index(False)].path} but numbers in the other "
                "file; a condition column must hold values of one kind in both files."
            )
    x = _stacked([part.x for part in parts])
    labels = None if parts[0].labels is None else np.concatenate(named[config.label])
    columns = {name: np.concatenate(named[name]) for name in parts[0].columns}
    data = as_split(x, labels, source, columns, keys=("vectors", config.label or "labels"))
    if len(parts) == 1:
        train, test = datasets._stratified_split(data, config.test_fraction, config.split_seed)
    else:
        train, test = data.take(slice(0, parts[0].x.shape[0])), data.take(slice(parts[0].x.shape[0], None))
    return finish(train, test, config, source, features=features)


def _stacked(matrices: list[Any]) -> Any:
    """The rows of every matrix, in order: dense arrays concatenated, scipy sparse ones stacked as CSR."""
    if not is_sparse_matrix(matrices[0]):
        return np.concatenate(matrices)
    from scipy import sparse

    return matrices[0] if len(matrices) == 1 else sparse.vstack(matrices, format="csr")


def features_present(path: str, features: list[str], present: list[str], what: str) -> None:
    """A :class:`DataError` naming the ``features`` (the model's) that ``present`` (the file's ``what``) lacks."""
    held = set(present)
    absent = [name for name in features if name not in held]
    if absent:
        raise DataError(
            f"{path}: the model was trained on {len(features)} features, and this file lacks {len(absent)} of them: "
            f"{listing(absent)}; every feature the model knows must be there (in any order). The file's {what}: "
            f"{listing(present)}."
        )
