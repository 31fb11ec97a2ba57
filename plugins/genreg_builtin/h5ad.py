"""The built-in ``anndata`` dataset: an ``.h5ad`` file of cells (or samples) by features, read with the anndata
package (``pip install 'genreg[anndata]'``, imported only when a dataset is loaded).

The matrix a ``layer`` names is read as vectors (N, F) of float32 (a scipy sparse matrix with few stored values,
counts of genes in cells, is kept sparse, its batches made dense as training gathers them; another is made dense
after checking the memory it needs), ``.obs`` columns as the class label and condition columns, and split as the
``table`` dataset splits its rows (:mod:`genreg_builtin.rows`).
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any, Literal

import numpy as np
from pydantic import Field

from genreg.data import DataSplits
from genreg.data.sparse import AUTO_DENSITY
from genreg.errors import DataError, DataWarning, first_line, listing
from genreg.limits import available_memory, check_memory, gb
from genreg_builtin.backed import BackedRows, check_stored_values, stored_bytes
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

__all__ = ["AnnDataConfig", "load_anndata", "read_h5ad_rows"]


class AnnDataConfig(FileConfig):
    """Cells (or samples) by features from an .h5ad file, read with anndata (pip install 'genreg[anndata]').

    ``path``: the ``.h5ad`` file. ``layer``: the matrix (N, F) read as vectors: ``"X"`` (``adata.X``, the
    default), ``"raw"`` (``adata.raw.X``) or a key of ``adata.layers``; a scipy sparse matrix is kept sparse or
    made dense float32 (after checking the memory it needs) as ``sparse`` says. The feature names are
    ``adata.var_names`` (``adata.raw.var_names`` for ``raw``). ``label``: an ``.obs`` column of classes (default
    null: one class), ``columns``: more ``.obs`` columns as condition columns (categories, text or integers: classes;
    floats: continuous). ``test_path``: a second ``.h5ad`` with the same var names (in any order) for the test
    split; otherwise a stratified ``test_fraction`` is held out with ``split_seed``.
    """

    path: str = Field(description="the .h5ad file")
    layer: str = Field("X", description="'X', 'raw' (adata.raw.X) or a key of adata.layers")
    label: str | None = Field(None, description="the .obs column of class labels; null: no labels")
    sparse: Literal["auto", "keep", "dense", "backed"] = Field(
        "auto",
        description="a sparse layer: 'keep' it sparse in memory (batches made dense as they are gathered), make it "
        "'dense', read it from disk as batches need it ('backed', anndata's backed mode), or 'auto': keep it when "
        "at most 25% of its values are stored and no transform is set, backed when even that needs more than half "
        "the memory available",
    )


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
            f"in .layers: {listing(adata.layers.keys())}."
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


def kept_sparse(matrix: Any, config: AnnDataConfig) -> bool:
    """Whether ``matrix`` is read as sparse rows (see ``AnnDataConfig.sparse``): a scipy sparse matrix, with
    ``sparse: keep``, or ``auto`` with at most :data:`~genreg.data.sparse.AUTO_DENSITY` of its values stored and
    no ``transform`` (one would make zeros non-zero)."""
    from scipy import sparse

    if not sparse.issparse(matrix) or config.sparse == "dense":
        return False
    if config.sparse == "keep" and config.transform_steps:
        raise DataError(
            f"{config.path}: `sparse: keep` holds the layer {config.layer!r} sparse, and `transform` "
            f"({', '.join(config.transform_steps)}) would make its zeros non-zero: drop the transform (a count "
            "likelihood models raw counts), or set `sparse: dense` (or `auto`) to have it made dense."
        )
    rows, features = matrix.shape
    sparse_enough = matrix.nnz <= AUTO_DENSITY * rows * features
    return config.sparse == "keep" or (sparse_enough and not config.transform_steps)


def _opened(ad: ModuleType, path: str, backed: bool = False) -> Any:
    """The AnnData object of the ``.h5ad`` at ``path`` (``backed``: its matrices left on disk, anndata's backed
    mode), or a :class:`DataError` naming it. anndata's warnings about files its older versions wrote (which it
    reads: elements without encoding metadata, moved elements) are not shown."""
    check_file(path, "an .h5ad file written by anndata (AnnData.write_h5ad)")
    return _read(path, lambda: ad.read_h5ad(path, backed="r" if backed else None))


def _read(path: str, read: Any) -> Any:
    """``read()``, anndata's reading of the ``.h5ad`` at ``path``, with its warnings about old files silenced and
    its errors as a :class:`DataError` naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"anndata(\.|$)")
            return read()
    except MemoryError as error:
        raise DataError(f"{path}: too large to load into this machine's memory ({first_line(error)}).") from None
    except Exception as error:  # h5py's OSError, anndata's TypeError, KeyError or IORegistryError, ...
        raise DataError(
            f"{path}: not a valid .h5ad file ({type(error).__name__}: {first_line(error)}); write it with "
            "AnnData.write_h5ad."
        ) from None


def _on_disk_if_needed(ad: ModuleType, path: str, config: AnnDataConfig) -> Any:
    """The file's AnnData: in backed mode (its matrix read from disk as batches need it) with ``sparse: backed``,
    or with ``auto`` when the layer needs more than half the memory available even as CSR (then a
    :class:`DataWarning` says so); in memory otherwise. Raises :class:`DataError` for a backed layer beside a
    ``transform`` or a ``test_path``, which need the matrix in memory."""
    if config.sparse in ("dense", "keep"):
        return _opened(ad, path)
    adata = _opened(ad, path, backed=True)
    matrix, _ = _layer(adata, path, config.layer)
    needed, (room, limit) = stored_bytes(matrix), available_memory()
    if config.sparse == "auto" and needed <= room // 2:  # into memory from the open file: no second parse
        in_memory = _read(path, adata.to_memory)
        adata.file.close()
        return in_memory
    if config.transform_steps:
        raise DataError(
            f"{path}: the layer {config.layer!r} is read from disk (backed), and `transform` needs it in memory: "
            "drop the transform (a count likelihood models raw counts), or hold the layer in memory (`sparse: keep` "
            "or `dense`, if it fits)."
        )
    if config.test_path is not None:
        raise DataError(
            f"{path}: the layer {config.layer!r} is read from disk (backed), which reads one file: drop `test_path` "
            "and hold out a `test_fraction` of this file, or write both splits into one file."
        )
    if config.sparse == "auto":
        warnings.warn(
            f"{path}: the layer {config.layer!r} needs about {gb(needed)} in memory even sparse, more than half "
            f"of the {gb(room)} {limit}; it is read from disk as batches need it (anndata's backed mode), "
            "which is slower. Set `sparse: keep` to hold it in memory anyway.",
            DataWarning,
            stacklevel=2,
        )
    return adata


def _read_h5ad(ad: ModuleType, path: str, config: AnnDataConfig) -> tuple[Rows, list[str]]:
    """The checked arrays of one ``.h5ad`` file and the names of its features."""
    adata = _on_disk_if_needed(ad, path, config)
    matrix, names = _layer(adata, path, config.layer)
    obs = [name for name in (config.label,) if name is not None]
    missing(path, obs, adata.obs.columns, "label", "obs column")
    missing(path, config.columns, adata.obs.columns, "columns", "obs column")
    if adata.isbacked:
        check_stored_values(matrix, path, config.layer)
        x = BackedRows(matrix, np.arange(matrix.shape[0], dtype=np.int64), matrix.shape[1], path, adata)
    elif kept_sparse(matrix, config):
        x = matrix.tocsr()  # checked by as_split, as SparseRows
    else:
        x = _dense(matrix, path, config.layer)
        check_finite(x, names, path, f"the feature {{}} of layer {config.layer!r}", "fill or drop them first")
    labels = None if config.label is None else condition(adata.obs[config.label], path, config.label, "label")
    columns = {name: condition(adata.obs[name], path, name, "columns") for name in config.columns}
    return Rows(x, labels, columns, path), names


def load_anndata(config: AnnDataConfig) -> DataSplits:
    """An ``.h5ad`` file's matrix (``layer``) as vectors (N, F) of float32, split into train and test.

    A ``test_path`` file must have the same var names (its columns are put in the training file's order).
    Raises :class:`DataError` for a missing package or file, an unreadable file, a layer or ``.obs`` column
    not there (listing those that are), a matrix too large for this machine's memory once dense, NaN or
    infinite values, a condition with missing values, and train and test files with different features.
    """
    ad = require("anndata", "anndata", "anndata")
    first, names = _read_h5ad(ad, config.path, config)
    parts = [first]
    if config.test_path is not None:
        second, theirs = _read_h5ad(ad, config.test_path, config)
        where = {name: j for j, name in enumerate(theirs)}
        if len(where) != len(theirs) or set(where) != set(names) or len(names) != len(theirs):
            raise DataError(
                f"{config.path} and {config.test_path} have different features in layer {config.layer!r} (only in "
                f"the training file: {listing(sorted(set(names) - set(where)))}; only in the test file: "
                f"{listing(sorted(set(where) - set(names)))}); both splits need the same var names."
            )
        if theirs != names:
            second.x = np.ascontiguousarray(second.x[:, [where[name] for name in names]])
        parts.append(second)
    return split_rows(parts, config, names)


def read_h5ad_rows(path: str, config: AnnDataConfig, features: list[str] | None) -> tuple[Rows, list[str], np.ndarray]:
    """Every cell of the ``.h5ad`` at ``path`` in file order (``genreg encode`` reads new data for a trained model
    so): the matrix ``config.layer`` names as vectors (N, F), its columns in the order of ``features`` (var names;
    None: the file's own), and the label (``config.label``) and ``config.columns`` where ``.obs`` has them (those
    it lacks are left out: the caller says which it needs). Returns those rows, the feature names and the obs
    names (a unicode array).

    Raises :class:`DataError` as :func:`load_anndata` does, and naming the features the file lacks.
    """
    adata = _opened(require("anndata", "anndata", "anndata"), path)
    matrix, names = _layer(adata, path, config.layer)
    if features is not None and features != names:
        features_present(path, features, names, f"var names of layer {config.layer!r}")
        where = {name: j for j, name in enumerate(names)}
        matrix, names = matrix[:, [where[name] for name in features]], list(features)
    x = _dense(matrix, path, config.layer)
    check_finite(x, names, path, f"the feature {{}} of layer {config.layer!r}", "fill or drop them first")
    obs, label = adata.obs, config.label
    labels = condition(obs[label], path, label, "label") if label is not None and label in obs.columns else None
    columns = {name: condition(obs[name], path, name, "columns") for name in config.columns if name in obs.columns}
    return Rows(x, labels, columns, path), names, np.asarray(adata.obs_names, dtype=str)
