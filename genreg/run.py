"""``genreg run``: validate, load data, build, train, and write the run folder.

A run folder holds ``spec.json`` (resolved), ``model.safetensors``,
``checkpoint.safetensors``, ``metrics.jsonl``, ``samples.png`` and ``latent.png``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genreg import checkpoint, distributed, pictures
from genreg.assembly import build_model
from genreg.callbacks import RunView, build_callbacks
from genreg.data import DataSplits
from genreg.errors import AssemblyError, RunFolderError, SpecError
from genreg.model import GenerativeModel
from genreg.spec import build_part
from genreg.trainer import CHECKPOINT, METRICS, train

SPEC = "spec.json"
MODEL = "model.safetensors"
OUTPUTS = (SPEC, MODEL, CHECKPOINT, METRICS, "samples.png", "latent.png")


@dataclass
class RunResult:
    """What a finished run left behind."""

    folder: Path
    model: GenerativeModel
    data: DataSplits
    history: list[dict]
    stopped: str | None = None  # why a callback ended the run before train.epochs


class StopNote:
    """Keeps why a callback stopped the run (possibly before any epoch, when resuming a stopped run)."""

    reason: str | None = None

    def on_run_end(self, run: RunView) -> None:
        self.reason = run.stop_reason


def load_data(data_spec: Any) -> DataSplits:
    """Load the dataset a ``data`` config names (validated, or a dict such as ``{"type": "npz", ...}``)."""
    return build_part("dataset", data_spec)


def recorded_data(model_path: str | Path) -> tuple[dict, DataSplits]:
    """The dataset spec a model file (or run folder) records, and that dataset loaded."""
    spec = checkpoint.read_spec(model_path)
    if "data" not in spec:
        raise SpecError(f"{model_path} records no dataset (it was not saved by a run); it has no data to use here.")
    return spec["data"], load_data(spec["data"])


def check_folder(folder: Path, resume: bool, overwrite: bool) -> list[str]:
    """Refuse to clobber a run, to resume nothing or to use a folder that cannot be written.

    It runs before any data is loaded, so these mistakes cost nothing. Returns the
    run files already there.
    """
    _check_writable(folder)
    existing = [name for name in OUTPUTS if (folder / name).exists()]
    if resume and not (folder / CHECKPOINT).exists():
        raise RunFolderError(f"cannot resume: {folder / CHECKPOINT} does not exist (run without --resume first).")
    if existing and not resume and not overwrite:
        raise RunFolderError(
            f"{folder} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
            "--overwrite to replace it, or --out to choose another folder."
        )
    return existing


def _check_writable(folder: Path) -> None:
    """The folder, or else the nearest folder above it that exists, must be a writable directory."""
    base = next(path for path in (folder, *folder.parents) if os.path.exists(path))
    if not base.is_dir():
        problem = f"{base} is a file, not a folder"
    elif not os.access(base, os.W_OK | os.X_OK):
        problem = f"{base} is not writable (no permission, or a read-only file system)"
    else:
        return
    raise RunFolderError(f"cannot write the run folder {folder}: {problem}; choose another folder with --out.")


def space_needed(model: GenerativeModel) -> int:
    """Bytes a run of ``model`` writes at its peak, a conservative estimate.

    A checkpoint holds the weights and Adam's two moments (three copies of the
    weights), and replacing it atomically keeps the old and the new one at once;
    the model file and the pictures are smaller than that, written after.
    """
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 6 * weights + 2**20


def create_folder(folder: Path, replace: list[str], needed: int) -> None:
    """Before training: make the folder, prove it takes a file and ``needed`` bytes, remove the files replaced."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".genreg-write-test"
        probe.write_text("ok")
        probe.unlink()
        free = shutil.disk_usage(folder).free + sum((folder / name).stat().st_size for name in replace)
    except OSError as exc:
        raise RunFolderError(f"cannot write to the run folder {folder}: {exc.strerror or exc}.") from None
    if free < needed:
        raise RunFolderError(
            f"not enough free space in {folder}: the run's checkpoint and model files need about "
            f"{needed / 1e6:.1f} MB and {free / 1e6:.1f} MB is free; free some space or choose another folder "
            "with --out."
        )
    for name in replace:
        (folder / name).unlink()


@dataclass
class Prepared:
    """A validated spec made concrete: its data, its model and the resolved spec."""

    data: DataSplits
    model: GenerativeModel
    resolved: dict
    callbacks: list[Any]


def prepare(spec: Any) -> Prepared:
    """Load the data, build the model (seeded) and the callbacks, so every problem shows before training.

    A callback may define ``check(model)`` to refuse, now, what it could only find
    wrong later (a metric the model does not log, say).
    """
    torch.manual_seed(spec.seed)
    data = load_data(spec.data)
    try:
        model = build_model(spec.model, data.info)
    except AssemblyError as exc:  # parts that do not fit the data: say which data
        shape = "x".join(map(str, data.info.image_shape))
        about = f"The data, {data.source or spec.data.type}, has {data.num_classes} classes and images of {shape}."
        raise AssemblyError(f"{exc} {about}") from None
    callbacks = build_callbacks(spec.train.callbacks)
    for callback in callbacks:
        if callable(getattr(callback, "check", None)):
            callback.check(model)
    return Prepared(data, model, {**spec.model_dump(mode="json"), "model": model.spec}, callbacks)


def check_resumable(folder: Path, resolved: dict) -> None:
    """A resumed run must use the spec it started with; train.epochs may grow and train.callbacks change.

    Callbacks only watch (they cannot change the weights), so a run stopped early
    by one can go on without it.
    """
    saved = json.loads((folder / SPEC).read_text())
    differences = [
        key
        for key in sorted(set(_flatten(saved)) | set(_flatten(resolved)))
        if not may_change(key) and _flatten(saved).get(key) != _flatten(resolved).get(key)
    ]
    if differences:
        raise RunFolderError(
            f"cannot resume {folder}: the spec differs from the one it started with at "
            f"{', '.join(differences)}; only train.epochs and train.callbacks may change."
        )


def may_change(key: str) -> bool:
    """Whether a resumed run's spec may differ from the original at the flattened ``key``."""
    return key in ("train.epochs", "train.callbacks")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def run(
    spec: Any, folder: str | Path, *, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> RunResult:
    """Train the validated ``spec`` into ``folder``; see the module docstring for what it writes."""
    folder = Path(folder)
    main = distributed.world().main  # under torchrun only rank 0 touches the folder; every rank trains
    existing = check_folder(folder, resume, overwrite) if main else []
    ready = prepare(spec)
    if resume:
        check_resumable(folder, ready.resolved)
    if main:
        create_folder(folder, [] if resume else existing, space_needed(ready.model))
        checkpoint.write_json(folder / SPEC, ready.resolved)
    model, data = ready.model, ready.data

    def finish() -> None:
        """The run folder's model file and pictures, written before the callbacks' ``on_run_end``."""
        model.eval()
        if not main:
            return
        checkpoint.save_model(model, folder / MODEL, spec=ready.resolved)
        torch.manual_seed(spec.seed)
        pictures.save_samples(model, folder / "samples.png")  # pictures are written atomically
        title = f"{ready.resolved['model']['type']}: test-set latent means by class"
        pictures.save_latent_scatter(model, data.test, folder / "latent.png", title=title)

    note = StopNote()
    history = train(
        model,
        data,
        spec.train,
        seed=spec.seed,
        run_dir=folder,
        resume=resume,
        spec=ready.resolved,
        progress=progress,
        callbacks=[*ready.callbacks, note],
        finish=finish,
    )
    return RunResult(folder, model, data, history, note.reason)
