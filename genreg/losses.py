"""What every loss term shares: a weight, an optional schedule and a log name.

A loss term computes one value per example (summed over pixels or latent
dimensions); the model averages it over the batch and multiplies it by
``weight * schedule(progress)``, where progress is measured in epochs.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator


class LinearWarmup(BaseModel):
    """Weight factor rising linearly from ``start`` to 1 over ``epochs`` (KL warm-up)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["linear"] = "linear"
    epochs: float = Field(gt=0, allow_inf_nan=False, description="epochs until the full weight is reached")
    start: float = Field(0.0, ge=0, le=1, description="factor at the first step")

    def factor(self, progress: float) -> float:
        """The factor after ``progress`` epochs (fractional within an epoch)."""
        return self.start + (1.0 - self.start) * min(1.0, progress / self.epochs)


class LossTermConfig(BaseModel):
    """Base of every loss term's config class."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="multiplies the term in the total loss")
    schedule: LinearWarmup | None = Field(None, description="optional weight schedule")
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
