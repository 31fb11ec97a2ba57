"""Callbacks: code the trainer calls at fixed points of a run, to watch it or to stop it.

A callback is any object with some of these methods, each optional; every one
gets a :class:`RunView`, the read-only view of the run:

- ``on_run_start(run)`` before the first epoch (``run.history`` holds the epochs
  a resumed run already has);
- ``on_epoch_start(run)``; ``run.epoch`` is the epoch about to be trained (1-based);
- ``on_checkpoint(run, path)`` once the epoch's checkpoint is written (runs with a folder);
- ``on_epoch_end(run)``; ``run.record`` holds the epoch's train and test metrics;
- ``on_run_end(run)`` after the run folder's model file and pictures are written;
- ``on_step(run)`` after every optimiser step. Only callbacks that define it are
  called per step, so the steps of a run without one run back to back.

A hook asks the run to stop with ``run.request_stop(reason)``: the trainer ends
after the current epoch, whose checkpoint is kept, so ``--resume`` can continue.
Callbacks run on the main process only, and never change the run's random
numbers: each call runs under a forked RNG, so a run with callbacks trains to the
same weights as one without.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from genreg.data.splits import DataSplits
from genreg.errors import GenregError
from genreg.model.generative import GenerativeModel
from genreg.model.losses import objective_name
from genreg.spec.validate import build_part


@dataclass
class RunState:
    """What the training loop knows of the run under way; it alone changes it, and callbacks read it
    through a :class:`RunView`."""

    model: GenerativeModel
    data: DataSplits
    spec: dict
    folder: Path | None
    epochs: int
    history: list[dict] = field(default_factory=list)
    epoch: int = 0
    step: int = 0
    lr: float = math.nan
    stop_reason: str | None = None

    def begin_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (1-based) is about to be trained."""
        self.epoch, self.step = epoch, 0

    def after_step(self, step: int, lr: float) -> None:
        """``step`` optimiser steps of the epoch are done, the last at learning rate ``lr``."""
        self.step, self.lr = step, lr

    def end_epoch(self, record: dict) -> None:
        """The epoch is over: its record joins the history."""
        self.history.append(record)
        self.lr = record["lr"]


def _state_field(name: str, doc: str) -> property:
    """A read-only property of :class:`RunView` that reads the run state's ``name``."""
    return property(lambda view: getattr(view._state, name), doc=doc)


class RunView:
    """What a callback sees of the run under way; it may only ask the run to stop."""

    def __init__(self, state: RunState) -> None:
        self._state = state

    model = _state_field("model", "The model being trained (sample or reconstruct ``with run.model.evaluating():``).")
    data = _state_field("data", "The run's data (its test split is what the ``test`` metrics are measured on).")
    folder = _state_field("folder", "The run folder (a Path), or None when training from Python without one.")
    epochs = _state_field("epochs", "The epochs the run is set to train (``train.epochs``).")
    epoch = _state_field(
        "epoch", "1-based: the epoch under way (or just ended, in ``on_epoch_end``); 0 before the first."
    )
    step = _state_field("step", "Optimiser steps taken in this epoch so far.")
    lr = _state_field("lr", "The learning rate of the last step (NaN before the first).")
    stop_reason = _state_field("stop_reason", "Why a callback asked the run to stop, or None.")

    @property
    def spec(self) -> dict:
        """The resolved spec (a copy: changing it changes nothing); empty for a run without one."""
        return copy.deepcopy(self._state.spec)

    @property
    def history(self) -> tuple[dict, ...]:
        """Every finished epoch's record, oldest first (including those of a resumed run's earlier part)."""
        return tuple(copy.deepcopy(self._state.history))

    @property
    def record(self) -> dict:
        """The last finished epoch's record: ``{"epoch", "train": {...}, "test": {...}, "lr", "seconds"}``."""
        if not self._state.history:
            raise GenregError("no epoch has finished yet, so there are no metrics to read.")
        return copy.deepcopy(self._state.history[-1])

    def metric(self, name: str, record: Mapping | None = None) -> float:
        """A metric by its dotted name, e.g. ``test.loss`` or ``train.kld``, from ``record`` (default: the last)."""
        record = self.record if record is None else record
        return metric_value(record, name)

    def request_stop(self, reason: str) -> None:
        """Stop the run after the current epoch (its checkpoint is written first); the first reason is kept."""
        self._state.stop_reason = self._state.stop_reason or reason


def metric_names(record: Mapping) -> list[str]:
    """The dotted names a record's metrics go by: ``train.loss``, ``test.kld``, ..."""
    return [f"{split}.{name}" for split in ("train", "test") for name in record.get(split, {})]


def metric_value(record: Mapping, name: str) -> float:
    """``record``'s value of the dotted metric ``name``; the error lists the names it has."""
    split, _, term = name.partition(".")
    try:
        return float(record[split][term])
    except (KeyError, TypeError):
        raise GenregError(
            f"no metric '{name}' in this run's records; its metrics are: {', '.join(metric_names(record))}."
        ) from None


def check_metric(name: str, loss_names: Iterable[str], where: str, objective: str | None = None) -> None:
    """Refuse before training a metric name the run will not log (for callbacks that watch one).

    ``objective`` is the model's objective (``neg_elbo``, ``nll``; see
    :func:`genreg.model.losses.objective_name`), which only the test metrics hold.
    """
    known = [f"{split}.{term}" for split in ("train", "test") for term in ("loss", *loss_names)]
    known += [f"test.{objective}"] if objective else []
    if name not in known:
        raise GenregError(f"{where}: the run logs no metric '{name}'; it logs {', '.join(known)}.")


def objective_metric(model: GenerativeModel) -> str:
    """What a callback watches by default: the test objective (``test.neg_elbo`` for a VAE or cVAE, ``test.nll``
    for an AE), which no schedule moves; ``test.loss`` for a model without a likelihood term."""
    objective = objective_name(model.losses)
    return f"test.{objective}" if objective else "test.loss"


class Callbacks:
    """The run's callbacks, called hook by hook, in the order the spec lists them."""

    def __init__(self, callbacks: Iterable[Any], view: RunView) -> None:
        self.items = list(callbacks)
        self.view = view
        self.per_step = [c for c in self.items if callable(getattr(c, "on_step", None))]

    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on every callback that defines it, each under a forked RNG."""
        for callback in self.items if hook != "on_step" else self.per_step:
            method = getattr(callback, hook, None)
            if callable(method):
                with same_random_numbers(self.view.model):
                    method(self.view, *args)


@contextlib.contextmanager
def same_random_numbers(model: GenerativeModel) -> Iterator[None]:
    """Whatever the body draws, the RNG of the CPU (and of the model's GPU) ends as it began."""
    device = model.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        yield


def build_callbacks(items: Iterable[Any]) -> list[Any]:
    """Callbacks from spec entries: validated configs or dicts are built from the registry; objects pass as they are."""
    return [build_part("callback", item) if is_config(item) else item for item in items]


def is_config(item: Any) -> bool:
    """A spec entry (a dict, or a validated config with its ``type``), not a callback object."""
    return isinstance(item, dict) or (isinstance(item, BaseModel) and hasattr(item, "type"))


class EveryEpoch:
    """A callback made of a function of each epoch's record: ``train(..., callbacks=[EveryEpoch(print)])``."""

    def __init__(self, function: Callable[[dict], None]) -> None:
        self.function = function

    def on_epoch_end(self, run: RunView) -> None:
        self.function(run.record)
