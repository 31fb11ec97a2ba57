"""Checksummed safetensors files: what every genreg file (model, checkpoint, cached classifier) is made of.

safetensors checks a file's layout but not its contents, so every file genreg
writes carries a CRC-32 of its metadata and tensors under ``genreg.crc32``; a
file whose contents no longer match it is refused. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from genreg.errors import ModelFileError
from genreg.files.atomic import atomic_write

CHECKSUM = "genreg.crc32"
_MAX_HEADER = 100_000_000  # safetensors refuses larger headers
_CUT = "; the copy or write that made it was cut short, so copy or save it again"


def cpu_tensors(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """CRC-32 of the metadata and of every tensor's name, dtype, shape and bytes (about 1 ms per 4 MB)."""
    crc = zlib.crc32(json.dumps(sorted(metadata.items())).encode())
    for name in sorted(tensors):
        tensor = tensors[name]
        crc = zlib.crc32(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode(), crc)
        crc = zlib.crc32(tensor.reshape(-1).view(torch.uint8).numpy(), crc)
    return f"{crc:08x}"


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a checksummed safetensors file atomically."""
    metadata = {**metadata, CHECKSUM: checksum(tensors, metadata)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def unreadable(path: Path, error: Exception) -> ModelFileError:
    """The error for a file safetensors refused, saying which: empty, truncated, not safetensors, corrupted."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            header_size = int.from_bytes(fh.read(8), "little")
            header = fh.read(min(header_size, _MAX_HEADER))
    except OSError as exc:
        return ModelFileError(f"{path} cannot be read: {exc.strerror or exc}.")
    why = f"it is corrupted ({error})"
    if size == 0:
        why = "it is empty"
    elif header_size > _MAX_HEADER or not header.startswith(b"{"):
        why = "it does not start with a safetensors header (random bytes, or another kind of file)"
    elif len(header) < header_size:
        why = f"it is truncated: it has {size} bytes, but its header alone needs {8 + header_size}{_CUT}"
    else:
        try:
            entries = [v for k, v in json.loads(header).items() if k != "__metadata__"]
            needed = 8 + header_size + max((entry["data_offsets"][1] for entry in entries), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
            needed = 0
        if size < needed:
            why = f"it is truncated: it has {size} of the {needed} bytes its header describes{_CUT}"
    return ModelFileError(f"{path} is not a readable safetensors file: {why}.")


def read_tensors(path: str | Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata and every tensor of a safetensors file, checked against the checksum saved with them."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise unreadable(path, exc) from None
    recorded = metadata.pop(CHECKSUM, None)
    if recorded is not None and recorded != checksum(tensors, metadata):
        raise ModelFileError(
            f"{path} is corrupted: its contents no longer match the checksum saved with them "
            "(a damaged disk or copy, or an edit); restore it from a backup or save it again."
        )
    return metadata, tensors


def check_weights(path: Path, tensors: dict[str, torch.Tensor], dtypes: dict[str, torch.dtype]) -> None:
    """Refuse a tensor whose dtype is not the one ``dtypes`` gives for its name, or that holds NaN or infinity.

    ``dtypes``: what the model being filled holds under each name (names it lacks are not
    checked here). A checksum cannot catch either: a crafted file carries a valid checksum
    of NaN weights, so the values themselves are checked. Raises :class:`ModelFileError`
    naming ``path`` and the tensor.
    """
    for name, tensor in tensors.items():
        expected = dtypes.get(name, tensor.dtype)
        if tensor.dtype != expected:
            raise ModelFileError(
                f"{path}: tensor '{name}' is {_dtype(tensor.dtype)}, but the model holds {_dtype(expected)} there; "
                "genreg does not convert weights silently, so save them from a model of that dtype."
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(
                f"{path}: tensor '{name}' holds NaN or infinite values; the weights were saved broken or edited "
                "afterwards (its checksum cannot tell), so use another model file or train the model again."
            )


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix``, prefix removed."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_state(path: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file whose names start with ``prefix`` (prefix removed), checksum verified."""
    return under(read_tensors(path)[1], prefix)
