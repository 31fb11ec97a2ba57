"""Rows of an ``.h5ad`` read from disk as batches gather them (anndata's backed mode): for a count matrix too large
for memory even in sparse form. Only the rows of a batch are read and made dense; training reads every row once
per epoch, in random order, so it is slower than from memory (each batch a read of its rows from the file)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genreg.data.sparse import Index, RowStore, row_positions
from genreg.errors import DataError

#: Stored values read at a time when a backed matrix's values are checked (float32: 64 MB)
CHECKED_VALUES = 2**24


class BackedRows(RowStore):
    """Rows ``rows`` (positions in the file, (N,) int64) of an on-disk matrix of anndata's backed mode (a sparse
    dataset, or an h5py dataset for a dense layer) of ``features`` columns; batches are dense float32 on
    ``device``. ``owner`` (the backed AnnData) is kept so that its file stays open."""

    def __init__(
        self, matrix: Any, rows: np.ndarray, features: int, path: str, owner: Any = None, device: str = "cpu"
    ) -> None:
        self.matrix, self.rows, self.features, self.path, self.owner = matrix, rows, int(features), path, owner
        self._device = torch.device(device)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: torch.device | str) -> BackedRows:
        """The same rows, gathered onto ``device``."""
        return BackedRows(self.matrix, self.rows, self.features, self.path, self.owner, device)

    def take(self, index: Index) -> BackedRows:
        """The rows at ``index``, still on disk."""
        chosen = self.rows[row_positions(index, len(self), torch.device("cpu")).numpy()]
        return BackedRows(self.matrix, chosen, self.features, self.path, self.owner, self._device)

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """The rows at positions ``rows`` read from the file (each row once, in file order) as (B, F) float32."""
        unique, inverse = np.unique(self.rows[rows.cpu().numpy()], return_inverse=True)
        block = self.matrix[unique]
        block = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        return torch.from_numpy(block.astype(np.float32, copy=False))[torch.from_numpy(inverse)].to(self._device)

    def digest_tensors(self) -> tuple[torch.Tensor, ...]:
        """The file positions of the rows (the file's values are not read for a digest)."""
        return (torch.from_numpy(self.rows),)


def stored_bytes(matrix: Any) -> int:
    """The memory ``matrix`` (a backed sparse dataset, or a dense h5py dataset) takes once read: CSR with float32
    values and int32 indices, or dense float32."""
    rows, features = matrix.shape
    group = getattr(matrix, "group", None)
    if group is None:
        return rows * features * 4
    return group["data"].shape[0] * 8 + (rows + 1) * 8


def check_stored_values(matrix: Any, path: str, layer: str) -> None:
    """Refuse (:class:`DataError`) a backed matrix holding a NaN or an infinity, read :data:`CHECKED_VALUES` values
    at a time."""
    group = getattr(matrix, "group", None)
    values = group["data"] if group is not None else matrix
    step = max(1, CHECKED_VALUES // max(1, int(np.prod(values.shape[1:]))))
    for start in range(0, values.shape[0], step):
        if not np.isfinite(np.asarray(values[start : start + step], dtype=np.float64)).all():
            raise DataError(
                f"{path}: the layer {layer!r} (named in `layer`) holds NaN or infinite values (read from disk); "
                "every value must be a finite number: fill or drop them first."
            )
