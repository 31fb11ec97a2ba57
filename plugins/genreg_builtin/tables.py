"""The built-in ``table`` dataset: a CSV, TSV or Parquet file, read with pandas.

It reads N rows of F numeric features as vectors (N, F) of float32, in the file's own units, beside the class
label and more condition columns, and split them as ``npz`` does: a second file (``test_path``) is the test
split, or else a stratified ``test_fraction`` of the rows is held out, chosen with ``split_seed`` alone. Every
error is a :class:`~genreg.errors.DataError` naming the file, the column and the config field that named it
(``features``, ``label``, ``columns``, ``layer``).

pandas and pyarrow (``pip install 'genreg[table]'``) and anndata (``pip install 'genreg[anndata]'``) are
optional and imported only when a dataset is loaded, so listing genreg's plugins never waits for them.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from pydantic import Field

from genreg.data import DataSplits
from genreg.data.columns import LABEL
from genreg.errors import DataError, DataWarning, first_line, listing
from genreg_builtin.rows import (
    FileConfig,
    Rows,
    check_file,
    check_finite,
    condition,
    features_present,
    missing,
    require,
    split_rows,
)

__all__ = ["TableConfig", "load_table", "read_table_rows", "SUFFIXES"]

# The field separator of each text suffix (pandas infers a .gz compression from the name).
_TEXT_SUFFIXES = {".csv": ",", ".csv.gz": ",", ".tsv": "\t", ".tsv.gz": "\t"}
_PARQUET_SUFFIXES = (".parquet", ".pq")
#: A column of distinct integers in order over this many rows or more is taken for an identifier, not a feature.
ID_ROWS = 20
#: The file names ``table`` reads, by suffix (case aside): the suffix chooses the reader.
SUFFIXES = (*_TEXT_SUFFIXES, *_PARQUET_SUFFIXES)
# What a damaged CSV or Parquet file raises in pandas and pyarrow: parser and decoding errors are ValueErrors,
# a broken gzip stream an OSError, EOFError or zlib.error, an unsupported Parquet feature NotImplementedError.
_UNREADABLE = (ValueError, OSError, EOFError, NotImplementedError, zlib.error)


class TableConfig(FileConfig):
    """A table of N rows from a CSV, TSV or Parquet file, read with pandas (pip install 'genreg[table]').

    ``path``: the file; its suffix chooses the reader: ``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz`` (a header
    row of column names), ``.parquet`` or ``.pq`` (pyarrow). ``features``: the columns of the vectors (N, F),
    numbers in any units (integers and booleans as numbers; every row finite); by default every numeric
    column but the label column, the ``columns``, a column named ``label``, a column without a header
    (``Unnamed: 0``, a saved row index) and an identifier (distinct integers in order, over 20 rows or more),
    with a :class:`DataWarning` naming the columns left out. ``label``:
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
    check_file(path, "a CSV, TSV or Parquet file")
    try:
        if suffix in _PARQUET_SUFFIXES:
            require("pyarrow", "table", "table")
            frame = pd.read_parquet(path, engine="pyarrow")
        else:
            frame = pd.read_csv(path, sep=_TEXT_SUFFIXES[suffix])
    except MemoryError as error:
        raise DataError(f"{path}: too large to load into this machine's memory ({first_line(error)}).") from None
    except _UNREADABLE as error:
        kind = "Parquet" if suffix in _PARQUET_SUFFIXES else "CSV" if "csv" in suffix else "TSV"
        raise DataError(f"{path}: not a valid {kind} file ({first_line(error)}).") from None
    if len(frame) == 0:
        raise DataError(f"{path}: the table has no rows (columns: {listing(frame.columns)}).")
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
        elif _identifier(pd, frame[name]):
            left_out.append(f"{name!r} (distinct integers in order, row by row: an identifier? list it in `features`)")
        else:
            features.append(name)
    return features, left_out


def _identifier(pd: ModuleType, column: Any) -> bool:
    """Whether a column looks like a row identifier rather than a measurement: integers, all distinct, in order
    (ascending or descending), over at least :data:`ID_ROWS` rows (a sample number, a patient id)."""
    return (
        len(column) >= ID_ROWS
        and pd.api.types.is_integer_dtype(column.dtype)
        and column.is_unique
        and (column.is_monotonic_increasing or column.is_monotonic_decreasing)
    )


def _features(pd: ModuleType, frame: Any, config: TableConfig, label: str | None, path: str) -> list[str]:
    """The feature columns of the training file: ``features``, each present and numeric, or the default."""
    if config.features is not None:
        missing(path, config.features, frame.columns, "features")
        for name in config.features:
            _require_numeric(pd, frame, name, path)
        return list(config.features)
    features, left_out = _default_features(pd, frame, config, label)
    if not features:
        raise DataError(
            f"{path}: no numeric column to use as features (columns: {listing(frame.columns)}); name the feature "
            "columns in `features`, each holding a number in every row."
        )
    if left_out:
        warnings.warn(
            f"{path}: left out of the features: {listing(left_out, quote=False)}; list `features` to choose "
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
    missing(path, config.columns, frame.columns, "columns")
    missing(path, [label] if label is not None else [], frame.columns, "label")


def _table_rows(
    pd: ModuleType, frame: Any, path: str, features: list[str], label: str | None, config: TableConfig
) -> Rows:
    """The checked arrays of one table: feature matrix, labels and condition columns."""
    missing(path, features, frame.columns, "features")
    _conditions_present(frame, path, config, label)
    for name in features:
        _require_numeric(pd, frame, name, path)
    x = np.empty((len(frame), len(features)), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused next by name
        for j, name in enumerate(features):
            x[:, j] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    check_finite(
        x, features, path, "the feature column {}", "fill or drop those rows, or leave the column out of `features`"
    )
    labels = None if label is None else condition(frame[label], path, label, "label")
    columns = {name: condition(frame[name], path, name, "columns") for name in config.columns}
    return Rows(x, labels, columns, path)


def load_table(config: TableConfig) -> DataSplits:
    """A table's rows as vectors (N, F) of float32 in the file's units, split into train and test.

    Reads ``path`` (and ``test_path``) with pandas, by suffix (:data:`SUFFIXES`). The test file must hold
    the training file's feature columns (in any order) and, by default, no other numeric ones. Raises
    :class:`DataError` for a missing package, file or column, a suffix not read, an unreadable file, a
    feature that is not numeric or holds NaN or infinite values, a condition with missing values, and train
    and test files with different feature columns; warns (:class:`DataWarning`) naming the columns the
    default ``features`` leave out.
    """
    pd = require("pandas", "table", "table")
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
                f"{listing(sorted(set(features) - theirs))}; only in the test file: "
                f"{listing(sorted(theirs - set(features)))}); both splits need the same features."
            )
        parts.append(_table_rows(pd, test, config.test_path, features, label, config))
    return split_rows(parts, config, features)


def read_table_rows(path: str, config: TableConfig, features: list[str]) -> Rows:
    """Every row of the table at ``path`` in file order, read as :func:`load_table` reads a file but not split
    (``genreg encode`` reads new data for a trained model so): ``features`` (the model's feature columns, in that
    order, the file may hold them in any) as vectors (N, F), and the label (``config.label``) and
    ``config.columns`` where the file has them; those it lacks are left out (the caller says which it needs).

    Raises :class:`DataError` as :func:`load_table` does, and naming the features the file lacks.
    """
    pd = require("pandas", "table", "table")
    frame = _read_frame(pd, path)
    features_present(path, features, list(frame.columns), "columns")
    label = config.label if config.label is not None and config.label in frame.columns else None
    present = config.model_copy(update={"columns": [name for name in config.columns if name in frame.columns]})
    return _table_rows(pd, frame, path, list(features), label, present)
