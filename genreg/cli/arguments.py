"""Condition values given on the command line (``--label``, ``--condition COLUMN=VALUE``, ``--to``), each
checked against the model that will read it, with errors that name the option and what it takes."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch

from genreg.data.columns import LABEL
from genreg.errors import ConditionError, UsageError
from genreg.model.conditions import Conditions, is_continuous
from genreg.model.generative import GenerativeModel
from genreg.viz.samples import Value, value_label


def transfer_targets(model: GenerativeModel, to: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """What ``--to`` names, as {column: T values} for ``model.transfer``, and a header for each target.

    ``all`` or ``K``: the classes of the label column. ``COLUMN=v1,v2,...``: those values of one
    column the model reads; the other columns keep each image's own values.
    """
    if not model.conditional:
        raise UsageError("transfer decodes under another condition: this model is not conditional.")
    conditions = model.conditioner
    column, sep, texts = to.partition("=")
    if sep:
        return column_targets(conditions, column.strip(), texts, f"--to {to}")
    k = conditions.num_classes
    if k is None:
        raise ConditionError(
            f"--to {to}: this model is not conditioned on the label; give COLUMN=v1,v2,... for a column it "
            f"reads: {describe_columns(conditions)}."
        )
    if to != "all" and not (to.isdecimal() and int(to) < k):
        raise ConditionError(
            f"--to {to}: must be 'all' or a class in 0..{k - 1}, or COLUMN=v1,v2,... for a column this model "
            f"reads: {describe_columns(conditions)}."
        )
    classes = list(range(k)) if to == "all" else [int(to)]
    return {LABEL: torch.tensor(classes)}, [value_label(LABEL, c) for c in classes]


def column_targets(
    conditions: Conditions, column: str, texts: str, source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``v1,v2,...`` of ``column``, each checked, as transfer targets and their headers."""
    if not texts.strip():
        raise ConditionError(f"{source}: give at least one value after '=', e.g. {column}=v1,v2.")
    values = [condition_value(conditions, column, text, source) for text in texts.split(",")]
    return {column: torch.tensor(values)}, [value_label(column, value) for value in values]


def check_label(model: GenerativeModel, label: int | None) -> None:
    """A model conditioned on the label takes a class in 0..K-1 (or none); other models take none."""
    k = model.conditioner.num_classes if model.conditional else None
    if k is None:
        if label is not None:
            why = (
                f"is not conditioned on the label (it reads {', '.join(model.conditioner.columns)})"
                if model.conditional
                else "is not conditional"
            )
            raise UsageError(f"--label {label}: this model {why}; leave --label out.")
        return
    if label is not None and not 0 <= label < k:
        raise UsageError(f"--label {label}: must be a class in 0..{k - 1}.")


def parse_condition(model: GenerativeModel, items: Sequence[str], label: int | None = None) -> dict[str, Value]:
    """``--condition COLUMN=VALUE`` items and ``--label K`` as {column: value}, each checked for the model."""
    check_label(model, label)
    fixed: dict[str, Value] = {} if label is None else {LABEL: label}
    given = {} if label is None else {LABEL: f"--label {label}"}
    if items and not model.conditional:
        raise UsageError(f"--condition {items[0]}: this model is not conditional; leave --condition out.")
    for item in items:
        source = f"--condition {item}"
        column, sep, text = item.partition("=")
        column = column.strip()
        if not sep or not column:
            raise ConditionError(
                f"{source}: write COLUMN=VALUE, e.g. --condition {model.conditioner.columns[-1]}=V, for a column "
                f"this model reads: {describe_columns(model.conditioner)}."
            )
        if column in given:
            raise ConditionError(f"{source}: column '{column}' is already given by {given[column]}; give it once.")
        fixed[column], given[column] = condition_value(model.conditioner, column, text, source), source
    return fixed


def condition_value(conditions: Conditions, column: str, text: str, source: str) -> Value:
    """``text`` as a value of ``column``: a class the conditioner knows, or a finite number."""
    part = conditions.part(column)
    if part is None:
        raise ConditionError(
            f"{source}: this model has no condition column '{column}'; it reads {describe_columns(conditions)}."
        )
    text = text.strip()
    if is_continuous(part):
        value = number(text)
        if not math.isfinite(value):
            where = value_range(part)
            raise ConditionError(
                f"{source}: column '{column}' takes a finite number, got '{text}'" + (f"; {where}." if where else ".")
            )
        return value
    k = int(part.num_classes)
    if not re.fullmatch(r"[+-]?\d+", text) or not 0 <= int(text) < k:
        raise ConditionError(f"{source}: column '{column}' takes a class in 0..{k - 1}, got '{text}'.")
    return int(text)


def number(text: str) -> float:
    """``text`` as a float; NaN (which callers refuse like any non-finite value) if it is not a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def describe_columns(conditions: Conditions) -> str:
    """Each column the model reads with what it takes: ``label (classes 0..9), ink (numbers, ...)``."""
    return ", ".join(
        f"{column} ({describe_part(part)})" for column, part in zip(conditions.columns, conditions.parts, strict=True)
    )


def describe_part(part: torch.nn.Module) -> str:
    """What a conditioner takes: its classes, or a number and where the training values lie."""
    if not is_continuous(part):
        return f"classes 0..{int(part.num_classes) - 1}"
    where = value_range(part)
    return f"a number; {where}" if where else "a number"


def value_range(part: torch.nn.Module) -> str:
    """Where 90% of a continuous column's training values lie, if its part keeps that (the built-in does)."""
    if not (hasattr(part, "low") and hasattr(part, "high")):
        return ""
    return f"90% of the training values lie in {float(part.low):.3g}..{float(part.high):.3g}"
