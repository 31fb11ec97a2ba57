"""Schedules: a factor after a fractional number of epochs, of ``train.lr`` or of a loss term's weight.

genreg evaluates ``factor(epoch + s / steps_per_epoch)`` before step ``s`` of each
epoch, so each schedule is written in epochs, continuously, and does not depend on
the batch size. ``epochs`` is the run's length (``train.epochs``) for a learning
rate, so cosine and one-cycle span the whole run; a loss weight's schedule gets
``epochs=None`` and those two refuse it. The learning-rate schedules match their
torch.optim.lr_scheduler counterparts stepped once per optimiser step (see
tests/builtin/test_schedules.py).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from genreg.errors import AssemblyError


def _cos_anneal(start: float, end: float, fraction: float) -> float:
    """From ``start`` (fraction 0) to ``end`` (fraction 1) along half a cosine, as OneCycleLR anneals."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, fraction)))


def _run_length(name: str, epochs: int | None) -> int:
    """The run's length, which a schedule spanning the run needs; a loss weight's schedule has none."""
    if epochs is None:
        raise AssemblyError(
            f"schedule '{name}' spans the run's epochs, which a loss weight's schedule does not know (the model "
            "outlives any one run); use it for train.lr_schedule, and linear or cyclical for a loss weight."
        )
    return epochs


class LinearConfig(BaseModel):
    """Linear warm-up from start to 1 over `epochs` epochs, then constant; 'linear' and 'warmup' name it alike."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(gt=0, allow_inf_nan=False, description="epochs until the full value is reached")
    start: float = Field(0.0, ge=0, le=1, description="the factor at the first step")


class Linear:
    """``start + (1 - start) * min(1, progress / epochs)``; registered as ``linear`` and as ``warmup``."""

    def __init__(self, config: LinearConfig, *, epochs: int | None) -> None:
        self.config = config

    def factor(self, progress: float) -> float:
        start = self.config.start
        return start + (1.0 - start) * min(1.0, progress / self.config.epochs)

    @property
    def rise(self) -> float:
        """Epochs until the factor first reaches 1."""
        return self.config.epochs


class CyclicalConfig(BaseModel):
    """Cyclical annealing (Fu et al. 2019): in every cycle of `epochs`, rise from start to 1, then hold.

    Within a cycle the factor rises linearly over the first ``ratio`` of it and
    stays at 1 for the rest; after ``cycles`` cycles (if set) it stays at 1. Rising
    again in every cycle lets the model re-learn to use its latent code after
    each low-KL phase.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(gt=0, allow_inf_nan=False, description="length of one cycle, in epochs")
    ratio: float = Field(0.5, gt=0, le=1, description="part of each cycle spent rising; the rest holds at 1")
    start: float = Field(0.0, ge=0, le=1, description="factor at the start of each cycle")
    cycles: int | None = Field(None, ge=1, description="cycles before the factor stays at 1; null: cycle until the end")


class Cyclical:
    """``start + (1 - start) * min(1, within / ratio)`` with ``within`` the fraction of the current cycle done."""

    def __init__(self, config: CyclicalConfig, *, epochs: int | None) -> None:
        self.config = config

    def factor(self, progress: float) -> float:
        c = self.config
        if not math.isfinite(progress) or (c.cycles is not None and progress >= c.cycles * c.epochs):
            return 1.0
        within = (progress % c.epochs) / c.epochs
        return c.start + (1.0 - c.start) * min(1.0, within / c.ratio)

    @property
    def rise(self) -> float:
        """Epochs until the factor first reaches 1."""
        return self.config.epochs * self.config.ratio


class CosineConfig(BaseModel):
    """Cosine annealing from train.lr to min_factor * train.lr over the run (learning rate only), optional warm-up.

    With ``warmup_epochs`` the factor first rises linearly from 0 (the first step
    has lr 0) to 1, and the cosine then spans the rest of the run. A warm-up as
    long as the run or longer never reaches the cosine.
    """

    model_config = ConfigDict(extra="forbid")

    min_factor: float = Field(0.0, ge=0, le=1, description="the factor the cosine ends at (eta_min / lr)")
    warmup_epochs: float = Field(0.0, ge=0, allow_inf_nan=False, description="linear warm-up from 0 first")


class Cosine:
    """``min + (1 - min) * (1 + cos(pi * t)) / 2`` with t going from 0 to 1 over the (post-warm-up) run."""

    def __init__(self, config: CosineConfig, *, epochs: int | None) -> None:
        self.config, self.epochs = config, _run_length("cosine", epochs)

    def factor(self, progress: float) -> float:
        warmup = self.config.warmup_epochs
        if progress < warmup:
            return progress / warmup
        span = self.epochs - warmup
        fraction = (progress - warmup) / span if span > 0 else 1.0
        return _cos_anneal(1.0, self.config.min_factor, fraction)


class StepConfig(BaseModel):
    """Step decay: multiply the factor (of the learning rate or a loss weight) by gamma every `every` epochs."""

    model_config = ConfigDict(extra="forbid")

    every: float = Field(gt=0, allow_inf_nan=False, description="epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="factor applied at each decay")


class StepDecay:
    """``gamma ** floor(progress / every)``.

    A boundary that floating point lands just short of (0.3 / 0.1 is 2.9999999999999996)
    counts as reached, so a decay never comes one step late.
    """

    def __init__(self, config: StepConfig, *, epochs: int | None) -> None:
        self.config = config

    def factor(self, progress: float) -> float:
        if not math.isfinite(progress):  # the end of training, as evaluations ask: the limit
            return 1.0 if self.config.gamma == 1 else 0.0
        return self.config.gamma ** math.floor(progress / self.config.every + 1e-9)


class OneCycleConfig(BaseModel):
    """One-cycle (Smith 2018), learning rate only: rise to train.lr (the peak), then anneal far below it.

    As torch's OneCycleLR with ``anneal_strategy='cos'`` and two phases; ``train.lr``
    is its ``max_lr``. Momentum is not cycled.
    """

    model_config = ConfigDict(extra="forbid")

    pct_start: float = Field(0.3, gt=0, lt=1, description="part of the run spent rising to the peak")
    div_factor: float = Field(25.0, gt=0, allow_inf_nan=False, description="the first factor is 1 / div_factor")
    final_div_factor: float = Field(
        1e4, gt=0, allow_inf_nan=False, description="the last factor is 1 / (div_factor * final_div_factor)"
    )


class OneCycle:
    """From 1/div_factor up to 1 over pct_start of the run, then down to 1/(div_factor * final_div_factor)."""

    def __init__(self, config: OneCycleConfig, *, epochs: int | None) -> None:
        self.config, self.epochs = config, _run_length("one-cycle", epochs)

    def factor(self, progress: float) -> float:
        c = self.config
        initial, peak_at = 1.0 / c.div_factor, c.pct_start * self.epochs
        if progress <= peak_at:
            return _cos_anneal(initial, 1.0, progress / peak_at)
        return _cos_anneal(1.0, initial / c.final_div_factor, (progress - peak_at) / (self.epochs - peak_at))
