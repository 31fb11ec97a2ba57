"""What every loss term shares: a weight, an optional schedule and a name in the metrics.

A loss term computes one value per example (summed over pixels or latent
dimensions), in nats for a likelihood term; the model averages it over the batch
and multiplies it by ``weight * schedule.factor(progress)``, where progress is
measured in epochs. A schedule is a registered component of kind ``schedule``
(the built-in ``linear`` KL warm-up, ``cyclical`` annealing of Fu et al. 2019, and
any a plugin adds); one without ``type`` is ``linear``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from genreg.errors import GenregError, SpecWarning
from genreg.model.schedules import build_schedule
from genreg.spec.parts import Part


class LossTermConfig(BaseModel):
    """Base of every loss term's config class: ``weight``, ``schedule`` and ``name``."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="multiplies the term in the total loss")
    schedule: Part("schedule", default_type="linear") | None = Field(
        None, description="optional weight schedule, e.g. linear (the default type) or cyclical"
    )
    name: str | None = Field(None, description="name in logs and metrics; defaults to the type")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str | None) -> str | None:
        if name == "loss":
            raise ValueError("'loss' is reserved for the weighted total; choose another name")
        return name

    @property
    def metric_name(self) -> str:
        """The name the term is logged under: ``name``, else its type."""
        return self.name or getattr(self, "type", None) or type(self).__name__.removesuffix("Config").lower()


def weight_schedule(config: LossTermConfig, where: str = "the loss term's schedule") -> Any:
    """The schedule ``config.schedule`` names, built (None without one); errors name ``where``.

    A loss weight's schedule belongs to the model, which outlives any run, so it
    is built with ``epochs=None``: a schedule that spans a run's length refuses it.
    """
    schedule = getattr(config, "schedule", None)
    return None if schedule is None else build_schedule(schedule, None, where, default_type="linear")


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """At least float32: losses stay exact under bf16 autocast, and float64 stays float64."""
    return t if t.dtype == torch.float64 else t.float()


def warn_long_warmups(spec: Any) -> None:
    """Warn (:class:`SpecWarning`) about each loss weight whose first rise to full weight outlasts the run.

    Such a weight never reaches its value: a KL warm-up longer than the run
    quietly trains a beta-VAE with beta < 1, which reconstructs well but samples
    badly, and nothing in the metrics says why. ``spec`` is a validated spec; a
    schedule tells its first rise in ``rise`` (epochs), if it has one.
    """
    epochs = spec.train.epochs
    for i, term in enumerate(getattr(spec.model, "losses", None) or []):
        try:
            schedule = weight_schedule(term)
        except GenregError:  # a schedule that cannot weigh a loss: building the model says so, naming the term
            continue
        rise = getattr(schedule, "rise", None)
        if rise is not None and rise > epochs:
            length = ".epochs" if "epochs" in type(term.schedule).model_fields else ""  # the built-ins' field
            path = f"model.losses[{i}].schedule{length}"
            warnings.warn(f"{path}: {_shortfall(term, schedule, epochs)}", SpecWarning, stacklevel=3)


def _shortfall(term: LossTermConfig, schedule: Any, epochs: int) -> str:
    """What a warm-up longer than the run does to the term's final weight (its built ``schedule``), in words."""
    reached = schedule.factor(epochs)
    final, full = term.weight * reached, term.weight
    warmup = term.schedule.type in ("linear", "warmup")
    rise = "warm-up" if warmup else f"first rise ({term.schedule.type} schedule)"
    text = f"the {term.metric_name} weight's {rise} takes {schedule.rise:g} epochs but train.epochs is {epochs}: "
    text += f"its weight ends at {reached:.2f} of its full value"
    if getattr(term, "type", None) != "kld":
        text += f" ({final:.3g} instead of {full:g})"
    elif final < 1:
        text += f", so the model would end as a beta < 1 VAE (beta = {final:.2g} instead of {full:g})"
    else:
        text += f", so the model would end with beta = {final:.2g} instead of {full:g}"
    fix = "Shorten the warm-up" if warmup else f"Shorten the {term.schedule.type} schedule's first rise"
    return f"{text}. {fix} or train for more epochs."
