"""Learning-rate schedules: the factor of ``train.lr`` after a fractional number of epochs.

genreg evaluates ``factor(epoch + s / steps_per_epoch)`` before step ``s`` of each
epoch, so each schedule is written in epochs, continuously, and does not depend on
the batch size. ``epochs`` is the run's length (``train.epochs``): cosine and
one-cycle span the whole run. Each matches its torch.optim.lr_scheduler
counterpart stepped once per optimiser step (see tests/test_schedules.py).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field


def _cos_anneal(start: float, end: float, fraction: float) -> float:
    """From ``start`` (fraction 0) to ``end`` (fraction 1) along half a cosine, as OneCycleLR anneals."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, fraction)))


class CosineConfig(BaseModel):
    """Cosine annealing from train.lr to min_factor * train.lr over the run, after an optional linear warm-up.

    With ``warmup_epochs`` the factor first rises linearly from 0 (the first step
    has lr 0) to 1, and the cosine then spans the rest of the run. A warm-up as
    long as the run or longer never reaches the cosine.
    """

    model_config = ConfigDict(extra="forbid")

    min_factor: float = Field(0.0, ge=0, le=1, description="the factor the cosine ends at (eta_min / lr)")
    warmup_epochs: float = Field(0.0, ge=0, allow_inf_nan=False, description="linear warm-up from 0 first")


class Cosine:
    """``min + (1 - min) * (1 + cos(pi * t)) / 2`` with t going from 0 to 1 over the (post-warm-up) run."""

    def __init__(self, config: CosineConfig, *, epochs: int) -> None:
        self.config, self.epochs = config, epochs

    def factor(self, progress: float) -> float:
        warmup = self.config.warmup_epochs
        if progress < warmup:
            return progress / warmup
        span = self.epochs - warmup
        fraction = (progress - warmup) / span if span > 0 else 1.0
        return _cos_anneal(1.0, self.config.min_factor, fraction)


class StepConfig(BaseModel):
    """Step decay: multiply the learning rate by gamma every `every` epochs."""

    model_config = ConfigDict(extra="forbid")

    every: float = Field(gt=0, allow_inf_nan=False, description="epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="factor applied at each decay")


class StepDecay:
    """``gamma ** floor(progress / every)``.

    A boundary that floating point lands just short of (0.3 / 0.1 is 2.9999999999999996)
    counts as reached, so a decay never comes one step late.
    """

    def __init__(self, config: StepConfig, *, epochs: int) -> None:
        self.config = config

    def factor(self, progress: float) -> float:
        return self.config.gamma ** math.floor(progress / self.config.every + 1e-9)


class WarmupConfig(BaseModel):
    """Linear warm-up from start * train.lr to train.lr over `epochs` epochs, then constant."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(gt=0, allow_inf_nan=False, description="epochs until the full learning rate")
    start: float = Field(0.0, ge=0, le=1, description="the factor at the first step")


class Warmup:
    """``start + (1 - start) * min(1, progress / epochs)``."""

    def __init__(self, config: WarmupConfig, *, epochs: int) -> None:
        self.config = config

    def factor(self, progress: float) -> float:
        start = self.config.start
        return start + (1.0 - start) * min(1.0, progress / self.config.epochs)


class OneCycleConfig(BaseModel):
    """One-cycle (Smith 2018): rise to train.lr (the peak), then anneal far below it, both along a cosine.

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

    def __init__(self, config: OneCycleConfig, *, epochs: int) -> None:
        self.config, self.epochs = config, epochs

    def factor(self, progress: float) -> float:
        c = self.config
        initial, peak_at = 1.0 / c.div_factor, c.pct_start * self.epochs
        if progress <= peak_at:
            return _cos_anneal(initial, 1.0, progress / peak_at)
        return _cos_anneal(1.0, initial / c.final_div_factor, (progress - peak_at) / (self.epochs - peak_at))
