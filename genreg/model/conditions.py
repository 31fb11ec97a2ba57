"""A model's conditions: conditioners that each read one data column, their vectors concatenated.

A spec lists the conditioners in ``model.conditioner`` (one object or a list),
each with the ``column`` it reads (``label`` unless said otherwise). The condition
vector fed to the encoder and the decoder is their outputs concatenated in that
order. A conditioner is categorical (it reads classes 0..K-1, the default) or
continuous (it sets ``continuous = True`` and reads floats); a part that needs
statistics of its column, such as a standardisation, implements ``fit(values)``,
which genreg calls once with the training split's column before training.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from genreg.data.splits import LABEL, Split
from genreg.errors import ConditionError, PictureWarning

Condition = torch.Tensor | Mapping[str, torch.Tensor]


def is_continuous(part: nn.Module) -> bool:
    return bool(getattr(part, "continuous", False))


def default_value(part: nn.Module) -> int | float:
    """A column's value when nobody chose one (pictures, conditional accuracy): class 0, or the training mean.

    A continuous part without a ``mean`` (a plugin's, say) is held at 0.0, the standardised centre.
    """
    return float(getattr(part, "mean", 0.0)) if is_continuous(part) else 0


#: The range a continuous column's pictures span when its part records none (nor a mean and std): a standardised one.
DEFAULT_RANGE = (-2.0, 2.0)


def value_range(part: nn.Module, column: str) -> tuple[float, float]:
    """The values of a continuous ``column`` its pictures span (a sample grid's columns, say): the part's ``low``
    and ``high`` (for the built-in ``continuous``, the 5th and 95th percentiles of the training values).

    A part without them spans ``mean`` -/+ 2 ``std`` if it has those, else :data:`DEFAULT_RANGE`, and warns
    (:class:`~genreg.errors.PictureWarning`) naming the column, because a picture in the wrong range shows
    values the model never saw.
    """
    if hasattr(part, "low") and hasattr(part, "high"):
        return float(part.low), float(part.high)
    if hasattr(part, "mean") and hasattr(part, "std"):
        mean, std = float(part.mean), float(part.std)
        low, high, source = mean - 2 * std, mean + 2 * std, "its mean -/+ 2 std"
    else:
        (low, high), source = DEFAULT_RANGE, "the default range"
    warnings.warn(
        f"the conditioner of column '{column}' ({type(part).__name__}) has no `low` and `high`, the range of "
        f"values pictures span; spanning {source}, [{low:.3g}, {high:.3g}]. Give the part `low` and `high` "
        "attributes (e.g. percentiles of the training values taken in `fit`).",
        PictureWarning,
        stacklevel=3,
    )
    return low, high


class Conditions(nn.Module):
    """The model's conditioners, in spec order, and the column each one reads."""

    def __init__(self, parts: Sequence[nn.Module], columns: Sequence[str]) -> None:
        super().__init__()
        if len(parts) != len(columns) or not parts:
            raise ValueError("give one column per conditioner, and at least one conditioner.")
        self.parts = nn.ModuleList(parts)
        self.columns = list(columns)
        self.dim = sum(int(part.dim) for part in parts)
        self.register_load_state_dict_pre_hook(_single_part_keys)

    def forward(self, condition: Condition) -> torch.Tensor:
        """Each conditioner's vectors for its column, concatenated: (B, dim)."""
        condition = self.columns_of(condition)
        vectors = [part(condition[column]) for column, part in zip(self.columns, self.parts, strict=True)]
        return vectors[0] if len(vectors) == 1 else torch.cat(vectors, dim=1)

    def part(self, column: str) -> nn.Module | None:
        """The conditioner reading ``column`` (None if none does)."""
        return self.parts[self.columns.index(column)] if column in self.columns else None

    @property
    def num_classes(self) -> int | None:
        """Classes of the conditioner reading the class label, or None if the label is not a condition."""
        part = self.part(LABEL)
        return None if part is None or is_continuous(part) else int(part.num_classes)

    def columns_of(self, condition: Condition, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """``condition`` as {column: values}, checked; a bare tensor is the value of the only column."""
        if isinstance(condition, torch.Tensor):
            if len(self.columns) > 1:
                raise ConditionError(
                    f"this model has several conditions ({', '.join(self.columns)}): pass a dict "
                    "{column: values}, e.g. split.condition()."
                )
            condition = {self.columns[0]: condition}
        missing = [column for column in self.columns if column not in condition]
        if missing:
            raise ConditionError(
                f"the condition lacks column(s) {', '.join(missing)}; this model reads {', '.join(self.columns)}."
            )
        values = {column: torch.as_tensor(condition[column]).reshape(-1) for column in self.columns}
        if device is not None:
            values = {column: v.to(device) for column, v in values.items()}
        return values

    def check(self, condition: Mapping[str, torch.Tensor], source: str = "the condition") -> None:
        """Raise naming the column if a class is outside a conditioner's classes or a value is not finite."""
        for column, part in zip(self.columns, self.parts, strict=True):
            values = condition[column]
            if is_continuous(part):
                if values.is_floating_point() and not torch.isfinite(values).all():
                    raise ConditionError(f"{source}: column '{column}' has NaN or infinite values.")
                continue
            if values.is_floating_point() and not torch.equal(values, values.round()):
                raise ConditionError(f"{source}: column '{column}' must hold class indices, got fractional values.")
            k = int(part.num_classes)
            outside = values[(values < 0) | (values >= k)]
            if outside.numel():
                raise ConditionError(
                    f"{source}: column '{column}' has class {int(outside[0])}, but the model's conditioner for "
                    f"it knows classes 0..{k - 1}."
                )

    def constant(self, n: int, fixed: Mapping[str, int | float] | None = None) -> dict[str, torch.Tensor]:
        """``n`` copies of one condition: the ``fixed`` values, :func:`default_value` for the other columns."""
        fixed = fixed or {}
        self.check_known(fixed)
        parts = zip(self.columns, self.parts, strict=True)
        return {column: torch.full((n,), fixed.get(column, default_value(part))) for column, part in parts}

    def check_known(self, fixed: Mapping[str, object]) -> None:
        """A value for a column the model does not read would be silently ignored: refuse it instead."""
        unknown = sorted(set(fixed) - set(self.columns))
        if unknown:
            raise ConditionError(
                f"this model has no condition column {', '.join(map(repr, unknown))}; it reads "
                f"{', '.join(self.columns)}."
            )

    def fit(self, split: Split) -> None:
        """Let parts that need their column's statistics (e.g. a standardisation) take them from ``split``."""
        condition = split.condition()
        for column, part in zip(self.columns, self.parts, strict=True):
            if hasattr(part, "fit"):
                part.fit(condition[column])


def _single_part_keys(module: Conditions, state: dict, prefix: str, *args: object) -> None:
    """Files from genreg-model/1 held one conditioner's tensors directly under ``conditioner.``."""
    if len(module.parts) != 1:
        return
    inner = prefix + "parts."
    for key in [k for k in state if k.startswith(prefix) and not k.startswith(inner)]:
        state[inner + "0." + key[len(prefix) :]] = state.pop(key)
