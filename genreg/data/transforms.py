"""Transforms of vector features kept with the model: fitted on the training split, applied to every split and to
new data, inverted on the way out.

A dataset spec's ``transform`` names steps applied in order, e.g. ``["log1p", "standardize"]``:

- ``log1p``: log(1 + x), the usual variance-stabilising step for counts and expression values (values > -1);
  inverted by expm1.
- ``standardize``: (x - mean) / sd per feature, the mean and sd of the training split (a feature that does not
  vary keeps sd 1); inverted by x * sd + mean.
- ``minmax``: (x - min) / (max - min) per feature, so the training split spans [0, 1] (a constant feature keeps
  range 1); inverted likewise.
- ``none``: nothing (the default).

The model is trained on the transformed values and its likelihood (nats) is that of the transformed data; what
users give and get back (:meth:`~genreg.model.generative.GenerativeModel.encode`, ``decode``, ``sample``,
``reconstruct``, ``genreg sample -o``) is in the units of the data. The fitted statistics are recorded in the
model file (``genreg.data``), so one file still rebuilds everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from genreg.errors import DataError

#: The steps a dataset spec's ``transform`` may name.
Step = Literal["none", "log1p", "standardize", "minmax"]
_FITTED = ("standardize", "minmax")  # steps with a shift and a scale per feature


class Transform:
    """A fitted sequence of feature transforms: ``apply`` maps data units to the model's, ``invert`` back.

    ``steps`` are the step names in order (``none`` dropped); ``shifts`` and ``scales`` hold, for each step of
    :data:`_FITTED`, one value per feature (F,) float64, and None for ``log1p``. Samples are (N, F) tensors.
    """

    def __init__(
        self,
        steps: Sequence[str],
        shifts: Sequence[torch.Tensor | None],
        scales: Sequence[torch.Tensor | None],
    ) -> None:
        self.steps = tuple(steps)
        self.shifts = list(shifts)
        self.scales = list(scales)

    @classmethod
    def fit(cls, steps: Sequence[str], samples: torch.Tensor, source: str) -> Transform | None:
        """Fit ``steps`` on the training ``samples`` (N, F), each step on the output of the ones before; None when
        no step is left after dropping ``none``. Statistics are accumulated in float64. Raises
        :class:`~genreg.errors.DataError` naming ``source`` for images (transforms are for vectors) and for
        ``log1p`` of a value <= -1 (naming row and feature)."""
        return cls.fit_apply(steps, samples, source)[0]

    @classmethod
    def fit_apply(
        cls, steps: Sequence[str], samples: torch.Tensor, source: str
    ) -> tuple[Transform | None, torch.Tensor]:
        """:meth:`fit`, and the training ``samples`` transformed by it on the way (a new float32 tensor; ``samples``
        themselves without a step), so that the training split is transformed once."""
        steps = [step for step in steps if step != "none"]
        if not steps:
            return None, samples
        if samples.dim() != 2:
            raise DataError(
                f"{source}: transform {steps} applies to vectors (N, F), but the samples are images of shape "
                f"{tuple(samples.shape[1:])}; images are read in [0, 1] already: set transform to 'none'."
            )
        fitted, values = cls([], [], []), samples.float()
        for index, step in enumerate(steps):
            shift, scale = _fit_step(step, values, source)
            fitted.steps += (step,)
            fitted.shifts.append(shift)
            fitted.scales.append(scale)
            values = fitted._forward(values, index, owned=index > 0 or values is not samples)  # the next fits this
        return fitted, values

    def apply(
        self, samples: torch.Tensor, source: str = "the data", error: type[Exception] = DataError
    ) -> torch.Tensor:
        """Data units -> the model's: (N, F) float32 of the same shape, a new tensor on the samples' device. Raises
        ``error`` (:class:`~genreg.errors.DataError`) for ``log1p`` of a value <= -1, naming ``source``."""
        values = samples.float()
        for index, step in enumerate(self.steps):
            if step == "log1p":
                _check_log1p(values, source, error)
            values = self._forward(values, index, owned=index > 0 or values is not samples)
        return values

    def invert(self, values: torch.Tensor) -> torch.Tensor:
        """The model's units -> the data's: the inverse of :meth:`apply`, (N, F) float32, a new tensor."""
        values = values.float().clone()
        for index in reversed(range(len(self.steps))):
            step, shift, scale = self.steps[index], self.shifts[index], self.scales[index]
            if step == "log1p":
                values.expm1_()
            else:
                values.mul_(scale.to(values)).add_(shift.to(values))
        return values

    def _forward(self, values: torch.Tensor, index: int, owned: bool) -> torch.Tensor:
        """Step ``index`` on float32 ``values`` (N, F), in place when the caller ``owned`` them."""
        values = values if owned else values.clone()
        if self.steps[index] == "log1p":
            return values.log1p_()
        return values.sub_(self.shifts[index].to(values)).div_(self.scales[index].to(values))

    def to_json(self) -> list[dict]:
        """As JSON: one object per step, ``{"step": "standardize", "shift": [...], "scale": [...]}``."""
        steps = []
        for step, shift, scale in zip(self.steps, self.shifts, self.scales, strict=True):
            fitted = {} if shift is None else {"shift": shift.tolist(), "scale": scale.tolist()}
            steps.append({"step": step, **fitted})
        return steps

    @classmethod
    def from_json(cls, value: list[dict]) -> Transform:
        """The transform :meth:`to_json` wrote (validated by the model file's reader first)."""
        shifts = [None if "shift" not in step else torch.tensor(step["shift"], dtype=torch.float64) for step in value]
        scales = [None if "scale" not in step else torch.tensor(step["scale"], dtype=torch.float64) for step in value]
        return cls([step["step"] for step in value], shifts, scales)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Transform({list(self.steps)})"


def _fit_step(step: str, values: torch.Tensor, source: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One step's per-feature (shift, scale) (F,) float64 fitted on ``values`` (N, F); (None, None) for ``log1p``."""
    if step == "log1p":
        _check_log1p(values, source)
        return None, None
    if step == "standardize":
        shift, scale = _mean_sd(values)
    elif step == "minmax":
        low, high = (bound.double() for bound in torch.aminmax(values, dim=0))
        shift, scale = low, high - low
    else:
        raise ValueError(f"unknown transform step {step!r}; steps: log1p, standardize, minmax, none.")
    return shift, torch.where(scale > 0, scale, torch.ones_like(scale))  # a constant feature keeps scale 1


def _mean_sd(values: torch.Tensor, rows: int = 16_384) -> tuple[torch.Tensor, torch.Tensor]:
    """Each feature's mean and (population) standard deviation, (F,) float64, two passes over float64 chunks of
    ``rows`` rows, so a large float32 table is never copied whole into float64."""
    chunks = values.split(rows)
    mean = sum(chunk.double().sum(0) for chunk in chunks) / len(values)
    squares = sum((chunk.double() - mean).square_().sum(0) for chunk in chunks)
    return mean, (squares / len(values)).sqrt_()


def _check_log1p(values: torch.Tensor, source: str, error: type[Exception] = DataError) -> None:
    """log1p is defined for x > -1: raise a DataError naming ``source``, the row and the feature of the first value
    that is not."""
    bad = (values <= -1).nonzero()
    if len(bad):
        row, feature = (int(i) for i in bad[0])
        raise error(
            f"{source}: transform 'log1p' takes values > -1 (counts, expression, concentrations), but "
            f"{len(bad)} values are not, the first at row {row}, feature {feature}: {float(values[row, feature]):g}; "
            "leave log1p out for data that may be negative (standardize alone, say)."
        )
