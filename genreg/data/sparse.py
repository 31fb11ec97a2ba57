"""Sparse rows: a matrix of N vectors x F features kept in compressed sparse row (CSR) form on its device.

Single-cell count matrices are mostly zeros (95% is common): 200,000 cells x 2,000 genes is 1.6 GB as dense
float32 but about 160 MB as CSR with 5% non-zeros. A :class:`SparseRows` holds such a matrix as three tensors
(``indptr`` (N + 1,), ``indices`` and ``values`` (nnz,)) where a :class:`~genreg.data.splits.Split` would hold a
dense (N, F) tensor, and densifies only the rows a batch gathers: ``rows[index]`` and ``rows.index_select(0,
index)`` return a dense (B, F) float32 tensor on the matrix's device, so the training loop, evaluation and the
pictures read batches as they read them from a dense split. ``take(index)`` keeps the chosen rows sparse (a split
of the data). Sparse tensors of torch (``torch.sparse_csr_tensor``) are not used: they cannot gather rows
(``index_select`` is not implemented for the CSR layout in torch 2.x) and pin the index dtype to int64.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from genreg.errors import DataError
from genreg.limits import check_memory

#: The largest fraction of non-zero values for which ``sparse: "auto"`` keeps a file's sparse matrix sparse:
#: beyond it CSR's indices cost more than they save, and dense batches are as cheap to gather.
AUTO_DENSITY = 0.25

Index = torch.Tensor | np.ndarray | slice | list[int] | int


class RowStore:
    """N vectors of F float32 features held other than as a dense tensor (sparse, or on disk): what a split's
    samples may be besides a tensor. Gathering rows gives a dense (B, F) tensor on the store's ``device``
    (``store[index]``, ``store.index_select(0, index)``); ``take(index)`` is a store of those rows (a split).
    A subclass implements ``__len__``, ``device``, ``to``, ``take``, ``gather`` and ``digest_tensors``."""

    features: int

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def to(self, device: torch.device | str) -> RowStore:
        raise NotImplementedError

    def take(self, index: Index) -> RowStore:
        raise NotImplementedError

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """The rows at int64 positions ``rows`` (B,) as a dense (B, F) float32 tensor on ``device``."""
        raise NotImplementedError

    def digest_tensors(self) -> tuple[torch.Tensor, ...]:
        """Tensors that identify the rows, for a digest of the data (a reference classifier's cache key)."""
        raise NotImplementedError

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), self.features))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def dim(self) -> int:
        return 2

    def __getitem__(self, index: Index) -> torch.Tensor:
        """The rows at ``index`` (a slice, or integer positions) as a dense (B, F) float32 tensor on the device."""
        return self.gather(row_positions(index, len(self), self.device))

    def index_select(self, dim: int, index: torch.Tensor) -> torch.Tensor:
        """``torch.Tensor.index_select`` along rows (``dim`` 0): the rows at ``index`` as a dense (B, F) tensor."""
        if dim != 0:
            raise ValueError(f"{type(self).__name__} gathers rows (dim 0) only; got dim={dim}.")
        return self[index]

    def to_dense(self) -> torch.Tensor:
        """Every row as one dense (N, F) float32 tensor (N F 4 bytes), after checking the memory it needs
        (:class:`~genreg.errors.DataError` if it is not there)."""
        what = f"{len(self):,} rows x {self.features:,} features made dense"
        check_memory(len(self) * self.features * 4, what, "measure fewer rows (a smaller split).", DataError)
        return self[slice(None)]


class SparseRows(RowStore):
    """N rows of F features in CSR form: ``indptr`` (N + 1,) int64, ``indices`` (nnz,) int32 column of each
    stored value, ``values`` (nnz,) float32. Row i's values are ``values[indptr[i]:indptr[i + 1]]``, in the
    columns ``indices[indptr[i]:indptr[i + 1]]``; every other value of the row is 0."""

    def __init__(self, indptr: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, features: int) -> None:
        self.indptr, self.indices, self.values = indptr, indices, values
        self.features = int(features)

    @classmethod
    def from_scipy(cls, matrix: Any) -> SparseRows:
        """A scipy sparse matrix (N, F) as rows; its arrays are shared, not copied, when they already have the
        dtypes (int64 indptr, int32 indices, float32 values; scipy's own for float32 data of < 2^31 values)."""
        csr = matrix.tocsr()
        csr.sum_duplicates()  # canonical: one value per (row, column)
        indptr = torch.from_numpy(np.asarray(csr.indptr, dtype=np.int64))
        indices = torch.from_numpy(np.asarray(csr.indices, dtype=np.int32))
        return cls(indptr, indices, torch.from_numpy(np.asarray(csr.data, dtype=np.float32)), csr.shape[1])

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def nbytes(self) -> int:
        """The memory the three tensors hold."""
        return sum(t.numel() * t.element_size() for t in (self.indptr, self.indices, self.values))

    def __len__(self) -> int:
        return self.indptr.numel() - 1

    def to(self, device: torch.device | str) -> SparseRows:
        """The same rows with their three tensors on ``device``."""
        return SparseRows(self.indptr.to(device), self.indices.to(device), self.values.to(device), self.features)

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """The rows at positions ``rows`` (B,) as a dense (B, F) float32 tensor."""
        starts = self.indptr[rows]
        counts = self.indptr[rows + 1] - starts
        positions = _value_positions(starts, counts)
        out = torch.zeros(len(rows), self.features, dtype=self.values.dtype, device=self.device)
        row_of = torch.repeat_interleave(
            torch.arange(len(rows), device=self.device), counts, output_size=len(positions)
        )
        out[row_of, self.indices[positions].long()] = self.values[positions]
        return out

    def take(self, index: Index) -> SparseRows:
        """The rows at ``index``, still sparse (a split of the data), in ``index``'s order."""
        rows = row_positions(index, len(self), self.device)
        starts, counts = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        positions = _value_positions(starts, counts)
        indptr = torch.zeros(len(rows) + 1, dtype=torch.int64, device=self.device)
        torch.cumsum(counts, 0, out=indptr[1:])
        return SparseRows(indptr, self.indices[positions], self.values[positions], self.features)

    def digest_tensors(self) -> tuple[torch.Tensor, ...]:
        """The tensors that hold the rows (a digest of the data reads them)."""
        return self.indptr, self.indices, self.values

    def row_totals(self) -> torch.Tensor:
        """Each row's sum (N,), float64."""
        rows = torch.repeat_interleave(torch.arange(len(self), device=self.device), self.indptr.diff())
        totals = torch.zeros(len(self), dtype=torch.float64, device=self.device)
        return totals.index_add_(0, rows, self.values.double())


def is_sparse_matrix(array: object) -> bool:
    """Whether ``array`` is a row store, or a scipy sparse matrix (without importing scipy)."""
    return isinstance(array, RowStore) or type(array).__module__.startswith("scipy.sparse")


def checked_rows(matrix: Any, what: str, source: str) -> RowStore:
    """A scipy sparse matrix (N, F) of numbers, or sparse rows, as float32 :class:`SparseRows`; a stored NaN or
    infinity (or a value beyond float32's range) is a :class:`~genreg.errors.DataError` naming the first row and
    feature holding one. Another :class:`RowStore` (rows on disk) is checked where it is opened, and returned."""
    if isinstance(matrix, RowStore) and not isinstance(matrix, SparseRows):
        return matrix
    if not isinstance(matrix, SparseRows):
        if matrix.ndim != 2 or np.dtype(matrix.dtype).kind not in "biuf":
            raise DataError(
                f"{source}: {what} must be a 2-D numeric sparse matrix, got {matrix.ndim}-D {matrix.dtype}."
            )
        with np.errstate(over="ignore"):
            matrix = SparseRows.from_scipy(matrix)
    finite = torch.isfinite(matrix.values)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0])
        row = int(torch.searchsorted(matrix.indptr, first, right=True)) - 1
        feature = int(matrix.indices[first])
        raise DataError(
            f"{source}: {what} hold {int((~finite).sum())} NaN or infinite values (the first at row {row}, feature "
            f"{feature}; float32 ends at 3.4e+38); every stored value must be a finite number."
        )
    return matrix


def dense(samples: torch.Tensor | RowStore) -> torch.Tensor:
    """``samples`` as a dense tensor: itself, or a :class:`RowStore` made dense (where a whole split is needed
    at once: R² over a split, a reference classifier's training data)."""
    return samples.to_dense() if isinstance(samples, RowStore) else samples


def row_chunks(samples: torch.Tensor | RowStore, rows: int = 4096) -> Iterator[tuple[int, torch.Tensor]]:
    """The samples, dense, ``rows`` at a time: (the first row's index, (<= rows, *sample shape)) each, so that a
    check of every value needs no dense copy of a sparse matrix."""
    for start in range(0, len(samples), rows):
        yield start, samples[start : start + rows]


def row_positions(index: Index, n: int, device: torch.device) -> torch.Tensor:
    """``index`` as int64 row positions (B,) on ``device``; negative positions count from the end."""
    if isinstance(index, slice):
        return torch.arange(n, device=device)[index]
    positions = torch.as_tensor(index, device=device).long().reshape(-1)
    if len(positions) and (int(positions.min()) < -n or int(positions.max()) >= n):
        raise IndexError(f"row index out of range for {n} rows.")
    return torch.where(positions < 0, positions + n, positions)


def _value_positions(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Where the stored values of rows that start at ``starts`` with ``counts`` values each lie, in row order."""
    total = int(counts.sum())
    first = torch.cumsum(counts, 0) - counts  # where each row's values begin in the output
    within = torch.arange(total, device=counts.device) - torch.repeat_interleave(first, counts, output_size=total)
    return torch.repeat_interleave(starts, counts, output_size=total) + within
