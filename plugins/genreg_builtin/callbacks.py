"""Callbacks that act on a logged metric: ``early-stopping`` and ``best-checkpoint``.

Both watch one metric of the epoch records by its dotted name (``test.neg_elbo``,
``test.loss``, ``train.kld``, ...) and check it against the model's loss terms before
training, so a typo fails at ``genreg validate`` rather than after the first epoch.
By default they watch the model's test objective (``test.neg_elbo`` for a VAE or
cVAE, ``test.nll`` for an AE: :func:`genreg.training.callbacks.objective_metric`), not
the weighted total ``test.loss``, whose value a loss-weight schedule moves: a KL
warm-up or cyclical annealing raises ``test.loss`` while the model improves. Both
also carry their state across ``--resume``: early stopping recounts it from the
run's history, and the best checkpoint reads the best value back from its file,
so an interrupted run decides exactly as one that was never stopped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from genreg.errors import ModelFileError, RunFolderError
from genreg.files.model_files import read_metadata, save_model
from genreg.files.run_folder import RunFolder
from genreg.model.generative import GenerativeModel
from genreg.model.losses import objective_name
from genreg.spec.overrides import parse_json
from genreg.training.callbacks import RunView, check_metric, metric_value, objective_metric

BEST = "genreg.best"  # the metadata key of a best-checkpoint file: {"epoch", "metric", "mode", "value"}

METRIC = (
    "the metric to watch, e.g. test.neg_elbo, test.loss, test.bce or train.loss; null (the default): the model's "
    "test objective, test.neg_elbo for a VAE or cVAE, test.nll for an AE, test.loss for a model with neither"
)
MODE = "'min': lower is better (losses); 'max': higher is better"


class Best:
    """The best value of a metric seen so far, and whether a new value beats it."""

    def __init__(self, mode: Literal["min", "max"], min_delta: float = 0.0) -> None:
        self.mode, self.min_delta = mode, min_delta
        self.value: float | None = None
        self.epoch = 0

    def beats(self, value: float) -> bool:
        """Better than the best by more than ``min_delta`` (any value beats none; NaN beats nothing)."""
        if self.value is None:
            return not math.isnan(value)
        if self.mode == "min":
            return value < self.value - self.min_delta
        return value > self.value + self.min_delta

    def offer(self, value: float, epoch: int) -> bool:
        """Keep ``value`` if it beats the best; returns whether it did."""
        if not self.beats(value):
            return False
        self.value, self.epoch = value, epoch
        return True


def watched(metric: str | None, model: GenerativeModel) -> str:
    """The metric a callback configured with ``metric`` watches on ``model`` (null: its test objective)."""
    return metric or objective_metric(model)


def check_watched(metric: str | None, model: GenerativeModel, where: str) -> None:
    """Refuse a metric ``model``'s runs will not log, before training."""
    check_metric(watched(metric, model), model.loss_names, where, objective_name(model.losses))


class EarlyStoppingConfig(BaseModel):
    """Stop the run once a metric has not improved for `patience` epochs."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(None, description=METRIC)
    mode: Literal["min", "max"] = Field("min", description=MODE)
    patience: int = Field(5, ge=1, description="epochs without improvement before the run stops")
    min_delta: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="an improvement must beat the best value by more than this"
    )


class EarlyStopping:
    """Asks the run to stop after ``patience`` epochs in which ``metric`` did not beat its best by ``min_delta``.

    The run ends cleanly after that epoch, with its checkpoint and model file
    written. A resumed run recounts from its history at ``on_run_start``, so it stops
    at the epoch an uninterrupted run would have; one that had already stopped
    stops again before training (drop the callback, or raise ``patience``, to go on).
    """

    def __init__(self, config: EarlyStoppingConfig) -> None:
        self.config = config
        self.best = Best(config.mode, config.min_delta)
        self.waited = 0
        self.metric = config.metric  # resolved for the run's model at on_run_start

    def check(self, model: GenerativeModel) -> None:
        check_watched(self.config.metric, model, "callback 'early-stopping'")

    def on_run_start(self, run: RunView) -> None:
        self.metric = watched(self.config.metric, run.model)
        self.best, self.waited = Best(self.config.mode, self.config.min_delta), 0
        for record in run.history:
            self.observe(record)
        self.stop_if_done(run)

    def on_epoch_end(self, run: RunView) -> None:
        self.observe(run.record)
        self.stop_if_done(run)

    def observe(self, record: dict) -> None:
        """Count one epoch: an improvement resets the wait, anything else lengthens it."""
        improved = self.best.offer(metric_value(record, self.metric), record["epoch"])
        self.waited = 0 if improved else self.waited + 1

    def stop_if_done(self, run: RunView) -> None:
        if self.waited >= self.config.patience:
            epochs = f"{self.waited} epoch{'s' * (self.waited != 1)}"
            run.request_stop(
                f"early-stopping: {self.metric} did not improve by more than {self.config.min_delta:g} "
                f"for {epochs} (best {self.best.value:.4g} at epoch {self.best.epoch})"
            )


class BestCheckpointConfig(BaseModel):
    """Save the model of the best epoch so far (by a metric) in the run folder."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(None, description=METRIC)
    mode: Literal["min", "max"] = Field("min", description=MODE)
    filename: str = Field("best.safetensors", description="the model file, in the run folder")

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if Path(name).name != name or name in ("", ".", "..") or not name.endswith(".safetensors"):
            raise ValueError(f"must be a file name ending in .safetensors, without folders (got '{name}')")
        if name in RunFolder.OUTPUTS:
            raise ValueError(f"'{name}' is a file the run itself writes; choose another name, e.g. best.safetensors")
        return name


class BestCheckpoint:
    """Whenever ``metric`` improves, writes the model to ``run.folder / filename`` (atomically).

    The file is a model file like ``model.safetensors``: ``genreg.load_model`` and
    ``genreg sample`` rebuild the model from it alone. Its ``genreg.best`` metadata
    (see :func:`read_best`) records the epoch, metric, mode and value; a resumed run
    reads it back, so a worse epoch after ``--resume`` does not replace the best.
    """

    def __init__(self, config: BestCheckpointConfig) -> None:
        self.config = config
        self.best = Best(config.mode)
        self.metric = config.metric  # resolved for the run's model at on_run_start

    def check(self, model: GenerativeModel) -> None:
        check_watched(self.config.metric, model, "callback 'best-checkpoint'")

    def on_run_start(self, run: RunView) -> None:
        if run.folder is None:
            raise RunFolderError(
                "callback 'best-checkpoint' saves the best model into the run folder, but this run has none; "
                "train with genreg.run(spec, folder) or `genreg run`, or pass run_dir= to genreg.train."
            )
        self.metric = watched(self.config.metric, run.model)
        self.best = Best(self.config.mode)
        earlier = self.earlier_best(run)
        if earlier is not None:
            self.best.offer(earlier["value"], earlier["epoch"])

    def earlier_best(self, run: RunView) -> dict | None:
        """The best this run saved before it was resumed; a file from another run (or another metric) is ignored."""
        path = run.folder / self.config.filename
        if not run.history or not path.exists():  # a new run replaces whatever an earlier one left
            return None
        recorded = read_best(path)
        if recorded is None or (recorded.get("metric"), recorded.get("mode")) != (self.metric, self.config.mode):
            return None
        same = [r for r in run.history if r["epoch"] == recorded.get("epoch")]
        if not same or metric_value(same[0], self.metric) != recorded.get("value"):
            return None
        return recorded

    def on_epoch_end(self, run: RunView) -> None:
        value = run.metric(self.metric)
        if not self.best.offer(value, run.epoch):
            return
        best = {"epoch": run.epoch, "metric": self.metric, "mode": self.config.mode, "value": value}
        save_model(
            run.model, run.folder / self.config.filename, spec=run.spec or None, metadata={BEST: json.dumps(best)}
        )


def read_best(path: str | Path) -> dict | None:
    """What a best-checkpoint file records: ``{"epoch", "metric", "mode", "value"}``; None for another model file."""
    raw = read_metadata(path).get(BEST)
    if raw is None:
        return None
    try:
        best = parse_json(raw, f"{path}: its {BEST} metadata", ModelFileError)
        if not isinstance(best, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise ModelFileError(f"{path}: its {BEST} metadata is damaged ({exc}); it was edited after saving.") from None
    return best
