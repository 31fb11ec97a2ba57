"""Model files and training checkpoints: safetensors only, never pickle.

A model file holds the weights plus, in its metadata, the resolved spec, the
data description and genreg's version, so that one file rebuilds the model. A
checkpoint also holds the optimiser state (tensors, with its hyper-parameters
as JSON) and the number of finished epochs. Every write goes to a temporary
file that replaces the old one only when complete.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from genreg.data import DataInfo
from genreg.errors import GenregError, ModelFileError
from genreg.model import GenerativeModel
from genreg.version import __version__

MODEL_FORMAT = "genreg-model/1"
CHECKPOINT_FORMAT = "genreg-checkpoint/1"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then rename ``tmp`` over ``path``: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, value: Any) -> None:
    """Write JSON atomically, pretty-printed."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(value, indent=2) + "\n"))


def _cpu_tensors(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def _model_metadata(model: GenerativeModel, spec: dict | None) -> dict[str, str]:
    from genreg.assembly import derive_spec

    metadata = {"genreg.format": MODEL_FORMAT, "genreg.version": __version__}
    metadata["genreg.data"] = json.dumps(model.data_info.to_json())
    try:
        metadata["genreg.spec"] = json.dumps(spec or {"model": derive_spec(model)})
    except ModelFileError as exc:
        warnings.warn(f"saving weights without a spec: {exc}", stacklevel=3)
    return metadata


def save_model(model: GenerativeModel, path: str | Path, spec: dict | None = None) -> Path:
    """Write weights + spec (``spec`` or the model's own) to a ``.safetensors`` file."""
    path = Path(path)
    tensors = _cpu_tensors(model.state_dict())
    metadata = _model_metadata(model, spec)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path


def read_metadata(path: str | Path, expected: str = MODEL_FORMAT) -> dict[str, str]:
    """The genreg metadata of a file, checked for format and version."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file (expected a .safetensors file or a run folder).")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:
        raise ModelFileError(
            f"{path} is not a readable safetensors file ({exc}); it may be truncated or corrupted."
        ) from None
    fmt = metadata.get("genreg.format")
    if fmt is None:
        raise ModelFileError(f"{path} is a safetensors file but not a genreg one (no genreg metadata).")
    kind, _, version = fmt.partition("/")
    want_kind, _, want_version = expected.partition("/")
    allowed = {want_kind, CHECKPOINT_FORMAT.partition("/")[0]} if expected == MODEL_FORMAT else {want_kind}
    if kind not in allowed or version != want_version:
        raise ModelFileError(
            f"{path} has format '{fmt}' (saved by genreg {metadata.get('genreg.version', '?')}); "
            f"this genreg {__version__} reads '{expected}'."
        )
    return metadata


def load_state(path: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file whose names start with ``prefix`` (prefix removed)."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k[len(prefix) :]: fh.get_tensor(k) for k in fh.keys() if k.startswith(prefix)}  # noqa: SIM118
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot read tensors ({exc}); the file may be truncated or corrupted.") from None


def model_file(path: str | Path) -> Path:
    """A run folder means its ``model.safetensors``; a file means itself."""
    path = Path(path)
    return path / "model.safetensors" if path.is_dir() else path


def read_spec(path: str | Path) -> dict:
    """The spec recorded in a model file (at least ``{"model": ...}``; runs also record data and train)."""
    path = model_file(path)
    metadata = read_metadata(path)
    if "genreg.spec" not in metadata:
        raise ModelFileError(f"{path} records no spec (its model was composed from unregistered parts).")
    return json.loads(metadata["genreg.spec"])


def load_model(path: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild a model from one ``.safetensors`` file (a run folder means its model file)."""
    from genreg.assembly import build_model

    path = model_file(path)
    metadata = read_metadata(path)
    if "genreg.spec" not in metadata:
        raise ModelFileError(
            f"{path} holds weights without a spec (its model was composed from unregistered parts); "
            "rebuild that model in Python and call genreg.load_weights(model, path)."
        )
    spec = json.loads(metadata["genreg.spec"])
    info = DataInfo.from_json(json.loads(metadata["genreg.data"]))
    try:
        model = build_model(spec["model"], info)
    except GenregError as exc:
        raise ModelFileError(f"{path}: cannot rebuild the model it describes: {exc}") from None
    load_weights(model, path, prefix="model." if metadata["genreg.format"] == CHECKPOINT_FORMAT else "")
    return model.to(device).eval()


def load_weights(model: torch.nn.Module, path: str | Path, prefix: str = "") -> torch.nn.Module:
    """Load a genreg file's weights into ``model`` (names and shapes must match)."""
    state = load_state(path, prefix)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not fit the model: {exc}") from None
    return model


def save_checkpoint(
    path: str | Path, model: GenerativeModel, optimizer: torch.optim.Optimizer, epoch: int, spec: dict | None
) -> None:
    """Everything needed to continue training after ``epoch`` finished epochs."""
    optim = optimizer.state_dict()
    tensors = _cpu_tensors(model.state_dict(), "model.")
    for index, state in optim["state"].items():
        tensors.update(_cpu_tensors(state, f"optim.{index}."))
    metadata = _model_metadata(model, spec)
    metadata["genreg.format"] = CHECKPOINT_FORMAT
    metadata["genreg.epoch"] = str(epoch)
    metadata["genreg.param_groups"] = json.dumps(optim["param_groups"])
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_checkpoint(path: str | Path, model: GenerativeModel, optimizer: torch.optim.Optimizer) -> int:
    """Restore model and optimiser from a checkpoint; returns the finished epochs."""
    metadata = read_metadata(path, CHECKPOINT_FORMAT)
    load_weights(model, path, prefix="model.")
    device = model.device
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in load_state(path, "optim.").items():
        index, _, key = name.partition(".")
        state.setdefault(int(index), {})[key] = tensor if key == "step" else tensor.to(device)
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["genreg.param_groups"])})
    return int(metadata["genreg.epoch"])
