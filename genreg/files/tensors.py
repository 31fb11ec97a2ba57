"""Checksummed safetensors files: what every genreg file (model, checkpoint, cached classifier) is made of.

safetensors checks a file's layout but not its contents, so every file genreg
writes carries a CRC-32 of its metadata and tensors under ``genreg.crc32``; a
file whose contents no longer match it is refused. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
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


def check_weights(
    path: Path,
    tensors: dict[str, torch.Tensor],
    dtypes: dict[str, torch.dtype],
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> None:
    """Refuse a tensor whose dtype (or shape) is not the one ``dtypes`` (``shapes``) gives for its name, or that
    holds NaN or infinity.

    ``dtypes``, ``shapes``: what the model (or optimiser) being filled holds under each name (names they lack
    are not checked here). A checksum cannot catch either: a crafted file carries a valid checksum
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
        shape = (shapes or {}).get(name, tuple(tensor.shape))
        if tuple(tensor.shape) != tuple(shape):
            raise ModelFileError(
                f"{path}: tensor '{name}' has shape {list(tensor.shape)}, but the model holds {list(shape)} there; "
                "the file is of another model, or was edited."
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(
                f"{path}: tensor '{name}' holds NaN or infinite values; the weights were saved broken or edited "
                "afterwards (its checksum cannot tell), so use another model file or train the model again."
            )


ADAM_STATE = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # max_exp_avg_sq: with amsgrad only


def check_optimizer_state(
    path: Path, state: dict[str, torch.Tensor], params: list[torch.Tensor], prefix: str = "optim."
) -> None:
    """Refuse Adam state (tensors named ``<prefix><index>.<key>``) that does not fit the optimiser's ``params``.

    Each index names a parameter and holds at least ``step`` (a scalar of 0 or more), ``exp_avg`` and
    ``exp_avg_sq`` (the parameter's shape and dtype: nothing is cast), none NaN or infinite (see
    :func:`check_weights`). Raises :class:`ModelFileError` naming ``path`` and the tensor.
    """
    shapes, dtypes, keys = {}, {}, {}
    for name, tensor in state.items():
        index, _, key = name.removeprefix(prefix).partition(".")
        if not (index.isascii() and index.isdecimal() and int(index) < len(params)) or key not in ADAM_STATE:
            raise ModelFileError(
                f"{path}: tensor '{name}' is not Adam state of this run's model, whose optimiser holds "
                f"{', '.join(ADAM_STATE[:3])} for each of its {len(params)} parameters (0 to {len(params) - 1}); "
                "the checkpoint is of another model, or was edited. Start the run again without --resume."
            )
        keys.setdefault(index, set()).add(key)
        param = params[int(index)]
        shapes[name] = () if key == "step" else tuple(param.shape)
        if key != "step":
            dtypes[name] = param.dtype
        elif not tensor.is_floating_point() or (tensor.numel() == 1 and float(tensor) < 0):
            raise ModelFileError(
                f"{path}: tensor '{name}' (Adam's step count) is {_dtype(tensor.dtype)} holding "
                f"{tensor.reshape(-1)[:1].tolist()}; it is a floating-point count of 0 or more. Start the run again "
                "without --resume."
            )
    missing = next((f"{prefix}{i}.{key}" for i, got in keys.items() for key in ADAM_STATE[:3] if key not in got), None)
    if missing:
        raise ModelFileError(f"{path}: tensor '{missing}' is missing; start the run again without --resume.")
    check_weights(path, state, dtypes, shapes)


def check_param_groups(path: Path, groups: object, advice: str) -> None:
    """Refuse optimiser settings that are not Adam's: a list of objects, each with its ``params`` (indices),
    finite ``lr``, ``eps`` and ``weight_decay`` of 0 or more, two ``betas`` in [0, 1) and booleans as flags.
    Raises :class:`ModelFileError` naming ``path``, the group and the setting, then ``advice``."""
    problem = "" if isinstance(groups, list) and groups else "they are not a list of objects"
    for i, group in enumerate(groups if not problem else []):  # type: ignore[arg-type]
        problem = problem or _group_problem(group, f"group {i}")
    if problem:
        raise ModelFileError(
            f"{path}: its optimiser settings (metadata genreg.param_groups) are not Adam's: {problem}. Adam takes "
            "a list of objects, each with a list of parameter indices (params), finite lr, eps and weight_decay of "
            f"0 or more, and two betas in [0, 1); {advice}."
        )


def _group_problem(group: object, where: str) -> str:
    """What is wrong with one optimiser group of a checkpoint, or ``""``."""
    if not isinstance(group, dict):
        return f"{where} is not an object"

    def number(value: object, below: float = math.inf) -> bool:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return ok and 0 <= value < below  # type: ignore[operator]

    betas, params = group.get("betas"), group.get("params")
    flags = [key for key in ("amsgrad", "maximize", "capturable", "differentiable") if key in group]
    wrong = [key for key in ("lr", "eps", "weight_decay") if not number(group.get(key))]
    wrong += [] if isinstance(betas, list) and len(betas) == 2 and all(number(b, 1) for b in betas) else ["betas"]
    wrong += [] if isinstance(params, list) and all(number(p) and isinstance(p, int) for p in params) else ["params"]
    wrong += [key for key in flags if not isinstance(group[key], bool)]
    return f"{where} has {wrong[0]} {json.dumps(group.get(wrong[0]))[:40]}" if wrong else ""


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix``, prefix removed."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_state(path: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file whose names start with ``prefix`` (prefix removed), checksum verified."""
    return under(read_tensors(path)[1], prefix)
