"""Sample grids and reconstructions: what a model draws from its prior, and what it keeps of an image.

For a conditional model a sample grid has a row per class of the label column
and, when the model reads a continuous column (``ink``), a column per value of
it, all decoded from one latent draw per row, so a row shows the quantity
growing and nothing else changing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch

from genreg.data.splits import LABEL, Split
from genreg.model.conditions import Conditions, default_value, is_continuous
from genreg.model.generative import GenerativeModel
from genreg.viz.figures import check_grid, grid_figure

Value = int | float  # one condition value: a class index or a continuous quantity


class SampleGrid(NamedTuple):
    """Sampled images (N, C, H, W) in grid order, and what each row and each column shows (None: plain draws)."""

    images: torch.Tensor
    row_labels: list[str] | None
    column_labels: list[str] | None


class GridConditions(NamedTuple):
    """The conditions of a sample grid: one per row, the column that varies along a row (if any) and its
    ``n`` values, and every cell's condition row by row as ``{column: (rows * n,) values}``."""

    rows: list[dict[str, Value]]
    varying: dict[str, list[float]]
    cells: dict[str, torch.Tensor]


def grid_conditions(conditions: Conditions, n: int, fixed: Mapping[str, Value]) -> GridConditions:
    """The conditions of a grid of ``n`` columns: a row per class of the label column unless ``fixed`` sets
    it, the first continuous column ``fixed`` leaves free spanning its training range (5th to 95th
    percentile) along each row, and every other column at its ``fixed`` value, class 0 or its training mean.

    Raises :class:`~genreg.errors.ConditionError` for a ``fixed`` column the model does not read.
    """
    conditions.check_known(fixed)
    base, rows, varying = {}, [{}], {}
    for column, part in zip(conditions.columns, conditions.parts, strict=True):
        if column in fixed:
            base[column] = fixed[column]
        elif is_continuous(part) and not varying and hasattr(part, "low") and hasattr(part, "high"):
            varying[column] = torch.linspace(float(part.low), float(part.high), n).tolist()
        elif column == LABEL and not is_continuous(part):
            rows = [{LABEL: k} for k in range(int(part.num_classes))]
        else:
            base[column] = default_value(part)
    rows = [{**base, **row} for row in rows]
    cells = [{**row, **{c: values[j] for c, values in varying.items()}} for row in rows for j in range(n)]
    return GridConditions(
        rows, varying, {column: torch.tensor([cell[column] for cell in cells]) for column in cells[0]}
    )


def sample_images(model: GenerativeModel, n: int, fixed: Mapping[str, Value] | None = None) -> SampleGrid:
    """Prior samples (N, C, H, W) for a grid of ``n`` columns, with its row and column labels.

    Unconditional: ``n`` samples. Conditional: the grid of :func:`grid_conditions`
    (a single class if ``fixed`` holds the label); its columns are ``n`` draws, or
    the values of the varying column, decoded from one latent draw per row.
    """
    if not model.conditional:
        return SampleGrid(model.sample(n), None, None)
    grid = grid_conditions(model.conditioner, n, fixed or {})
    condition = model.checked(grid.cells)
    draws = len(grid.rows) if grid.varying else len(grid.rows) * n
    z = model.latent.sample_prior(draws, model.device)
    images = model.decode(z.repeat_interleave(n, dim=0) if grid.varying else z, condition)
    row_labels = [row_label(row) for row in grid.rows]
    columns = [value_label(column, value) for column, values in grid.varying.items() for value in values]
    return SampleGrid(images, row_labels if any(row_labels) else None, columns or None)


def value_label(column: str, value: Value) -> str:
    """``class 3`` for the label column, ``ink=0.123`` for a continuous value, ``dose=2`` for another class."""
    if column == LABEL:
        return f"class {int(value)}"
    return f"{column}={value:.3g}" if isinstance(value, float) else f"{column}={value}"


def row_label(row: Mapping[str, Value]) -> str:
    """``class 3`` for a row of the label column, else its fixed values (``ink=0.12``)."""
    if LABEL in row:
        return value_label(LABEL, row[LABEL])
    return ", ".join(value_label(column, value) for column, value in row.items())


def samples_figure(model: GenerativeModel, n: int = 8, fixed: Mapping[str, Value] | None = None) -> Any:
    """The sample grid: n x n draws for an unconditional model; for a conditional one, :func:`sample_images`'
    grid, labelled. Raises :class:`~genreg.errors.ConditionError` for a ``fixed`` value the model does not read,
    :class:`~genreg.errors.UsageError` for a grid too large to draw (see :func:`check_grid`)."""
    rows = len(grid_conditions(model.conditioner, 1, fixed or {}).rows) if model.conditional else n
    check_grid(rows, n, model.data_info.image_shape)
    images, rows, columns = sample_images(model, n if model.conditional else n * n, fixed)
    return grid_figure(images, ncol=n, row_labels=rows, column_labels=columns)


def reconstructions_figure(model: GenerativeModel, split: Split, n: int = 8) -> Any:
    """``n`` images of ``split`` above their reconstructions: what the model keeps of an image.

    The images are spread evenly over the split rather than its first ``n``, so a
    split stored class by class (as the bundled sample is) shows several classes.
    """
    check_grid(2, min(n, len(split)), model.data_info.image_shape)
    index = torch.linspace(0, len(split) - 1, min(n, len(split))).round().long()
    x = split.images[index].to(model.device)
    with model.evaluating():
        decoded = model.reconstruct(x, model.condition_of(split, index))
    return grid_figure(torch.cat([x, decoded]), ncol=len(index), row_labels=["input", "reconstruction"])
