"""One training loop for every recipe, read top to bottom: :func:`train`, then :meth:`Loop.epoch`, then
:meth:`Loop.after_step`.

The data is moved to the device once; each epoch shuffles indices there and
:mod:`genreg.training.steps` runs the batches. Every epoch reseeds the RNGs from
(seed, epoch), so a run resumed from its last checkpoint ends with exactly the
weights of a run that was never stopped (on CPU). SIGINT and SIGTERM abandon the
epoch under way and leave that checkpoint in place.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from genreg.data.splits import DataSplits, Split, fixed_binarization
from genreg.errors import ModelFileError, RunFolderError
from genreg.files.model_files import CHECKPOINT_FORMAT, load_checkpoint, read_metadata, save_checkpoint
from genreg.files.run_folder import RunFolder
from genreg.model.generative import GenerativeModel
from genreg.model.losses import full_precision, metric_units, objective_name, objective_values, with_units
from genreg.model.schedules import build_schedule
from genreg.spec.overrides import parse_json
from genreg.spec.train import TrainConfig
from genreg.training import distributed
from genreg.training.callbacks import Callbacks, RunState, RunView, build_callbacks
from genreg.training.optim import make_optimizer
from genreg.training.precision import choose
from genreg.training.signals import StopRequest, interrupted, stop_requests
from genreg.training.steps import Steps, make_steps


@dataclass
class TrainResult:
    """What :func:`train` returns: this run's epoch records (not a resumed run's earlier ones) and, if a
    callback ended the run before ``train.epochs``, why."""

    history: list[dict] = field(default_factory=list)
    stopped: str | None = None
    precision: str = ""  # what the steps ran in, and why: "bf16 autocast (precision auto: this CPU has AVX512-BF16)"


def train(
    model: GenerativeModel,
    data: DataSplits,
    config: TrainConfig,
    *,
    seed: int = 0,
    run_dir: str | Path | None = None,
    resume: bool = False,
    spec: dict | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with the settings of ``config``.

    With ``run_dir``, each epoch appends its record to ``metrics.jsonl``, then replaces
    ``checkpoint.safetensors`` (recording ``spec``); ``resume`` continues from that
    checkpoint, dropping records past it. ``callbacks`` (see :mod:`genreg.training.callbacks`) default to those
    ``config.callbacks`` names. A record is ``{"epoch", "train": {...}, "test": {...},
    "lr", "precision", "seconds"}`` (``precision``: ``bf16`` or ``fp32``, what its steps ran in): each number
    measured with the epoch's own settings (the loss weights and learning rate of its last step), the losses
    per image in each term's
    unit (:func:`genreg.model.losses.metric_units`), and ``test`` also holds the
    objective (``neg_elbo`` or ``nll``, see :func:`average_losses`).

    Raises :class:`~genreg.errors.RunFolderError` for ``resume`` without a ``run_dir`` or
    with epochs that would bend a learning-rate schedule's curve (see :func:`check_lr_curve`),
    :class:`~genreg.errors.AssemblyError` for a learning-rate schedule that cannot be
    built, :class:`~genreg.errors.ModelFileError` for a checkpoint that cannot be
    resumed, :class:`~genreg.errors.OutputError` when a checkpoint or metrics line
    cannot be written, :class:`~genreg.errors.NonFiniteLossError` when a loss becomes
    NaN or infinite, and :class:`~genreg.errors.TrainingInterruptedError` on
    SIGINT/SIGTERM (the last checkpoint is kept).
    """
    if resume and run_dir is None:
        raise RunFolderError("resume=True continues the run in a run folder: pass its run_dir too.")
    device = distributed.resolve_device(config.device)
    distributed.join(device)
    world = distributed.world()
    model.to(device)
    train_split = data.train.to(device)  # images (N, C, H, W) and condition columns (N,), resident
    test_split = fixed_binarization(data.test, data.binarize, seed).to(device)
    optimizer = make_optimizer(model, config, device)
    lr_schedule = learning_rate_schedule(config)
    folder = RunFolder(run_dir) if run_dir is not None else None
    state = RunState(model, data, dict(spec or {}), folder.path if folder else None, config.epochs)
    if not world.main:  # callbacks write files and talk to trackers: the main process does that
        callbacks = []
    hooks = Callbacks(build_callbacks(config.callbacks) if callbacks is None else callbacks, RunView(state))
    start = 0
    if resume:
        check_lr_curve(read_metadata(folder.checkpoint_path, CHECKPOINT_FORMAT), config.epochs, folder.path)
        start = load_checkpoint(folder.checkpoint_path, model, optimizer)
        if world.main:
            folder.truncate_metrics(start)
            state.history.extend(folder.read_metrics())
    prepare_conditions(model, data)
    steps = make_steps(model, optimizer, train_split, config, data.binarize)
    writing_to = folder if world.main else None  # only rank 0 writes the run folder
    if writing_to is not None and start == 0:  # something to resume from even if the first epoch is interrupted
        save_checkpoint(writing_to.checkpoint_path, model, optimizer, 0, spec)
    if progress and world.main:  # what the progress bar's steps run in, and why
        tqdm.write(f"training on {device}: {steps.precision.describe()}", file=sys.stderr)
    bar = tqdm(
        total=(config.epochs - start) * steps.count,
        disable=not (progress and world.main),
        unit="step",
        dynamic_ncols=True,
    )
    result = TrainResult(precision=steps.precision.describe())
    hooks.call("on_run_start")
    with stop_requests() as signals:
        loop = Loop(
            model=model,
            optimizer=optimizer,
            lr_schedule=lr_schedule,
            steps=steps,
            config=config,
            seed=seed,
            test_split=test_split,
            hooks=hooks,
            state=state,
            bar=bar,
            world=world,
            writing_to=writing_to,
            signals=signals,
        )
        for epoch in range(start, config.epochs):  # 0-based here, 1-based in records and for callbacks
            if loop.stop_agreed():
                break
            result.history.append(loop.epoch(epoch))
    bar.close()
    result.stopped = state.stop_reason
    hooks.call("on_run_end")
    signals.act()  # a signal during the last epoch's checkpoint: the model file and pictures are written now
    return result


def learning_rate_schedule(config: TrainConfig) -> Any:
    """The schedule ``train.lr_schedule`` names, built for the run's epochs; None for a constant rate."""
    if config.lr_schedule is None:
        return None
    return build_schedule(config.lr_schedule, config.epochs, "train.lr_schedule")


GRID = 100  # points per epoch at which a resumed run's learning-rate curve is compared with the trained one's


def check_lr_curve(checkpoint: Mapping[str, str], epochs: int, run: Path) -> None:
    """Refuse to resume with ``epochs`` a run whose learning-rate schedule then draws another curve.

    ``checkpoint`` is the checkpoint's metadata: its spec's ``train.lr_schedule`` and
    ``train.epochs`` drew the curve its epochs were trained on. A schedule built for
    the run's length (cosine, one-cycle) changes shape when ``train.epochs`` does:
    resumed, the run would follow neither curve (cosine from 2 to 5 epochs: the
    learning rate jumps from near 0 back up). The curves are compared at
    :data:`GRID` points an epoch over the trained epochs; a schedule that does not
    depend on the length (step, warmup) resumes with any epochs. A checkpoint
    recording no spec is not checked. Raises :class:`RunFolderError`.
    """
    where = f"{RunFolder(run).checkpoint_path} (metadata genreg.spec)"
    spec = parse_json(checkpoint.get("genreg.spec") or "{}", where, ModelFileError)
    train = spec.get("train") if isinstance(spec, dict) else None
    train = train if isinstance(train, dict) else {}
    before, schedule, trained = train.get("epochs"), train.get("lr_schedule"), int(checkpoint.get("genreg.epoch", 0))
    if not isinstance(schedule, dict) or not isinstance(before, int) or before < 1 or before == epochs or not trained:
        return  # no schedule, or not one a spec of genreg's records: nothing to compare
    old, new = (build_schedule(schedule, n, "train.lr_schedule") for n in (before, epochs))
    points = [k / GRID for k in range(trained * GRID + 1)]
    if all(math.isclose(old.factor(p), new.factor(p), rel_tol=1e-9, abs_tol=1e-15) for p in points):
        return
    lr, kind = train.get("lr", 1.0), schedule.get("type")
    raise RunFolderError(
        f"cannot resume {run} with train.epochs {epochs}: its train.lr_schedule ('{kind}') depends on the run's "
        f"length and drew its {trained} trained epochs for train.epochs {before}; with {epochs} it draws another "
        f"curve (at the end of epoch {trained} the trained curve is at lr {lr * old.factor(trained):.2g}, the one "
        f"for {epochs} epochs at {lr * new.factor(trained):.2g}), and the resumed run would jump onto it. Train a "
        f"new run with train.epochs {epochs} (genreg run {RunFolder(run).spec_path} --set train.epochs={epochs} --out "
        f"NEW_FOLDER), resume with train.epochs {before}, or use a schedule that does not depend on the run's "
        "length (step, warmup, or none)."
    )


@dataclass
class Loop:
    """What every epoch of a run uses; :meth:`epoch` trains one, :meth:`after_step` follows each step."""

    model: GenerativeModel
    optimizer: torch.optim.Optimizer
    lr_schedule: Any  # a built schedule (see genreg.plugin.protocols.Schedule), or None for a constant lr
    steps: Steps
    config: TrainConfig
    seed: int
    test_split: Split
    hooks: Callbacks
    state: RunState
    bar: tqdm
    world: distributed.World
    writing_to: RunFolder | None  # the run folder this process writes; None without one, or on other ranks
    signals: StopRequest

    def epoch(self, epoch: int) -> dict:
        """Train epoch ``epoch`` (0-based), measure it on the test split, checkpoint it; returns its record."""
        config, steps, state = self.config, self.steps, self.state
        state.begin_epoch(epoch + 1)
        self.hooks.call("on_epoch_start")
        self.show_epoch(epoch)
        torch.manual_seed(epoch_seed(self.seed, epoch))
        self.model.train()
        began = time.perf_counter()
        order = torch.randperm(len(steps.split), device=steps.device)  # (N,): the same on every rank
        if self.world.distributed:  # ... but each rank its own sampling noise
            torch.manual_seed(epoch_seed(self.seed, epoch) * 1_000 + self.world.rank)
        progress = [epoch + s / steps.count for s in range(steps.count)]  # in epochs, before each step
        weights = torch.tensor([self.model.loss_weights(p) for p in progress])  # (steps, terms)
        lrs = None if self.lr_schedule is None else [config.lr * self.lr_schedule.factor(p) for p in progress]
        after_step = functools.partial(self.after_step, epoch, lrs)
        sums = distributed.sum_over_ranks(steps.epoch(order, weights, after_step, lrs))  # (1 + terms,)
        names = self.names
        steps.check_finite(names, epoch, RunFolder(state.folder).spec_path if state.folder else None)
        record = {
            "epoch": epoch + 1,
            "train": dict(zip(names, (sums / (steps.share * self.world.size)).tolist(), strict=True)),
            "test": average_losses(self.model, self.test_split, config, progress=progress[-1]),  # the last step's
            "lr": config.lr if lrs is None else lrs[-1],
            "precision": steps.precision.name,  # what this epoch trained in: a resumed run may change machine
            "seconds": round(time.perf_counter() - began, 4),
        }
        state.step = steps.count  # what callbacks see at the epoch's end, with or without an on_step hook
        state.end_epoch(record)
        self.show_epoch(epoch, record)
        if self.writing_to is not None:  # the record first: one past the checkpoint is dropped on resume
            self.writing_to.append_metrics(record)
            save_checkpoint(self.writing_to.checkpoint_path, self.model, self.optimizer, epoch + 1, state.spec or None)
            self.hooks.call("on_checkpoint", self.writing_to.checkpoint_path)
        self.hooks.call("on_epoch_end")
        return record

    def after_step(self, epoch: int, lrs: list[float] | None, step: int) -> None:
        """After step ``step`` (0-based) of ``epoch``: stop on a signal, show progress, call ``on_step`` hooks."""
        signum = self.signals.agreed(step, self.world)
        if signum:
            self.bar.close()
            raise interrupted(signum, epoch, self.state.folder)
        show_progress(self.bar, step, self.steps, self.names, self.units)
        if self.hooks.per_step:
            self.state.after_step(step + 1, self.config.lr if lrs is None else lrs[step])
            self.hooks.call("on_step")

    @functools.cached_property
    def names(self) -> list[str]:
        """What each epoch reports, in the loss table's order: the weighted total, then each term."""
        return ["loss", *self.model.loss_names]

    @functools.cached_property
    def units(self) -> dict[str, str]:
        """The unit of every metric an epoch reports, by name (:func:`genreg.model.losses.metric_units`)."""
        return metric_units(self.model.losses, self.model.data_info.singular)

    def show_epoch(self, epoch: int, record: dict | None = None) -> None:
        """``epoch 3/10 (test neg_elbo=123.45 nats/image)`` on the progress bar: the last finished epoch's test
        objective (its weighted total for a model without one, or a record written before objectives were)."""
        last = record or (self.state.history[-1] if self.state.history else None)
        name = objective_name(self.model.losses)
        name = name if last and name in last["test"] else "loss"
        test = f" (test {with_units({name: last['test'][name]}, self.units)})" if last else ""
        self.bar.set_description(f"epoch {epoch + 1}/{self.config.epochs}{test}")

    def stop_agreed(self) -> bool:
        """Whether a callback asked the run to stop; with several processes, the main one's answer counts."""
        wanted = self.state.stop_reason is not None
        if not self.world.distributed:
            return wanted
        return bool(distributed.max_over_ranks(torch.tensor([int(wanted)]))[0])


def prepare_conditions(model: GenerativeModel, data: DataSplits) -> None:
    """Check both splits' condition columns against the model, then let its conditioners take their statistics."""
    if model.conditioner is None:
        return
    for name, split in (("training", data.train), ("test", data.test)):
        where = f"{data.source or 'the data'} ({name} split)"
        model.conditioner.check(model.conditioner.columns_of(split.condition()), where)
    model.conditioner.fit(data.train)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based) of a run seeded ``seed``: every epoch can be replayed alone."""
    return seed * 1_000_003 + epoch


@torch.no_grad()
def average_losses(
    model: GenerativeModel, split: Split, config: TrainConfig, progress: float = math.inf, batch_size: int = 1000
) -> dict[str, float]:
    """The weighted total (``loss``), each loss term and the model's objective, averaged per image over ``split``.

    The total takes the loss weights of ``progress`` epochs (a run's test metrics:
    those of the epoch's last step; by default the final weights). The objective,
    named by :func:`genreg.model.losses.objective_name`, needs no weights: ``neg_elbo``
    (nats per image; a one-sample estimate of the negative ELBO) for a model with a
    KL term, ``nll`` (the reconstruction NLL, nats per image) for one without, absent
    for a model without a likelihood term; terms that are neither are left out of it.
    Each value is in its unit (:func:`genreg.model.losses.metric_units`).
    """
    device = model.device
    precision = choose(config.precision, device)
    objective = objective_name(model.losses)
    weights = torch.tensor(model.loss_weights(progress), device=device)
    sums = None
    with model.evaluating():
        for start in range(0, len(split), batch_size):
            x = split.images[start : start + batch_size].to(device)
            condition = model.condition_of(split, slice(start, start + batch_size))
            with precision.autocast(device):
                out = model(x, condition)
                terms = torch.stack([full_precision(v).mean() for v in model.loss_values(x, out).values()])
                extra = [objective_values(model.losses, x, out).mean()] if objective else []
            row = torch.stack([(terms * weights.to(terms.dtype)).sum(), *terms, *extra]) * x.shape[0]
            sums = row if sums is None else sums + row
    names = ["loss", *model.loss_names, *([objective] if objective else [])]
    return dict(zip(names, (sums / len(split)).tolist(), strict=True))


def show_progress(bar: tqdm, step: int, steps: Steps, names: list[str], units: Mapping[str, str]) -> None:
    """Advance the bar; every 20 steps show the running means, each with its unit (one read of the device)."""
    bar.update(1)
    if not bar.disable and (step % 20 == 0 or step == steps.count - 1):
        seen = min((step + 1) * steps.batch_size, steps.share)
        means = dict(zip(names, (steps.sums(step + 1) / seen).tolist(), strict=True))
        bar.set_postfix_str(with_units(means, units))
