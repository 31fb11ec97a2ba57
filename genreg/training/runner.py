"""``genreg run``: validate, load data, build, train, and write the run folder (see :mod:`genreg.files.run_folder`).

Every check that can fail runs before anything is written: the folder, the data,
the model's assembly and the callbacks' own checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genreg.data.loading import load_data
from genreg.data.splits import DataSplits
from genreg.errors import AssemblyError
from genreg.files.model_files import save_model
from genreg.files.run_folder import RunFolder
from genreg.model.assembly import build_model
from genreg.model.generative import GenerativeModel
from genreg.training import distributed
from genreg.training.callbacks import RunView, build_callbacks
from genreg.training.loop import learning_rate_schedule, train
from genreg.viz.figures import save_figure
from genreg.viz.latent import latent_scatter_figure
from genreg.viz.samples import samples_figure


@dataclass
class RunResult:
    """What a finished run left behind."""

    folder: Path
    model: GenerativeModel
    data: DataSplits
    history: list[dict]
    stopped: str | None = None  # why a callback ended the run before train.epochs


@dataclass
class Prepared:
    """A validated spec made concrete: its data, its model, the resolved spec and its callbacks."""

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
    learning_rate_schedule(spec.train)  # a schedule that cannot be built fails now, not after the folder is written
    callbacks = build_callbacks(spec.train.callbacks)
    for callback in callbacks:
        if callable(getattr(callback, "check", None)):
            callback.check(model)
    return Prepared(data, model, {**spec.model_dump(mode="json"), "model": model.spec}, callbacks)


def space_needed(model: GenerativeModel) -> int:
    """Bytes a run of ``model`` writes at its peak, a conservative estimate.

    A checkpoint holds the weights and Adam's two moments (three copies of the
    weights), and replacing it atomically keeps the old and the new one at once;
    the model file and the pictures are smaller than that, written after.
    """
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 6 * weights + 2**20


class RunOutputs:
    """The callback that writes the run folder's model file and pictures when training ends.

    The runner puts it first, so every other callback's ``on_run_end`` finds them written.
    """

    def __init__(self, folder: RunFolder, seed: int) -> None:
        self.folder, self.seed = folder, seed

    def on_run_end(self, run: RunView) -> None:
        model, resolved = run.model, run.spec
        save_model(model, self.folder.model_path, spec=resolved)
        with model.evaluating():
            torch.manual_seed(self.seed)
            save_figure(samples_figure(model), self.folder.samples_path)  # pictures are written atomically
            title = f"{resolved['model']['type']}: test-set latent means by class"
            save_figure(latent_scatter_figure(model, run.data.test, title=title), self.folder.latent_path)


def run(
    spec: Any, folder: str | Path, *, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> RunResult:
    """Train the validated ``spec`` into the run folder ``folder``.

    Raises :class:`~genreg.errors.RunFolderError` for a folder that holds another run
    (without ``resume`` or ``overwrite``), cannot be written or cannot be resumed,
    and whatever validation, data loading or training raises; nothing is removed
    or written before the data, model and callbacks have been checked.
    """
    folder = RunFolder(folder)
    main = distributed.world().main  # under torchrun only rank 0 touches the folder; every rank trains
    existing = folder.check(resume, overwrite) if main else []
    ready = prepare(spec)
    if resume:
        folder.check_resumable(ready.resolved)
    if main:
        folder.create([] if resume else existing, space_needed(ready.model))
        folder.write_spec(ready.resolved)
    outputs = [RunOutputs(folder, spec.seed)] if main else []
    result = train(
        ready.model,
        ready.data,
        spec.train,
        seed=spec.seed,
        run_dir=folder.path,
        resume=resume,
        spec=ready.resolved,
        progress=progress,
        callbacks=[*outputs, *ready.callbacks],
    )
    ready.model.eval()
    return RunResult(folder.path, ready.model, ready.data, result.history, result.stopped)
