"""One training loop for every recipe, readable top to bottom.

The data is moved to the device once; each epoch shuffles indices there and
``genreg.steps`` runs the batches. Every epoch reseeds the RNGs from (seed,
epoch), so a run resumed from its last checkpoint ends with exactly the weights
of a run that was never stopped (on CPU). SIGINT and SIGTERM abandon the epoch
under way and leave that checkpoint in place.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from genreg import checkpoint, distributed
from genreg.callbacks import Callbacks, RunView, build_callbacks
from genreg.data import DataSplits, Split, fixed_binarization
from genreg.errors import OutputError, SpecError, TrainingInterruptedError
from genreg.model import GenerativeModel
from genreg.spec import TrainConfig, build_part
from genreg.steps import Steps, autocast, make_optimizer, make_steps

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; under torchrun each rank takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"train.device is '{name}' but CUDA is not available here; use 'auto' or 'cpu'.")
    place = distributed.world()
    if device.type == "cuda" and device.index is None and place.distributed:
        device = torch.device("cuda", place.local_rank)
    return device


def prepare_conditions(model: GenerativeModel, data: DataSplits) -> None:
    """Check both splits' condition columns against the model, then let its conditioners take their statistics."""
    if model.conditioner is None:
        return
    for name, split in (("training", data.train), ("test", data.test)):
        where = f"{data.source or 'the data'} ({name} split)"
        model.conditioner.check(model.conditioner.columns_of(split.condition()), where)
    model.conditioner.fit(data.train)


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed every RNG from (seed, epoch) so any epoch can be replayed alone."""
    torch.manual_seed(seed * 1_000_003 + epoch)


@torch.no_grad()
def evaluate(
    model: GenerativeModel, split: Split, config: TrainConfig, progress: float = math.inf, batch_size: int = 1000
) -> dict[str, float]:
    """Weighted total and each loss term, averaged per image over ``split``."""
    device = model.device
    sums = None
    with model.evaluating():
        for start in range(0, len(split), batch_size):
            x = split.images[start : start + batch_size].to(device)
            condition = model.condition_of(split, slice(start, start + batch_size))
            with autocast(config, device):
                total, terms = model.loss(x, condition, progress)
            row = torch.stack([total.detach().float(), *terms.values()]) * x.shape[0]
            sums = row if sums is None else sums + row
    return dict(zip(["loss", *model.loss_names], (sums / len(split)).tolist(), strict=True))


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
    finish: Callable[[], None] | None = None,
) -> list[dict]:
    """Train ``model`` on ``data``; returns one metrics record per epoch (this run's, not a resumed one's past).

    With ``run_dir``, each epoch appends to ``metrics.jsonl`` and replaces
    ``checkpoint.safetensors``; ``resume`` continues from that checkpoint.
    ``callbacks`` (see :mod:`genreg.callbacks`) default to those ``config.callbacks``
    names; ``finish`` runs after the last epoch, before their ``on_run_end``.
    """
    device = resolve_device(config.device)
    distributed.join(device)
    place = distributed.world()
    model.to(device)
    train_split = data.train.to(device)
    test_split = fixed_binarization(data.test, data.binarize, seed).to(device)
    optimizer = make_optimizer(model, config, device)
    schedule = build_lr_schedule(config)
    run_dir = Path(run_dir) if run_dir is not None else None
    view = RunView(model, data, spec, run_dir, config.epochs)
    if not place.main:  # callbacks write files and talk to trackers: the main process does that
        callbacks = []
    hooks = Callbacks(build_callbacks(config.callbacks) if callbacks is None else callbacks, view)
    start = 0
    if resume and run_dir is not None:
        start = checkpoint.load_checkpoint(run_dir / CHECKPOINT, model, optimizer)
        if place.main:
            truncate_metrics(run_dir / METRICS, start)
            view._history.extend(read_metrics(run_dir / METRICS) if (run_dir / METRICS).exists() else [])
    prepare_conditions(model, data)
    steps = make_steps(model, optimizer, train_split, config, data.binarize)
    writes = run_dir is not None and place.main  # only rank 0 writes the run folder
    if writes and start == 0:  # something to resume from even if the first epoch is interrupted
        checkpoint.save_checkpoint(run_dir / CHECKPOINT, model, optimizer, 0, spec)
    n = len(train_split)
    seen = steps.n * place.size  # images trained on per epoch, over all ranks
    names = ["loss", *model.loss_names]
    history: list[dict] = []
    bar = tqdm(
        total=(config.epochs - start) * steps.steps,
        disable=not (progress and place.main),
        unit="step",
        dynamic_ncols=True,
    )
    last_test = ""
    hooks.call("on_run_start")
    with stop_requests() as stop:
        for epoch in range(start, config.epochs):
            if asked_to_stop(hooks, place):
                break
            view._begin_epoch(epoch + 1)
            hooks.call("on_epoch_start")
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}{last_test}")
            seed_epoch(seed, epoch)
            model.train()
            began = time.perf_counter()
            order = torch.randperm(n, device=device)
            if place.distributed:  # the same order on every rank, but each rank its own sampling noise
                torch.manual_seed((seed * 1_000_003 + epoch) * 1_000 + place.rank)
            weights = [model.loss_weights(epoch + s / steps.steps) for s in range(steps.steps)]
            lrs = (
                None
                if schedule is None
                else [config.lr * schedule.factor(epoch + s / steps.steps) for s in range(steps.steps)]
            )

            def on_step(s: int, epoch: int = epoch, lrs: list[float] | None = lrs) -> None:
                signum = stop.agreed(s, place)
                if signum:
                    bar.close()
                    raise interrupted(signum, epoch, run_dir)
                show_progress(bar, s, steps, names)
                if hooks.per_step:
                    view._after_step(s + 1, config.lr if lrs is None else lrs[s])
                    hooks.call("on_step")

            sums = distributed.sum_over_ranks(steps.epoch(order, torch.tensor(weights), on_step, lrs))
            steps.check_finite(names, epoch)
            record = {
                "epoch": epoch + 1,
                "train": dict(zip(names, (sums / seen).tolist(), strict=True)),
                "test": evaluate(model, test_split, config, progress=epoch + 1),
                "lr": config.lr if lrs is None else lrs[-1],
                "seconds": round(time.perf_counter() - began, 4),
            }
            history.append(record)
            view._end_epoch(record)
            last_test = f" (test loss {record['test']['loss']:.2f})"
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}{last_test}")
            if writes:
                checkpoint.save_checkpoint(run_dir / CHECKPOINT, model, optimizer, epoch + 1, spec)
                append_metrics(run_dir / METRICS, record)
                hooks.call("on_checkpoint", run_dir / CHECKPOINT)
            hooks.call("on_epoch_end")
    bar.close()
    if view.stop_reason is not None and history:
        history[-1]["stopped"] = view.stop_reason  # in what train returns; metrics.jsonl has the epoch's numbers
    if finish is not None:
        finish()
    hooks.call("on_run_end")
    return history


def build_lr_schedule(config: TrainConfig) -> Any:
    """The learning-rate schedule ``config.lr_schedule`` names (a validated config or a dict), or None."""
    if config.lr_schedule is None:
        return None
    return build_part("lr_schedule", config.lr_schedule, epochs=config.epochs)


def asked_to_stop(hooks: Callbacks, place: distributed.World) -> bool:
    """Whether a callback asked the run to stop; with several processes, the main one's answer counts for all."""
    wanted = hooks.view.stop_reason is not None
    if not place.distributed:
        return wanted
    return bool(distributed.max_over_ranks(torch.tensor([int(wanted)]))[0])


class StopRequest:
    """Set by a signal handler; read by the training loop between steps."""

    signum: int | None = None
    AGREE_EVERY = 20  # steps; ranks must stop at the same step, so with several they agree only this often

    def agreed(self, step: int, place: distributed.World) -> int:
        """The signal to stop for (0: none); with several ranks, any rank's signal stops all of them together."""
        if not place.distributed:
            return self.signum or 0
        if step % self.AGREE_EVERY:
            return 0
        return int(distributed.max_over_ranks(torch.tensor([self.signum or 0]))[0])


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """While training, SIGINT and SIGTERM ask the loop to stop after the current step.

    The first signal only sets the request (the step, and a checkpoint being
    written, finish); the handlers in place before are restored at once, so a
    second Ctrl-C acts as it always does. Outside the main thread, where Python
    cannot handle signals, nothing changes.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: object) -> None:
        request.signum = signum
        for number, handler in previous.items():
            signal.signal(number, handler)

    for signum in previous:
        signal.signal(signum, handle)
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupted(signum: int, epoch: int, run_dir: Path | None) -> TrainingInterruptedError:
    """The error that ends a run stopped by a signal, saying what was kept and how to go on."""
    name = signal.Signals(signum).name
    if run_dir is None:
        kept = "nothing was saved (no run folder)"
    else:
        kept = (
            f"{run_dir / CHECKPOINT} holds the state after epoch {epoch}; continue with "
            f"`genreg run SPEC --out {run_dir} --resume` (epoch {epoch + 1} is trained again from its start, "
            "to the same weights as a run that was never stopped)"
        )
    return TrainingInterruptedError(f"training stopped by {name} during epoch {epoch + 1}; {kept}.", signum)


def show_progress(bar: tqdm, step: int, steps: Steps, names: list[str]) -> None:
    """Advance the bar; every 20 steps show the running means (one read of the device)."""
    bar.update(1)
    if not bar.disable and (step % 20 == 0 or step == steps.steps - 1):
        seen = min((step + 1) * steps.batch, steps.n)
        bar.set_postfix({k: f"{v:.2f}" for k, v in zip(names, (steps.sums(step + 1) / seen).tolist(), strict=True)})


def truncate_metrics(path: Path, epochs: int) -> None:
    """Drop metric lines past the checkpoint (written after it, before a crash)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if _epoch_of(line) <= epochs]
    if len(kept) != len(lines):
        checkpoint.atomic_write(path, lambda tmp: tmp.write_text("".join(k + "\n" for k in kept)))


def append_metrics(path: Path, record: dict) -> None:
    """Add an epoch's line; a line cut short by a crash is dropped on resume (see truncate_metrics)."""
    try:
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise OutputError(
            f"could not append to {path} ({exc.strerror or exc}); the checkpoint of epoch {record['epoch']} was "
            "written, so the run can be resumed once there is room."
        ) from None


def _epoch_of(line: str) -> float:
    """The epoch a metrics line records; a line cut short by a crash counts as past every checkpoint."""
    try:
        return json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
