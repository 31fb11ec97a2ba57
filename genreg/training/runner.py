"""``genreg run``: validate, load data, build, train, and write the run folder (see :mod:`genreg.files.run_folder`).

Every check that can fail runs before anything is written: the folder, the data,
the model's assembly and the callbacks' own checks.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genreg.data.columns import LABEL
from genreg.data.loading import load_data
from genreg.data.sparse import dense
from genreg.data.splits import DataInfo, DataSplits
from genreg.errors import AssemblyError, PictureError, RunFolderError, first_line
from genreg.files.model_files import CHECKPOINT_FORMAT, load_model, read_metadata, save_model
from genreg.files.run_folder import RunFolder
from genreg.model.assembly import build_model
from genreg.model.generative import GenerativeModel
from genreg.model.losses import check_values
from genreg.spec.validate import validate_spec
from genreg.training import distributed, signals
from genreg.training.callbacks import RunView, build_callbacks
from genreg.training.loop import check_lr_curve, learning_rate_schedule, train
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
    precision: str = ""  # what the steps ran in, and why (see genreg.training.precision)


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
    distributed.resolve_device(spec.train.device)  # CUDA asked for where there is none: refused now
    torch.manual_seed(spec.seed)
    data = load_data(spec.data)
    try:
        model = build_model(spec.model, data.info)
    except AssemblyError as exc:  # parts that do not fit the data: say which data
        about = f"The data, {data.source or spec.data.type}, has {data.num_classes} classes and {data.info.samples}."
        raise AssemblyError(f"{exc} {about}") from None
    check_data(model, data)
    learning_rate_schedule(spec.train)  # a schedule that cannot be built fails now, not after the folder is written
    callbacks = build_callbacks(spec.train.callbacks)
    for callback in callbacks:
        if callable(getattr(callback, "check", None)):
            callback.check(model)
    return Prepared(data, model, {**spec.model_dump(mode="json"), "model": model.spec}, callbacks)


def resolve_spec(raw: dict, info: DataInfo, source: str | Path = "spec") -> dict:
    """A whole spec as this genreg resolves it for a run (as :func:`prepare` does): validated with
    today's registry, every default filled in, and the model's spec as building it fills it in (the conditioners'
    ``num_classes`` from ``info``). A run folder's spec.json written by an earlier genreg lacks the defaults added
    since; resolved again, it compares equal to the same spec resolved today.

    The model is built on the ``meta`` device, so nothing is allocated. Raises
    :class:`~genreg.errors.SpecError` naming ``source`` for a spec that does not validate here, and
    :class:`~genreg.errors.AssemblyError` for a model that does not build on data of ``info``.
    """
    spec = validate_spec(raw, source=str(source))
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings about the spec were given when the run started
        model = build_model(spec.model, info)
    return {**spec.model_dump(mode="json"), "model": model.spec}


def check_data(model: GenerativeModel, data: DataSplits) -> None:
    """Before any work: a model conditioned on the class label needs labelled data (an :class:`AssemblyError`
    otherwise); each loss term with a ``check_data(samples, source)`` looks at the training samples (a likelihood
    refuses data it cannot describe, Bernoulli outside [0, 1], or warns about its scale), and a term with a
    ``check_values(samples, source, what)`` (the count likelihoods) the test samples as well. Training samples kept
    sparse (:class:`~genreg.data.sparse.SparseRows`) are made dense for a term unless it declares ``reads_sparse =
    True``."""
    if model.conditional and LABEL in model.conditioner.columns and not data.info.labelled:
        raise AssemblyError(
            f"the model is conditioned on the class label (column '{LABEL}'), but the data, {data.source or 'given'}, "
            "has no labels: give the dataset a label column or array, or train an unconditional model (ae, vae)."
        )
    source = data.source or "the data"
    for term in model.losses:
        check = getattr(term, "check_data", None)
        if callable(check):
            samples = data.train.images  # sparse rows only to a term that reads them
            check(samples if getattr(term, "reads_sparse", False) else dense(samples), source)
    check_values(model.losses, data.test.images, source, "the test samples")  # fitting nothing to them


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
    A signal meanwhile waits until they are (see :func:`~genreg.training.signals.deferred`).
    """

    def __init__(self, folder: RunFolder, seed: int) -> None:
        self.folder, self.seed = folder, seed

    def on_run_end(self, run: RunView) -> None:
        with signals.deferred():
            save_model(run.model, self.folder.model_path, spec=run.spec)
            if run.spec.get("train", {}).get("pictures", True):
                self.draw(run.model, run.data, self.folder.PICTURES)

    def draw(self, model: GenerativeModel, data: DataSplits, names: tuple[str, ...] | list[str]) -> None:
        """Draw the pictures ``names`` (of :data:`RunFolder.PICTURES`) of ``model``; each is written atomically.

        A picture that cannot be drawn does not keep the others from being drawn; then raises
        :class:`~genreg.errors.PictureError` naming each that failed, why, and the command that draws it.
        """
        title = f"{model.spec['type']}: test-set latent means by class"
        figures = {
            RunFolder.SAMPLES: lambda: samples_figure(model),
            RunFolder.LATENT: lambda: latent_scatter_figure(model, data.test, title=title),
        }
        failed = []
        with model.evaluating():
            for name in names:
                torch.manual_seed(self.seed)
                try:
                    save_figure(figures[name](), self.folder.path / name)
                except Exception as exc:  # each picture that fails is reported, after the others are drawn
                    failed.append((name, f"{type(exc).__name__}: {first_line(exc)}"))
        if failed:
            commands = {RunFolder.SAMPLES: "sample", RunFolder.LATENT: "latent"}
            raise PictureError(
                f"{self.folder.path}: the run is trained and {self.folder.model_path} written, but "
                + "; ".join(f"{name} could not be drawn ({why})" for name, why in failed)
                + ". Draw a picture from the model file once the cause is fixed ("
                + ", ".join(f"`genreg {commands[name]} {self.folder.model_path} -o FILE`" for name, _ in failed)
                + "), or set train.pictures: false to train without pictures."
            )


def draw_missing_pictures(spec: Any, folder: str | Path) -> list[str]:
    """Draw the pictures a trained run in ``folder`` lacks (killed after writing its model file) from that
    model file, as the run would have drawn them; returns their names."""
    folder = RunFolder(folder)
    with folder.locked():
        missing = folder.missing_pictures()
        if missing:
            RunOutputs(folder, spec.seed).draw(load_model(folder.model_path), load_data(spec.data), missing)
    return missing


class Replaced:
    """The callback that deletes an overwritten run's files (set aside) once the new run is under way."""

    def __init__(self, folder: RunFolder, aside: Path | None) -> None:
        self.folder, self.aside = folder, aside

    def on_run_start(self, run: RunView) -> None:  # the new run's first checkpoint is written
        self.folder.discard(self.aside)
        self.aside = None


def run(
    spec: Any, folder: str | Path, *, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> RunResult:
    """Train the validated ``spec`` into the run folder ``folder``.

    Every check runs before anything is written or removed: the folder, then (under
    the folder's lock, see :meth:`RunFolder.locked`) the data, the model, the device,
    the schedules and the callbacks. With ``overwrite`` the old run's files, and the
    files computed from its model (``eval.json``), are moved aside, and put back if
    the new run fails before its first checkpoint. Raises
    :class:`~genreg.errors.RunFolderError` for a folder that holds another run (without
    ``resume`` or ``overwrite``), is being written by another process, cannot be
    written, or cannot be resumed with this spec (another spec, or fewer epochs than
    it has trained), and whatever validation, data loading or training raises. A
    folder holding only a ``spec.json`` (a run stopped before its first checkpoint)
    starts again from epoch 1, with or without ``resume``, if the spec is the same.
    SIGINT or SIGTERM at any moment raise :class:`~genreg.errors.TrainingInterruptedError`
    saying what the folder holds (see :mod:`genreg.training.signals`).
    """
    folder, written = RunFolder(folder), Written(kept=not overwrite)  # an overwrite keeps the old run until written
    with signals.raised():
        try:
            return _run(spec, folder, resume, overwrite, progress, written)
        except signals.Stopped as stop:
            raise signals.stopped(stop.signum, folder.path if written.kept else None) from None


@dataclass
class Written:
    """Whether the run folder holds this run (not one it replaces, or put back), for the message of a signal."""

    kept: bool


def _run(spec: Any, folder: RunFolder, resume: bool, overwrite: bool, progress: bool, written: Written) -> RunResult:
    """:func:`run`, its signals aside."""
    main = distributed.world().main  # under torchrun only rank 0 touches the folder; every rank trains
    if main:
        folder.check(resume, overwrite)  # mistakes that cost nothing to find, before any data is loaded
    ready = prepare(spec)
    if not main:
        return _train(spec, ready, folder, resume, progress, [])
    with folder.locked():
        existing = folder.check(resume, overwrite)  # again, now that no other process can change it
        # the folder's spec.json as this genreg resolves it (one of an earlier genreg lacks today's defaults)
        resolve = functools.partial(resolve_spec, info=ready.data.info, source=folder.spec_path)
        if folder.unstarted() and not overwrite:  # stopped before its first checkpoint: it starts again
            folder.check_unstarted(ready.resolved, resume, resolve)
            resume, existing = False, []
        if resume:
            folder.check_resumable(ready.resolved, resolve)
            check_epochs(folder, spec.train.epochs)
        replaced = [] if resume else [*existing, *folder.derived()]
        folder.create(replaced, space_needed(ready.model))
        aside = folder.set_aside(replaced)
        replacing = Replaced(folder, aside)
        try:
            written.kept = True
            folder.write_spec(ready.resolved)
            return _train(spec, ready, folder, resume, progress, [replacing, RunOutputs(folder, spec.seed)])
        finally:
            if replacing.aside is not None:  # set aside and still there: the new run never got under way
                written.kept = False
                folder.restore(replacing.aside)


def check_epochs(folder: RunFolder, epochs: int) -> None:
    """A resumed run may not end before the epochs its checkpoint has trained (its files would then lie), nor
    change a learning-rate schedule's curve by changing its length (:func:`genreg.training.loop.check_lr_curve`)."""
    checkpoint = read_metadata(folder.checkpoint_path, CHECKPOINT_FORMAT)
    trained = int(checkpoint.get("genreg.epoch", 0))
    if epochs < trained:
        raise RunFolderError(
            f"cannot resume {folder.path} with train.epochs {epochs}: it has trained {trained} epochs already. "
            f"Give train.epochs of {trained} or more, or train a new run with --out or --overwrite."
        )
    check_lr_curve(checkpoint, epochs, folder.path)


def _train(spec: Any, ready: Prepared, folder: RunFolder, resume: bool, progress: bool, own: list) -> RunResult:
    """Train ``ready`` into ``folder`` with the run's own callbacks ``own`` before the spec's."""
    result = train(
        ready.model,
        ready.data,
        spec.train,
        seed=spec.seed,
        run_dir=folder.path,
        resume=resume,
        spec=ready.resolved,
        progress=progress,
        callbacks=[*own, *ready.callbacks],
    )
    ready.model.eval()
    return RunResult(folder.path, ready.model, ready.data, result.history, result.stopped, result.precision)
