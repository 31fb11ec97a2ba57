"""What every loss term shares: a weight, an optional schedule and a log name.

A loss term computes one value per example (summed over pixels or latent
dimensions); the model averages it over the batch and multiplies it by
``weight * schedule(progress)``, where progress is measured in epochs.

Two weight schedules: ``linear`` (the usual KL warm-up: rise once, then stay)
and ``cyclical`` (Fu et al. 2019: rise again in every cycle, which lets the
model re-learn to use its latent code after each low-KL phase).
"""

from __future__ import annotations

import math
import warnings
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from genreg.errors import SpecWarning


class LinearWarmup(BaseModel):
    """Weight factor rising linearly from ``start`` to 1 over ``epochs`` (KL warm-up)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["linear"] = "linear"
    epochs: float = Field(gt=0, allow_inf_nan=False, description="epochs until the full weight is reached")
    start: float = Field(0.0, ge=0, le=1, description="factor at the first step")

    def factor(self, progress: float) -> float:
        """The factor after ``progress`` epochs (fractional within an epoch)."""
        return self.start + (1.0 - self.start) * min(1.0, progress / self.epochs)

    @property
    def rise(self) -> float:
        """Epochs until the factor first reaches 1."""
        return self.epochs


class Cyclical(BaseModel):
    """Cyclical annealing (Fu et al. 2019): in every cycle of ``epochs``, rise from ``start`` to 1, then hold.

    Within a cycle the factor rises linearly over the first ``ratio`` of it and
    stays at 1 for the rest; after ``cycles`` cycles (if set) it stays at 1.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["cyclical"] = "cyclical"
    epochs: float = Field(gt=0, allow_inf_nan=False, description="length of one cycle, in epochs")
    ratio: float = Field(0.5, gt=0, le=1, description="part of each cycle spent rising; the rest holds at 1")
    start: float = Field(0.0, ge=0, le=1, description="factor at the start of each cycle")
    cycles: int | None = Field(None, ge=1, description="cycles before the factor stays at 1; null: cycle until the end")

    def factor(self, progress: float) -> float:
        """The factor after ``progress`` epochs (fractional within an epoch)."""
        if not math.isfinite(progress) or (self.cycles is not None and progress >= self.cycles * self.epochs):
            return 1.0
        within = (progress % self.epochs) / self.epochs
        return self.start + (1.0 - self.start) * min(1.0, within / self.ratio)

    @property
    def rise(self) -> float:
        """Epochs until the factor first reaches 1."""
        return self.epochs * self.ratio


def _schedule_type(value: Any) -> str | None:
    """A schedule's ``type``; an object without one is ``linear``, as it was before ``cyclical`` existed."""
    if isinstance(value, dict):
        return value.get("type", "linear")
    return getattr(value, "type", None)


WeightSchedule = Annotated[
    Annotated[LinearWarmup, Tag("linear")] | Annotated[Cyclical, Tag("cyclical")],
    Discriminator(
        _schedule_type,
        custom_error_type="schedule",
        custom_error_message='expected {"type": "linear", "epochs": N} or {"type": "cyclical", "epochs": N}',
    ),
]


class LossTermConfig(BaseModel):
    """Base of every loss term's config class."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="multiplies the term in the total loss")
    schedule: WeightSchedule | None = Field(None, description="optional weight schedule: linear or cyclical")
    name: str | None = Field(None, description="name in logs and metrics; defaults to the type")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str | None) -> str | None:
        if name == "loss":
            raise ValueError("'loss' is reserved for the weighted total; choose another name")
        return name

    def factor(self, progress: float) -> float:
        """``weight`` times the schedule's factor after ``progress`` epochs."""
        return self.weight * (self.schedule.factor(progress) if self.schedule else 1.0)

    @property
    def label(self) -> str:
        """The name the term is logged under."""
        return self.name or getattr(self, "type", None) or type(self).__name__.removesuffix("Config").lower()


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """At least float32: losses stay exact under bf16 autocast, and float64 stays float64."""
    return t if t.dtype == torch.float64 else t.float()


def warn_long_warmups(spec: Any) -> None:
    """Warn about each loss weight whose first rise to full weight outlasts the run.

    Such a weight never reaches its value: a KL warm-up longer than the run
    quietly trains a beta-VAE with beta < 1, which reconstructs well but samples
    badly, and nothing in the metrics says why. ``spec`` is a validated spec.
    """
    epochs = spec.train.epochs
    for i, term in enumerate(getattr(spec.model, "losses", None) or []):
        schedule = getattr(term, "schedule", None)
        if isinstance(schedule, LinearWarmup | Cyclical) and schedule.rise > epochs:
            path = f"model.losses[{i}].schedule.epochs"
            warnings.warn(f"{path}: {_shortfall(term, schedule, epochs)}", SpecWarning, stacklevel=3)


def _shortfall(term: LossTermConfig, schedule: LinearWarmup | Cyclical, epochs: int) -> str:
    """What a warm-up longer than the run does to the term's final weight, in words."""
    reached = schedule.factor(epochs)
    final, full = term.weight * reached, term.weight
    linear = schedule.type == "linear"
    rise = "warm-up" if linear else "first rise (cyclical schedule)"
    text = f"the {term.label} weight's {rise} takes {schedule.rise:g} epochs but train.epochs is {epochs}: "
    text += f"its weight ends at {reached:.2f} of its full value"
    if getattr(term, "type", None) != "kld":
        text += f" ({final:.3g} instead of {full:g})"
    elif final < 1:
        text += f", so the model would end as a beta < 1 VAE (beta = {final:.2g} instead of {full:g})"
    else:
        text += f", so the model would end with beta = {final:.2g} instead of {full:g}"
    fix = "Shorten the warm-up" if linear else "Shorten the cycle (or its ratio)"
    return f"{text}. {fix} or train for more epochs."
