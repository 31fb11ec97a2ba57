"""Model files and training checkpoints: safetensors only, never pickle.

A model file holds the weights plus, in its metadata, the resolved spec, the
data description and genreg's version, so that one file rebuilds the model. A
checkpoint also holds the optimiser state (tensors, with its hyper-parameters
as JSON) and the number of finished epochs: nothing is pickled, and training
needs no RNG state because every epoch reseeds from (seed, epoch). Every write
goes to a temporary file that replaces the old one only when complete, and
every file carries a checksum, because safetensors checks a file's layout but
not its contents.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import safe_open

from genreg.data.splits import DataInfo
from genreg.errors import GenregError, ModelFileError, first_line, special_file
from genreg.files.records import RecordedData, oversized
from genreg.files.run_folder import RunFolder
from genreg.files.tensors import (
    CHECKSUM,
    check_optimizer_state,
    check_param_groups,
    check_weights,
    cpu_tensors,
    load_state,
    read_tensors,
    save_tensors,
    under,
    unreadable,
)
from genreg.model.assembly import build_model, derive_spec
from genreg.model.generative import GenerativeModel
from genreg.plugin.manager import get_registry, plugin_infos
from genreg.spec.overrides import parse_json
from genreg.version import __version__

# Version 2: a model's conditioners live under ``conditioner.parts.<i>.`` (several condition columns);
# version-1 files, with one conditioner's tensors directly under ``conditioner.``, are still read.
MODEL_FORMAT = "genreg-model/2"
CHECKPOINT_FORMAT = "genreg-checkpoint/2"
READABLE_VERSIONS = ("1", "2")


def _plugins(model: GenerativeModel, spec: dict | None) -> dict[str, str]:
    """The plugin behind each registered component the file needs and the package it came from (with its version),
    to name a missing one on load: the model's parts and schedules, and what ``spec`` names besides (the dataset,
    whose plugin ``genreg eval`` needs, the learning-rate schedule and the callbacks)."""
    registry, infos = get_registry(), {info.name: info for info in plugin_infos()}
    parts = [*model.modules(), *(s for s in model.weight_schedules if s is not None)]
    entries = [registry.find(part) for part in parts] + [registry.lookup(*named) for named in _named_in(spec)]
    names = {entry.plugin for entry in entries if entry is not None}
    # "genreg-example-plugin 0.1.0"; a plugin added with register_plugin has no package: "registered in Python"
    origin = {
        name: f"{info.distribution} {info.version}".removesuffix(" -").strip("()") for name, info in infos.items()
    }
    return {name: origin.get(name, "unknown package") for name in sorted(names)}


def _named_in(spec: dict | None) -> list[tuple[str, str]]:
    """(kind, name) of each component a run's spec names outside its model: dataset, lr schedule, callbacks."""
    train = (spec or {}).get("train") or {}
    items = [("dataset", (spec or {}).get("data")), ("schedule", train.get("lr_schedule"))]
    items += [("callback", callback) for callback in train.get("callbacks") or []]
    return [
        (kind, item["type"]) for kind, item in items if isinstance(item, dict) and isinstance(item.get("type"), str)
    ]


def _model_metadata(model: GenerativeModel, spec: dict | None) -> dict[str, str]:
    metadata = {"genreg.format": MODEL_FORMAT, "genreg.version": __version__}
    metadata["genreg.data"] = json.dumps(model.data_info.to_json())
    metadata["genreg.plugins"] = json.dumps(_plugins(model, spec))
    try:
        metadata["genreg.spec"] = json.dumps(spec or {"model": derive_spec(model)})
    except ModelFileError as exc:
        warnings.warn(f"saving weights without a spec: {exc}", stacklevel=3)
    return metadata


def save_model(
    model: GenerativeModel, path: str | Path, spec: dict | None = None, metadata: dict[str, str] | None = None
) -> Path:
    """Write weights + spec (``spec`` or the model's own) to a ``.safetensors`` file.

    ``metadata`` adds entries of its own (e.g. ``genreg.extension``); they are
    covered by the checksum like the rest, and may not replace genreg's entries
    (``ValueError``). The write is atomic: a failed one raises
    :class:`~genreg.errors.OutputError` and leaves an earlier file at ``path`` as it was.
    Returns ``path``.
    """
    path = Path(path)
    recorded = _model_metadata(model, spec)
    clash = sorted(set(metadata or {}) & {*recorded, CHECKSUM})
    if clash:
        raise ValueError(f"save_model writes {', '.join(clash)} itself; give other metadata keys.")
    save_tensors(path, cpu_tensors(model.state_dict()), {**recorded, **(metadata or {})})
    return path


def read_metadata(path: str | Path, expected: str = MODEL_FORMAT) -> dict[str, str]:
    """The genreg metadata of a file, checked for format and version.

    Raises :class:`ModelFileError` for a missing or unreadable file, a safetensors
    file that is not genreg's, or a format or version this genreg does not read
    (saying whether to upgrade or to use the version that saved it).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file (expected a .safetensors file or a run folder).")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise unreadable(path, exc) from None
    fmt = metadata.get("genreg.format")
    if fmt is None:
        raise ModelFileError(
            f"{path} is a safetensors file but not a genreg one (no genreg metadata); if it holds weights "
            "of a model you build yourself, load them with genreg.load_weights(model, path)."
        )
    kind, _, version = fmt.partition("/")
    want_kind, _, want_version = expected.partition("/")
    allowed = {want_kind, CHECKPOINT_FORMAT.partition("/")[0]} if expected == MODEL_FORMAT else {want_kind}
    if kind not in allowed or version not in READABLE_VERSIONS:
        advice = ""
        if kind in allowed:
            newer = version.isdecimal() and int(version) > int(want_version)
            advice = "; upgrade genreg to load it" if newer else "; load it with the genreg version that saved it"
        readable = " or ".join(f"'{want_kind}/{v}'" for v in READABLE_VERSIONS)
        raise ModelFileError(
            f"{path} has format '{fmt}' (saved by genreg {metadata.get('genreg.version', '?')}); "
            f"this genreg {__version__} reads {readable}{advice}."
        )
    if expected == CHECKPOINT_FORMAT:  # what resuming reads before it restores anything
        checkpoint_epoch(path, metadata)
        param_groups(path, metadata)
    return metadata


_RESTART = "it was edited or not written by genreg; start the run again without --resume (or with --overwrite)"


def checkpoint_epoch(path: Path, metadata: dict[str, str]) -> int:
    """The finished epochs a checkpoint records (``genreg.epoch``: an integer of 0 or more), or a ModelFileError."""
    text = metadata.get("genreg.epoch", "0")
    if not (text.isascii() and text.isdecimal() and len(text) <= 9):
        raise ModelFileError(
            f"{path}: its metadata genreg.epoch is {text[:40]!r}, but a checkpoint records the number of epochs it "
            f"has trained, an integer of 0 or more; {_RESTART}."
        )
    return int(text)


def param_groups(path: Path, metadata: dict[str, str]) -> list[dict]:
    """A checkpoint's optimiser settings (``genreg.param_groups``), read within bounds and checked to be what Adam
    takes (:func:`~genreg.files.tensors.check_param_groups`), or a ModelFileError."""
    text = metadata.get("genreg.param_groups", "null")
    groups = parse_json(text, f"{path} (metadata genreg.param_groups)", ModelFileError)
    check_param_groups(path, groups, _RESTART)
    return groups


def _indices(groups: list[dict]) -> str:
    flat = [i for group in groups for i in group["params"]]
    return f"{flat[0]} to {flat[-1]}" if flat else "none"


def model_file(path: str | Path) -> Path:
    """A run folder means its ``model.safetensors``; a file means itself (a pipe or a device is refused: reading
    one as a file may never end)."""
    path, kind = Path(path), special_file(path)
    if kind:
        raise ModelFileError(f"{path} is {kind}, not a model file; give a .safetensors file or a run folder.")
    return RunFolder(path).model_path if path.is_dir() else path


def read_spec(path: str | Path) -> dict:
    """The spec recorded in a model file (at least ``{"model": ...}``; runs also record data and train).

    Raises :class:`ModelFileError` for a file without a spec or with damaged metadata.
    """
    path = model_file(path)
    metadata = read_metadata(path)
    if "genreg.spec" not in metadata:
        raise ModelFileError(f"{path} records no spec (its model was composed from unregistered parts).")
    return _recorded(path, metadata)[0]


def _recorded(path: Path, metadata: dict[str, str]) -> tuple[dict, DataInfo]:
    """The spec and data description a genreg file records, or an error saying they are damaged or out of bounds.

    Both are read with genreg's bounded JSON reader; the data description's sizes are validated
    (:class:`RecordedData`), and no integer of the model's spec may exceed :data:`~genreg.files.records.MAX_SIZE`.
    """
    try:
        spec, data = _record(path, metadata, "genreg.spec"), _record(path, metadata, "genreg.data")
        if not isinstance(spec.get("model"), dict):
            raise ValueError("the spec has no 'model' object")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"{path}: its genreg metadata is damaged ({type(exc).__name__}: {exc}); "
            "it was not written by genreg, or was edited afterwards."
        ) from None
    too_big = oversized(spec["model"])
    if too_big:
        raise ModelFileError(f"{path} records {too_big}, beyond any model genreg builds (at most 2**31).")
    try:
        recorded = RecordedData.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'it'}: {e['msg']}" for e in exc.errors())
        raise ModelFileError(f"{path}: its recorded data description (genreg.data) is invalid: {problems}.") from None
    return spec, DataInfo.from_json(recorded.model_dump(exclude_none=True))


def _record(path: Path, metadata: dict[str, str], key: str) -> Any:
    """One JSON record of a file's metadata, read within genreg's bounds (:func:`~genreg.spec.overrides.parse_json`)."""
    return parse_json(metadata[key], f"{path} (metadata {key})", ModelFileError)


def missing_plugins(metadata: dict[str, str]) -> str:
    """A sentence naming the plugins a file was saved with that are not loaded here (empty if none)."""
    try:
        saved = dict(parse_json(metadata.get("genreg.plugins", "{}"), "genreg.plugins", ModelFileError))
    except (TypeError, ValueError, ModelFileError):
        return ""
    loaded = {info.name for info in plugin_infos() if info.error is None}
    missing = [f"'{name}' ({origin})" for name, origin in saved.items() if name not in loaded]
    if not missing:
        return ""
    which = f"plugin {missing[0]}, which is" if len(missing) == 1 else f"plugins {', '.join(missing)}, which are"
    return f" It was saved with {which} not loaded here: install it, or check GENREG_PLUGINS and `genreg plugins`."


def load_model(path: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild a model from one ``.safetensors`` file (a run folder means its model file), in eval mode on ``device``.

    Nothing is unpickled: the file's metadata holds the resolved spec and the data
    description, which rebuild the parts, and its tensors fill them. Raises
    :class:`ModelFileError` for an unreadable, corrupted (checksum) or foreign file, a
    file whose spec names components no loaded plugin provides (naming the plugin and
    package it was saved with), recorded sizes out of bounds, or weights that do not fit the
    rebuilt model, have another dtype than it, or hold NaN or infinite values.

    The model is first built on the ``meta`` device (no memory) and checked against the file's
    tensors, so a file that records absurd sizes allocates nothing before it is refused.
    """
    path = model_file(path)
    metadata = read_metadata(path)
    if "genreg.spec" not in metadata:
        raise ModelFileError(
            f"{path} holds weights without a spec (its model was composed from unregistered parts); "
            "rebuild that model in Python and call genreg.load_weights(model, path)."
        )
    state = load_state(path, "model." if metadata["genreg.format"] == CHECKPOINT_FORMAT else "")
    spec, info = _recorded(path, metadata)
    with torch.device("meta"), warnings.catch_warnings():  # warnings come from the real build below
        warnings.simplefilter("ignore")
        _fill(_rebuild(path, metadata, spec, info), state, path, assign=True)  # names, shapes, dtypes, values
    model = _rebuild(path, metadata, spec, info)
    model.load_state_dict(state)  # checked above, against the same model built on the meta device
    return model.to(device).eval()


def _rebuild(path: Path, metadata: dict[str, str], spec: dict, info: DataInfo) -> GenerativeModel:
    """The model a file's spec and data description build (on the current default device), or a ModelFileError."""
    try:
        return build_model(spec["model"], info)
    except GenregError as exc:
        message = f"{path}: cannot rebuild the model it describes: {exc}{missing_plugins(metadata)}"
        raise ModelFileError(message) from None
    except RuntimeError as exc:  # torch refusing a size, e.g. a layer of more than 2**63 values
        raise ModelFileError(f"{path}: the sizes it records cannot be built ({first_line(exc)}).") from None


def _fill(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, assign: bool = False) -> None:
    """Load ``state`` into ``model``, naming ``path`` and the tensor when names, shapes or dtypes differ, or
    when a weight is NaN or infinite (see :func:`~genreg.files.tensors.check_weights`)."""
    check_weights(path, state, {name: value.dtype for name, value in model.state_dict().items()})
    try:
        model.load_state_dict(state, assign=assign)
    except RuntimeError as exc:
        lines = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # one paragraph
        raise ModelFileError(f"{path}: weights do not fit the model: {lines}") from None


def load_weights(model: torch.nn.Module, path: str | Path, prefix: str = "") -> torch.nn.Module:
    """Load a genreg file's weights (those under ``prefix``, prefix removed) into ``model``; returns it.

    Raises :class:`ModelFileError` when names or shapes do not match, or the file is unreadable.
    """
    _fill(model, load_state(path, prefix), Path(path))
    return model


def save_checkpoint(
    path: str | Path, model: GenerativeModel, optimizer: torch.optim.Optimizer, epoch: int, spec: dict | None
) -> None:
    """Everything needed to continue training after ``epoch`` finished epochs: tensors, plus JSON metadata."""
    optim = optimizer.state_dict()
    tensors = cpu_tensors(model.state_dict(), "model.")
    for index, state in optim["state"].items():
        tensors.update(cpu_tensors(state, f"optim.{index}."))
    metadata = _model_metadata(model, spec)
    metadata["genreg.format"] = CHECKPOINT_FORMAT
    metadata["genreg.epoch"] = str(epoch)
    metadata["genreg.param_groups"] = json.dumps(optim["param_groups"])
    save_tensors(Path(path), tensors, metadata)


def load_checkpoint(path: str | Path, model: GenerativeModel, optimizer: torch.optim.Optimizer) -> int:
    """Restore model and optimiser from a checkpoint; returns the number of finished epochs.

    Raises :class:`ModelFileError` for a file that is not a readable checkpoint, whose
    weights or optimiser state do not fit this run's model and optimiser (names, shapes,
    dtypes: nothing is cast), hold NaN or infinite values, or whose recorded epoch or
    optimiser settings are not ones genreg writes; nothing is restored then.
    """
    path = Path(path)
    metadata = read_metadata(path, CHECKPOINT_FORMAT)  # its epoch and optimiser settings checked
    tensors = read_tensors(path)[1]  # one read, checksum verified
    params = [p for group in optimizer.param_groups for p in group["params"]]
    check_optimizer_state(path, {k: v for k, v in tensors.items() if k.startswith("optim.")}, params)
    groups = param_groups(path, metadata)
    sizes, own = ([len(g["params"]) for g in gs] for gs in (groups, optimizer.param_groups))
    if sizes != own or sorted(i for g in groups for i in g["params"]) != list(range(len(params))):
        raise ModelFileError(
            f"{path}: its optimiser state does not fit this run's optimiser (it has groups of {sizes} parameters, "
            f"numbered {_indices(groups)}; this run's {own}); start the run again without --resume."
        )
    _fill(model, under(tensors, "model."), path)
    device = model.device
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in under(tensors, "optim.").items():
        index, _, key = name.partition(".")
        state.setdefault(int(index), {})[key] = tensor if key == "step" else tensor.to(device)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: its optimiser state does not fit this run's optimiser ({type(exc).__name__}: {exc}); "
            "start the run again without --resume."
        ) from None
    return checkpoint_epoch(path, metadata)
