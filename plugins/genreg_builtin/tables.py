"""Built-in datasets of tables: ``table`` (a CSV, TSV or Parquet file, read with pandas) and ``anndata`` (an
``.h5ad`` file, read with the anndata package).

Both read N rows of F numeric features as vectors (N, F) of float32, in the file's own units, beside the class
label and more condition columns, and split them as ``npz`` does: a second file (``test_path``) is the test
split, or else a stratified ``test_fraction`` of the rows is held out, chosen with ``split_seed`` alone. Every
error is a :class:`~genreg.errors.DataError` naming the file, the column and the config field that named it
(``features``, ``label``, ``columns``, ``layer``).

pandas and pyarrow (``pip install 'genreg[table]'``) and anndata (``pip install 'genreg[anndata]'``) are
optional and imported only when a dataset is loaded, so listing genreg's plugins never waits for them.
"""

from __future__ import annotations

import importlib
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from genreg.data import DatasetConfig, DataSplits, as_split, finish
from genreg.data.columns import LABEL
from genreg.errors import DataError, DataWarning, file_kind, first_line
from genreg.limits import check_memory
from genreg_builtin.datasets import _stratified_split

__all__ = ["AnnDataConfig", "TableConfig", "load_anndata", "load_table", "SUFFIXES"]

# The field separator of each text suffix (pandas infers a .gz compression from the name).
_TEXT_SUFFIXES = {".csv": ",", ".csv.gz": ",", ".tsv": "\t", ".tsv.gz": "\t"}
_PARQUET_SUFFIXES = (".parquet", ".pq")
#: The file names ``table`` reads, by suffix (case aside): the suffix chooses the reader.
SUFFIXES = (*_TEXT_SUFFIXES, *_PARQUET_SUFFIXES)
_SHOWN = 20  # names listed in one message before "(and N more)"
# What a damaged CSV or Parquet file raises in pandas and pyarrow: parser and decoding errors are ValueErrors,
# a broken gzip stream an OSError, EOFError or zlib.error, an unsupported Parquet feature NotImplementedError.
_UNREADABLE = (ValueError, OSError, EOFError, NotImplementedError, zlib.error)


class _FileConfig(DatasetConfig):
    """The fields both table datasets share: the file, its condition columns and the held-out split."""

    path: str = Field(description="the data file")
    columns: list[str] = Field([], description="more columns to read as condition columns (text or ints: classes)")
    test_path: str | None = Field(None, description="a second file of the same kind for the test split")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="held-out share when test_path is null")
    split_seed: int = Field(0, ge=0, description="seed of the stratified held-out split")

    @field_validator("path", "test_path")
    @classmethod
    def _absolute(cls, path: str | None) -> str | None:
        """Relative to the working folder now, absolute from here on (as ``npz``): a run's recorded spec finds
        its files from any folder."""
        return None if path is None else str(Path(path).expanduser().absolute())

    @model_validator(mode="after")
    def _named_once(self) -> _FileConfig:
        """Every column plays one part: a name twice, or ``label`` among ``columns``, is an error."""
        features = getattr(self, "features", None) or []
        named = [*features, *self.columns]
        twice = sorted({name for name in named if named.count(name) > 1})
        if twice:
            raise ValueError(f"the column(s) {_listing(twice)} are named twice among `features` and `columns`")
        for name in (getattr(self, "label", None), LABEL):
            if name in self.columns:
                raise ValueError(
                    f"`columns` names {name!r}, the class label's column; set `label` to it instead (genreg keeps "
                    f"the name {LABEL!r} for the class)"
                )
        if self.label in features:
            raise ValueError(
                f"`features` names {self.label!r}, the class column `label` names; a column plays one part (set "
                "`label: null` to read no labels)"
            )
        return self


class TableConfig(_FileConfig):
    """A table of N rows from a CSV, TSV or Parquet file, read with pandas (``pip install 'genreg[table]'``).

    ``path``: the file; its suffix chooses the reader: ``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz`` (a header
    row of column names), ``.parquet`` or ``.pq`` (pyarrow). ``features``: the columns of the vectors (N, F),
    numbers in any units (integers and booleans as numbers; every row finite); by default every numeric
    column but the label column, the ``columns``, a column named ``label`` and a column without a header
    (``Unnamed: 0``, a saved row index), with a :class:`DataWarning` naming the columns left out. ``label``:
    the class column (text or integers; a sorted vocabulary maps text to classes), default ``"label"``: used
    where the file has it, an unlabelled table (one class) where it has not; ``null`` reads no labels.
    ``columns``: more condition columns (text or integers: classes, floats: continuous). ``test_path``: a
    second file of the same columns for the test split; otherwise a stratified ``test_fraction`` is held out
    with ``split_seed``.
    """

    path: str = Field(description="the .csv, .tsv, .csv.gz, .tsv.gz, .parquet or .pq file")
    features: list[str] | None = Field(
        None, min_length=1, description="columns of the feature vectors; null: every other numeric column"
    )
    label: str | None = Field("label", description="the class column ('label': used if present); null: no labels")


class AnnDataConfig(_FileConfig):
    """Cells (or samples) by features from an ``.h5ad`` file, read with anndata (``pip install
    'genreg[anndata]'``).

    ``path``: the ``.h5ad`` file. ``layer``: the matrix (N, F) read as vectors: ``"X"`` (``adata.X``, the
    default), ``"raw"`` (``adata.raw.X``) or a key of ``adata.layers``; a scipy sparse matrix is made dense
    float32 after checking the memory it needs. The feature names are ``adata.var_names``
    (``adata.raw.var_names`` for ``raw``). ``label``: an ``.obs`` column of classes (default null: one
    class), ``columns``: more ``.obs`` columns as condition columns (categories, text or integers: classes;
    floats: continuous). ``test_path``: a second ``.h5ad`` with the same var names (in any order) for the test
    split; otherwise a stratified ``test_fraction`` is held out with ``split_seed``.
    """

    path: str = Field(description="the .h5ad file")
    layer: str = Field("X", description="'X', 'raw' (adata.raw.X) or a key of adata.layers")
    label: str | None = Field(None, description="the .obs column of class labels; null: no labels")


@dataclass
class _Rows:
    """One file's rows: ``x`` (N, F) float32, ``labels`` (N,) or None, condition ``columns``, and ``path``."""

    x: np.ndarray
    labels: np.ndarray | None
    columns: dict[str, np.ndarray]
    path: str


def _require(name: str, extra: str, dataset: str) -> ModuleType:
    """The module ``name``, or a :class:`DataError` saying how to install the extra that brings it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise DataError(
            f"the `{dataset}` dataset reads its files with the {name} package, which is not installed here "
            f"({first_line(error)}): pip install 'genreg[{extra}]'."
        ) from None


def _check_file(path: str, give: str) -> None:
    """A missing path, or one that is not a regular file (a folder, a FIFO), is a :class:`DataError`."""
    kind = file_kind(path)  # before opening: a FIFO or /dev/zero would be read for ever
    if kind is None:
        raise DataError(f"{path}: file not found (working folder: {Path.cwd()}).")
    if kind != "a regular file":
        raise DataError(f"{path} is {kind}, not a regular file; give {give}.")


def _listing(names: Any, limit: int = _SHOWN, quote: bool = True) -> str:
    """``'a', 'b', 'c' (and 7 more)``; ``none`` for no names. ``quote=False`` lists phrases as they are."""
    names = [repr(str(name)) if quote else str(name) for name in names]
    shown = ", ".join(names[:limit]) or "none"
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def _missing(path: str, names: list[str], present: Any, field: str, noun: str = "column") -> None:
    """A :class:`DataError` for the first of ``names`` (named in ``field``) not ``present``, listing those present."""
    held = set(present)
    absent = [name for name in names if name not in held]
    if absent:
        more = f" nor {_listing(absent[1:])}" if len(absent) > 1 else ""
        raise DataError(
            f"{path}: no {noun} {absent[0]!r}{more} (named in `{field}`); {noun}s present: {_listing(present)}."
        )


def _condition(series: Any, path: str, name: str, field: str) -> np.ndarray:
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


def _check_finite(x: np.ndarray, names: list[str], path: str, what: str, advice: str) -> None:
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


def _split(parts: list[_Rows], config: _FileConfig, features: list[str]) -> DataSplits:
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
    x = np.concatenate([part.x for part in parts])
    labels = None if parts[0].labels is None else np.concatenate(named[config.label])
    columns = {name: np.concatenate(named[name]) for name in parts[0].columns}
    data = as_split(x, labels, source, columns, keys=("vectors", config.label or "labels"))
    if len(parts) == 1:
        train, test = _stratified_split(data, config.test_fraction, config.split_seed)
    else:
        train, test = data.take(slice(0, len(parts[0].x))), data.take(slice(len(parts[0].x), None))
    return finish(train, test, config, source, features=features)


# --------------------------------------------------------------------------- table


def _read_frame(pd: ModuleType, path: str) -> Any:
    """The whole table at ``path`` as a DataFrame with string column names, read by its suffix."""
    suffix = next((s for s in SUFFIXES if path.lower().endswith(s)), None)
    if suffix is None:
        ending = f"ends in {Path(path).suffix!r}" if Path(path).suffix else "has no suffix"
        raise DataError(
            f"{path}: the `table` dataset reads files ending in {', '.join(SUFFIXES)}, chosen by the suffix, and "
            f"this one {ending}: rename it, or save the table as one of those "
            "(an .h5ad file is the `anndata` dataset, a .npz the `npz` dataset)."
        )
    _check_file(path, "a CSV, TSV or Parquet file")
    try:
        if suffix in _PARQUET_SUFFIXES:
            _require("pyarrow", "table", "table")
            frame = pd.read_parquet(path, engine="pyarrow")
        else:
            frame = pd.read_csv(path, sep=_TEXT_SUFFIXES[suffix])
    except MemoryError as error:
        raise DataError(f"{path}: too large to load into this machine's memory ({first_line(error)}).") from None
    except _UNREADABLE as error:
        kind = "Parquet" if suffix in _PARQUET_SUFFIXES else "CSV" if "csv" in suffix else "TSV"
        raise DataError(f"{path}: not a valid {kind} file ({first_line(error)}).") from None
    if len(frame) == 0:
        raise DataError(f"{path}: the table has no rows (columns: {_listing(frame.columns)}).")
    frame.columns = [str(name) for name in frame.columns]
    return frame


def _numeric(pd: ModuleType, dtype: Any) -> bool:
    """Whether a column of ``dtype`` holds numbers (booleans and integers too; not complex numbers)."""
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)


def _default_features(pd: ModuleType, frame: Any, config: TableConfig, label: str | None) -> tuple[list, list]:
    """The default feature columns of ``frame`` and the columns left out of them, each with why."""
    features, left_out = [], []
    for name in frame.columns:
        if name == label or name in config.columns:
            continue
        if name == LABEL:
            left_out.append(f"{name!r} (the name genreg keeps for the class; set `label` to use it)")
        elif name.startswith("Unnamed: "):
            left_out.append(f"{name!r} (no header: a saved row index?)")
        elif not _numeric(pd, frame[name].dtype):
            left_out.append(f"{name!r} ({frame[name].dtype})")
        else:
            features.append(name)
    return features, left_out


def _features(pd: ModuleType, frame: Any, config: TableConfig, label: str | None, path: str) -> list[str]:
    """The feature columns of the training file: ``features``, each present and numeric, or the default."""
    if config.features is not None:
        _missing(path, config.features, frame.columns, "features")
        for name in config.features:
            _require_numeric(pd, frame, name, path)
        return list(config.features)
    features, left_out = _default_features(pd, frame, config, label)
    if not features:
        raise DataError(
            f"{path}: no numeric column to use as features (columns: {_listing(frame.columns)}); name the feature "
            "columns in `features`, each holding a number in every row."
        )
    if left_out:
        warnings.warn(
            f"{path}: left out of the features: {_listing(left_out, quote=False)}; list `features` to choose "
            "them yourself, or name a column in `columns` to read it as a condition.",
            DataWarning,
            stacklevel=4,
        )
    return features


def _require_numeric(pd: ModuleType, frame: Any, name: str, path: str) -> None:
    """A feature column that is not numeric is a :class:`DataError` naming it, its dtype and a value that is no
    number."""
    series = frame[name]
    if _numeric(pd, series.dtype):
        return
    try:
        numbers = pd.to_numeric(series.astype(object), errors="coerce")
        rows = np.flatnonzero((series.notna() & numbers.isna()).to_numpy())
    except (TypeError, ValueError):
        rows = np.empty(0, dtype=np.int64)
    example = f", e.g. {series.iloc[rows[0]]!r} at row {rows[0]}" if len(rows) else ""
    raise DataError(
        f"{path}: the feature column {name!r} is not numeric (dtype {series.dtype}{example}); a feature must be a "
        "number in every row: leave the column out of `features`, or fix the file (a column of numbers with some "
        "text in it is read as text)."
    )


def _conditions_present(frame: Any, path: str, config: TableConfig, label: str | None) -> None:
    """The condition columns and the label column (where there is one) are in ``frame``."""
    _missing(path, config.columns, frame.columns, "columns")
    _missing(path, [label] if label is not None else [], frame.columns, "label")


def _table_rows(
    pd: ModuleType, frame: Any, path: str, features: list[str], label: str | None, config: TableConfig
) -> _Rows:
    """The checked arrays of one table: feature matrix, labels and condition columns."""
    _missing(path, features, frame.columns, "features")
    _conditions_present(frame, path, config, label)
    for name in features:
        _require_numeric(pd, frame, name, path)
    x = np.empty((len(frame), len(features)), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused next by name
        for j, name in enumerate(features):
            x[:, j] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    _check_finite(
        x, features, path, "the feature column {}", "fill or drop those rows, or leave the column out of `features`"
    )
    labels = None if label is None else _condition(frame[label], path, label, "label")
    columns = {name: _condition(frame[name], path, name, "columns") for name in config.columns}
    return _Rows(x, labels, columns, path)


def load_table(config: TableConfig) -> DataSplits:
    """A table's rows as vectors (N, F) of float32 in the file's units, split into train and test.

    Reads ``path`` (and ``test_path``) with pandas, by suffix (:data:`SUFFIXES`). The test file must hold
    the training file's feature columns (in any order) and, by default, no other numeric ones. Raises
    :class:`DataError` for a missing package, file or column, a suffix not read, an unreadable file, a
    feature that is not numeric or holds NaN or infinite values, a condition with missing values, and train
    and test files with different feature columns; warns (:class:`DataWarning`) naming the columns the
    default ``features`` leave out.
    """
    pd = _require("pandas", "table", "table")
    frame = _read_frame(pd, config.path)
    label = config.label if config.label in frame.columns or config.label != LABEL else None
    _conditions_present(frame, config.path, config, label)
    features = _features(pd, frame, config, label, config.path)
    parts = [_table_rows(pd, frame, config.path, features, label, config)]
    del frame
    if config.test_path is not None:
        test = _read_frame(pd, config.test_path)
        theirs = set(features) & set(test.columns)
        if config.features is None:  # by default, the test file's numeric columns must be the same
            theirs |= set(_default_features(pd, test, config, label)[0])
        if theirs != set(features):
            raise DataError(
                f"{config.path} and {config.test_path} have different feature columns (only in the training file: "
                f"{_listing(sorted(set(features) - theirs))}; only in the test file: "
                f"{_listing(sorted(theirs - set(features)))}); both splits need the same features."
            )
        parts.append(_table_rows(pd, test, config.test_path, features, label, config))
    return _split(parts, config, features)


# --------------------------------------------------------------------------- anndata


def _layer(adata: Any, path: str, layer: str) -> tuple[Any, list[str]]:
    """The matrix ``layer`` names in ``adata`` and its feature names; a missing one lists what is there."""
    if layer == "raw" and adata.raw is not None:
        matrix, names = adata.raw.X, adata.raw.var_names
    elif layer == "X" or (layer in adata.layers and layer != "raw"):
        matrix, names = (adata.X if layer == "X" else adata.layers[layer]), adata.var_names
    else:
        raw = "'raw' (adata.raw.X)" if adata.raw is not None else "no .raw"
        raise DataError(
            f"{path}: no layer {layer!r} (named in `layer`); this file has 'X' (the main matrix), {raw}, and "
            f"in .layers: {_listing(adata.layers.keys())}."
        )
    if matrix is None:
        raise DataError(f"{path}: the layer {layer!r} (named in `layer`) holds no matrix (AnnData with X=None).")
    return matrix, [str(name) for name in names]


def _dense(matrix: Any, path: str, layer: str) -> np.ndarray:
    """``matrix`` (numpy or scipy sparse, (N, F)) as dense float32, its memory checked first."""
    from scipy import sparse

    dtype = np.dtype(matrix.dtype)
    if dtype.kind not in "biuf":
        raise DataError(f"{path}: the layer {layer!r} (named in `layer`) is not numeric (dtype {dtype}).")
    rows, features = matrix.shape
    what = f"{path}: the layer {layer!r} as a dense float32 matrix of {rows:,} x {features:,}"
    advice = "keep fewer cells or features (adata[cells, genes].write_h5ad), or use a machine with more memory."
    if sparse.issparse(matrix) or dtype != np.float32:  # a new array: dense float32 is taken as it is
        check_memory(rows * features * 4, what, advice, DataError)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused next by name
        if sparse.issparse(matrix):
            return np.asarray(matrix.astype(np.float32).toarray())
        return np.asarray(matrix, dtype=np.float32)


def _read_h5ad(ad: ModuleType, path: str, config: AnnDataConfig) -> tuple[_Rows, list[str]]:
    """The checked arrays of one ``.h5ad`` file and the names of its features."""
    _check_file(path, "an .h5ad file written by anndata (AnnData.write_h5ad)")
    try:
        adata = ad.read_h5ad(path)
    except MemoryError as error:
        raise DataError(f"{path}: too large to load into this machine's memory ({first_line(error)}).") from None
    except Exception as error:  # h5py's OSError, anndata's TypeError, KeyError or IORegistryError, ...
        raise DataError(
            f"{path}: not a valid .h5ad file ({type(error).__name__}: {first_line(error)}); write it with "
            "AnnData.write_h5ad."
        ) from None
    matrix, names = _layer(adata, path, config.layer)
    obs = [name for name in (config.label,) if name is not None]
    _missing(path, obs, adata.obs.columns, "label", "obs column")
    _missing(path, config.columns, adata.obs.columns, "columns", "obs column")
    x = _dense(matrix, path, config.layer)
    _check_finite(x, names, path, f"the feature {{}} of layer {config.layer!r}", "fill or drop them first")
    labels = None if config.label is None else _condition(adata.obs[config.label], path, config.label, "label")
    columns = {name: _condition(adata.obs[name], path, name, "columns") for name in config.columns}
    return _Rows(x, labels, columns, path), names


def load_anndata(config: AnnDataConfig) -> DataSplits:
    """An ``.h5ad`` file's matrix (``layer``) as vectors (N, F) of float32, split into train and test.

    A ``test_path`` file must have the same var names (its columns are put in the training file's order).
    Raises :class:`DataError` for a missing package or file, an unreadable file, a layer or ``.obs`` column
    not there (listing those that are), a matrix too large for this machine's memory once dense, NaN or
    infinite values, a condition with missing values, and train and test files with different features.
    """
    ad = _require("anndata", "anndata", "anndata")
    first, names = _read_h5ad(ad, config.path, config)
    parts = [first]
    if config.test_path is not None:
        second, theirs = _read_h5ad(ad, config.test_path, config)
        where = {name: j for j, name in enumerate(theirs)}
        if len(where) != len(theirs) or set(where) != set(names) or len(names) != len(theirs):
            raise DataError(
                f"{config.path} and {config.test_path} have different features in layer {config.layer!r} (only in "
                f"the training file: {_listing(sorted(set(names) - set(where)))}; only in the test file: "
                f"{_listing(sorted(set(where) - set(names)))}); both splits need the same var names."
            )
        if theirs != names:
            second.x = np.ascontiguousarray(second.x[:, [where[name] for name in names]])
        parts.append(second)
    return _split(parts, config, names)
