"""The pictures people draw to look inside a trained model: the 2-D latent manifold, interpolations, transfer.

The manifold and interpolations decode chosen latent codes instead of random draws from the prior,
so what they show is the decoder itself: how smoothly it maps the latent space onto images. Input a
user controls (grid size, label, condition values, image indices, steps) is checked up front and
reported as a :class:`SpecError` or :class:`ConditionError`, which the CLI prints as one paragraph
and exits with code 2.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from genreg.conditions import Conditions, is_continuous
from genreg.data import LABEL, Split
from genreg.errors import ConditionError, SpecError
from genreg.model import GenerativeModel
from genreg.pictures import Value, save_grid, value_label

#: The manifold spans these prior probabilities: the ends are left out because Phi^-1(0) and
#: Phi^-1(1) are infinite, and 5%..95% (as in Kingma & Welling's figures) covers where the prior has mass.
MANIFOLD_P_RANGE = (0.05, 0.95)


def manifold_latents(n: int) -> torch.Tensor:
    """The (n*n, 2) latent codes of the classic VAE manifold picture, in grid order.

    Spacing the grid by the N(0, 1) prior's quantiles (not evenly in z) gives every cell the same
    prior mass, so the picture shows what the decoder makes of the whole prior. Rows run from high
    to low z2 and columns from low to high z1, so that z2 increases upwards in the picture.
    """
    if n < 2:
        raise SpecError(f"the manifold grid needs n >= 2 points per side, got {n}.")
    p = torch.linspace(*MANIFOLD_P_RANGE, n, dtype=torch.float64)
    q = torch.distributions.Normal(0.0, 1.0).icdf(p).float()
    z1, z2 = torch.meshgrid(q, q.flip(0), indexing="xy")  # z1 varies along a row, z2 down the rows
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)


def save_manifold(
    model: GenerativeModel,
    path: str | Path,
    n: int = 15,
    label: int | None = None,
    fixed: Mapping[str, Value] | None = None,
) -> Path:
    """Decode the n x n manifold grid into a PNG, for a conditional model all under one condition.

    That condition is ``fixed`` (with ``label`` as its class); a model conditioned on the label
    needs the class, because no class is a fair default for a picture of one class's manifold.
    Other columns left out take class 0 or their training mean.
    """
    dim = model.latent.dim
    if dim != 2:
        raise SpecError(
            f"the latent manifold (--grid) needs a 2-D latent, but this model's latent has {dim} dimensions; "
            "train a model with latent_dim 2 (e.g. --set model.latent_dim=2)."
        )
    fixed = with_label(model, label, fixed, required=True)
    z = manifold_latents(n).to(model.device)
    condition = model.checked(model.conditioner.constant(len(z), fixed)) if model.conditional else None
    with model.evaluating():
        images = model.decode(z, condition)
    return save_grid(images, path, ncol=n)


def interpolation_latents(z_a: torch.Tensor, z_b: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` evenly spaced codes (steps, dim) on the straight line from z_a to z_b, both included.

    Written as (1 - t) z_a + t z_b so that the end points are z_a and z_b exactly.
    """
    if steps < 2:
        raise SpecError(f"an interpolation needs steps >= 2 (its two end points), got {steps}.")
    z_a, z_b = z_a.reshape(-1), z_b.reshape(-1)
    if z_a.shape != z_b.shape:
        raise ValueError(f"z_a and z_b must have the same size, got {z_a.numel()} and {z_b.numel()}.")
    t = torch.linspace(0.0, 1.0, steps, dtype=z_a.dtype, device=z_a.device).unsqueeze(1)
    return (1 - t) * z_a + t * z_b


def save_interpolation(
    model: GenerativeModel,
    split: Split,
    a: int,
    b: int,
    path: str | Path,
    steps: int = 10,
    label: int | None = None,
    fixed: Mapping[str, Value] | None = None,
) -> Path:
    """One row: image ``a`` of ``split``, ``steps`` decodings between the two codes, image ``b``.

    Each image is encoded to its posterior mean (with its own condition for a conditional model).
    A conditional decoder needs one condition for the whole row, so that the row shows the latent
    path alone rather than a change of condition: image ``a``'s, with the columns in ``fixed``
    (and the class ``label``) replaced. The row is then labelled with its class.
    """
    size = len(split)
    for name, index in (("a", a), ("b", b)):
        if not 0 <= index < size:
            raise SpecError(f"image index {name}={index} is out of range: the split has {size} images (0..{size - 1}).")
    fixed = with_label(model, label, fixed, required=False)

    x = split.images[[a, b]].to(model.device)
    condition = model.condition_of(split, torch.tensor([a, b]))
    with model.evaluating():
        z_a, z_b = model.encode(x, condition)
        z = interpolation_latents(z_a, z_b, steps)
        decode_as = (
            None if condition is None else model.checked(row_condition(model.conditioner, condition, fixed, steps))
        )
        decoded = model.decode(z, decode_as)
    row = torch.cat([x[:1].float(), decoded.float(), x[1:].float()])
    row_labels = None if decode_as is None or LABEL not in decode_as else [value_label(LABEL, decode_as[LABEL][0])]
    return save_grid(row, path, ncol=steps + 2, row_labels=row_labels)


def row_condition(
    conditions: Conditions, condition: Mapping[str, torch.Tensor], fixed: Mapping[str, Value], steps: int
) -> dict[str, torch.Tensor]:
    """The first image's condition, ``steps`` times, with the ``fixed`` columns replaced."""
    fixed_values = conditions.constant(steps, fixed)
    return {
        column: fixed_values[column].to(values.device) if column in fixed else values[:1].repeat(steps)
        for column, values in condition.items()
    }


# ---------------------------------------------------------------- transfer


def check_conditional(model: GenerativeModel) -> None:
    """Transfer decodes under another condition, which only a conditional model has."""
    if not model.conditional:
        raise SpecError("transfer decodes under another condition: this model is not conditional.")


def transfer_targets(model: GenerativeModel, to: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """What ``--to`` names, as {column: T values} for ``model.transfer``, and a header for each target.

    ``all`` or ``K``: the classes of the label column. ``COLUMN=v1,v2,...``: those values of one
    column the model reads; the other columns keep each image's own values.
    """
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


def save_transfer(
    model: GenerativeModel, split: Split, path: str | Path, n: int = 8, to: str = "all", seed: int = 0
) -> Path:
    """Counterfactual decoding: ``n`` random images of ``split``, each re-decoded under the targets.

    One row per image: the image itself, then one column per target (a class, or a value of
    another column), all decoded from that image's latent code (encoded with its own condition),
    so the style stays and the condition changes. Columns are headed by their target, rows by
    the image's own condition.
    """
    check_conditional(model)
    targets, headers = transfer_targets(model, to)
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    x = split.images[chosen].to(model.device)
    condition = model.condition_of(split, chosen)
    with model.evaluating():
        images = model.transfer(x, condition, targets)
    grid = torch.cat([x.float().unsqueeze(1), images.float()], dim=1).flatten(0, 1)
    rows = [own_label(condition, i) + " →" for i in range(len(chosen))]
    return save_grid(grid, path, ncol=len(headers) + 1, row_labels=rows, column_labels=["image", *headers])


def own_label(condition: Mapping[str, torch.Tensor], i: int) -> str:
    """Image ``i``'s own condition, every column: ``class 7, ink=0.123``."""
    return ", ".join(value_label(column, values[i].item()) for column, values in condition.items())


# ---------------------------------------------------------------- condition values from the command line


def check_label(model: GenerativeModel, label: int | None, required: bool) -> None:
    """A model conditioned on the label takes a class in 0..K-1 (needs one if ``required``); others take none."""
    k = model.conditioner.num_classes if model.conditional else None
    if k is None:
        if label is not None:
            why = (
                f"is not conditioned on the label (it reads {', '.join(model.conditioner.columns)})"
                if model.conditional
                else "is not conditional"
            )
            raise SpecError(f"--label {label}: this model {why}; leave --label out.")
        return
    if label is None:
        if required:
            raise SpecError(f"this model is conditional: pass --label with a class in 0..{k - 1}.")
        return
    if not 0 <= label < k:
        raise SpecError(f"--label {label}: must be a class in 0..{k - 1}.")


def with_label(
    model: GenerativeModel, label: int | None, fixed: Mapping[str, Value] | None, required: bool
) -> dict[str, Value]:
    """``fixed`` with ``label`` as its class, the class checked (and demanded if ``required``)."""
    fixed = dict(fixed or {})
    if label is not None:
        fixed[LABEL] = label
    check_label(model, fixed.get(LABEL), required)
    return fixed


def parse_condition(model: GenerativeModel, items: Sequence[str], label: int | None = None) -> dict[str, Value]:
    """``--condition COLUMN=VALUE`` items and ``--label K`` as {column: value}, each checked for the model."""
    check_label(model, label, required=False)
    fixed: dict[str, Value] = {} if label is None else {LABEL: label}
    given = {} if label is None else {LABEL: f"--label {label}"}
    if items and not model.conditional:
        raise SpecError(f"--condition {items[0]}: this model is not conditional; leave --condition out.")
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
