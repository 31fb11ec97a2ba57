"""Condition values given on the command line (``--label``, ``--condition COLUMN=VALUE``, ``--to``, ``--classes``),
each checked against the model that will read it, with errors that name the option and what it takes.

A class is given as the data gives it: for a class column whose values are strings or ids (a vocabulary, see
:meth:`~genreg.data.splits.DataInfo.class_index`), one of those values (``--label "CD14+ Monocyte"``,
``--to label=3000,7000``); for one without, its index 0..K-1. A value the model does not know is refused naming
the option and listing the values it knows."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch

from genreg.data.columns import LABEL
from genreg.data.splits import DataInfo
from genreg.errors import ConditionError, UsageError
from genreg.model.conditions import Conditions, is_continuous
from genreg.model.generative import GenerativeModel
from genreg.viz.samples import Value, value_label

#: Values of a vocabulary a message lists before "...".
SHOWN_VALUES = 30


def transfer_targets(model: GenerativeModel, to: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """What ``--to`` names, as {column: T values} for ``model.transfer``, and a header for each target.

    ``all``, or one class of the label column (as the data names it: see :func:`class_value`).
    ``COLUMN=v1,v2,...``: those values of one column the model reads; the other columns keep each image's own
    values.
    """
    if not model.conditional:
        raise UsageError("transfer decodes under another condition: this model is not conditional.")
    conditions, info = model.conditioner, model.data_info
    k = conditions.num_classes
    known = k is not None and to != "all" and to.strip() in _texts(info, LABEL)  # a class whose name holds '='
    column, sep, texts = to.partition("=")
    if sep and not known:
        return column_targets(conditions, column.strip(), texts, f"--to {to}", info)
    if k is None:
        raise ConditionError(
            f"--to {to}: this model is not conditioned on the label; give COLUMN=v1,v2,... for a column it "
            f"reads: {describe_columns(conditions, info)}."
        )
    if to == "all":
        classes = list(range(k))
    elif LABEL in info.vocabularies:
        try:
            classes = [info.class_index(LABEL, to.strip())]
        except ConditionError as exc:
            raise ConditionError(
                f"--to {to}: must be 'all', a class of the label, or COLUMN=v1,v2,... for a column this model "
                f"reads; {exc}"
            ) from None
    elif to.isdecimal() and int(to) < k:
        classes = [int(to)]
    else:
        raise ConditionError(
            f"--to {to}: must be 'all' or a class in 0..{k - 1}, or COLUMN=v1,v2,... for a column this model "
            f"reads: {describe_columns(conditions, info)}."
        )
    return {LABEL: torch.tensor(classes)}, [value_label(LABEL, c, info) for c in classes]


def column_targets(
    conditions: Conditions, column: str, texts: str, source: str, info: DataInfo | None = None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``v1,v2,...`` of ``column``, each checked, as transfer targets and their headers; a class whose name holds
    a comma (``T cell, CD4+``) is one value."""
    if not texts.strip():
        raise ConditionError(f"{source}: give at least one value after '=', e.g. {column}=v1,v2.")
    values = [
        condition_value(conditions, column, text, source, info) for text in split_values(texts, _texts(info, column))
    ]
    return {column: torch.tensor(values)}, [value_label(column, value, info) for value in values]


def check_label(model: GenerativeModel, label: str | int | None) -> int | None:
    """``--label``'s class: a model conditioned on the label takes one of its classes as the data names them (a
    value of its vocabulary, or an index 0..K-1 without one), or none; other models take none. Returns the class
    index (None without a label); raises :class:`UsageError` naming the option."""
    k = model.conditioner.num_classes if model.conditional else None
    if k is None:
        if label is not None:
            why = (
                f"is not conditioned on the label (it reads {', '.join(model.conditioner.columns)})"
                if model.conditional
                else "is not conditional"
            )
            raise UsageError(f"--label {label}: this model {why}; leave --label out.")
        return None
    if label is None:
        return None
    if LABEL in model.data_info.vocabularies:
        try:
            return model.data_info.class_index(LABEL, str(label).strip())
        except ConditionError as exc:
            raise UsageError(f"--label {label}: {exc}") from None
    text = str(label).strip()
    if not re.fullmatch(r"[+-]?\d+", text) or not 0 <= int(text) < k:
        raise UsageError(f"--label {label}: must be a class in 0..{k - 1}.")
    return int(text)


def parse_condition(model: GenerativeModel, items: Sequence[str], label: str | int | None = None) -> dict[str, Value]:
    """``--condition COLUMN=VALUE`` items and ``--label K`` as {column: value}, each checked for the model; a
    class as its index (see :func:`check_label`, :func:`condition_value`)."""
    k = check_label(model, label)
    fixed: dict[str, Value] = {} if k is None else {LABEL: k}
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
                f"this model reads: {describe_columns(model.conditioner, model.data_info)}."
            )
        if column in given:
            raise ConditionError(f"{source}: column '{column}' is already given by {given[column]}; give it once.")
        fixed[column] = condition_value(model.conditioner, column, text, source, model.data_info)
        given[column] = source
    return fixed


def condition_value(conditions: Conditions, column: str, text: str, source: str, info: DataInfo | None = None) -> Value:
    """``text`` as a value of ``column``: a class the conditioner knows (see :func:`class_value`), or a finite
    number."""
    part = conditions.part(column)
    if part is None:
        raise ConditionError(
            f"{source}: this model has no condition column '{column}'; it reads {describe_columns(conditions, info)}."
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
    return class_value(info, column, text, int(part.num_classes), source)


def class_value(info: DataInfo | None, column: str, text: str, count: int, source: str) -> int:
    """``text`` as a class of the class column ``column`` of ``count`` classes: for a column with a vocabulary in
    ``info``, the index of that value (``"CD14+ Monocyte"``, ``"3000"``); else the index itself, 0..count-1.
    Raises :class:`ConditionError` naming ``source`` and what the column takes (the first
    :data:`SHOWN_VALUES` values of a vocabulary)."""
    text = text.strip()
    if info is not None and column in info.vocabularies:
        try:
            return info.class_index(column, text)
        except ConditionError as exc:
            raise ConditionError(f"{source}: {exc}") from None
    if not re.fullmatch(r"[+-]?\d+", text) or not 0 <= int(text) < count:
        raise ConditionError(f"{source}: column '{column}' takes a class in 0..{count - 1}, got '{text}'.")
    return int(text)


def split_values(text: str, known: Sequence[str] = ()) -> list[str]:
    """Comma-separated values of ``text``; a run of pieces that together make one of the ``known`` values (a
    vocabulary's, e.g. ``T cell, CD4+``) is one value, the longest such run first."""
    pieces = text.split(",")
    if not known:
        return pieces
    known, values, i = set(known), [], 0
    while i < len(pieces):
        end = next((j for j in range(len(pieces), i + 1, -1) if ",".join(pieces[i:j]).strip() in known), i + 1)
        values.append(",".join(pieces[i:end]))
        i = end
    return values


def _texts(info: DataInfo | None, column: str) -> list[str]:
    """The values of ``column``'s vocabulary in ``info`` as text (none without one)."""
    if info is None or column not in info.vocabularies:
        return []
    return info.class_names(column)


def number(text: str) -> float:
    """``text`` as a float; NaN (which callers refuse like any non-finite value) if it is not a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def describe_columns(conditions: Conditions, info: DataInfo | None = None) -> str:
    """Each column the model reads with what it takes: ``label (classes 0..9), ink (numbers, ...)``; a class
    column with a vocabulary in ``info`` lists its first values: ``label (3 classes: 'B', 'T', 'NK')``."""
    return ", ".join(
        f"{column} ({describe_part(part, column, info)})"
        for column, part in zip(conditions.columns, conditions.parts, strict=True)
    )


def describe_part(part: torch.nn.Module, column: str = LABEL, info: DataInfo | None = None) -> str:
    """What a conditioner takes: its classes (their values, for a column with a vocabulary in ``info``), or a
    number and where the training values lie."""
    if not is_continuous(part):
        vocabulary = info.vocabularies.get(column) if info is not None else None
        if vocabulary:
            shown = ", ".join(repr(value) for value in vocabulary[:SHOWN_VALUES])
            more = " ..." if len(vocabulary) > SHOWN_VALUES else ""
            return f"{len(vocabulary)} classes: {shown}{more}"
        return f"classes 0..{int(part.num_classes) - 1}"
    where = value_range(part)
    return f"a number; {where}" if where else "a number"


def value_range(part: torch.nn.Module) -> str:
    """Where 90% of a continuous column's training values lie, if its part keeps that (the built-in does)."""
    if not (hasattr(part, "low") and hasattr(part, "high")):
        return ""
    return f"90% of the training values lie in {float(part.low):.3g}..{float(part.high):.3g}"
