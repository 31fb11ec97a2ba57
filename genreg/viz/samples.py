"""Sample grids and reconstructions: what a model draws from its prior, and what it keeps of an image.

For a conditional model a sample grid has a row per class of the label column (at
most :data:`MAX_ROWS` of them, spread evenly, unless the classes are chosen) and,
when the model reads a continuous column (``ink``), a column per value of it, all
decoded from one latent draw per row, so a row shows the quantity growing and
nothing else changing.

Vectors (a table's rows) are drawn as a heatmap instead (:mod:`~genreg.viz.heatmaps`): each grid row
becomes a labelled block of rows, one per sample, above each block's mean profile.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch

from genreg.data.splits import LABEL, Split
from genreg.errors import PictureWarning, UsageError
from genreg.model.conditions import Conditions, default_value, is_continuous, value_range
from genreg.model.generative import GenerativeModel
from genreg.viz.figures import check_grid, grid_figure
from genreg.viz.heatmaps import heatmap_figure

Value = int | float  # one condition value: a class index or a continuous quantity


#: A sample grid's rows when nobody chose which classes: a readable picture whatever the number of classes.
MAX_ROWS = 10


class SampleGrid(NamedTuple):
    """Sampled images (N, C, H, W) in [0, 1], or vectors (N, F) in the data's units, in grid order, what each row
    and each column shows (None: plain draws), every image's condition ``{column: (N,) values}`` (empty for an
    unconditional model), and a title saying which classes a grid of some of them shows (None when it shows them
    all)."""

    images: torch.Tensor
    row_labels: list[str] | None
    column_labels: list[str] | None
    conditions: dict[str, torch.Tensor] = {}
    title: str | None = None


class GridConditions(NamedTuple):
    """The conditions of a sample grid: one per row, the column that varies along a row (if any) and its
    ``n`` values, every cell's condition row by row as ``{column: (rows * n,) values}``, and the title of
    :class:`SampleGrid`."""

    rows: list[dict[str, Value]]
    varying: dict[str, list[float]]
    cells: dict[str, torch.Tensor]
    title: str | None = None


def shown_classes(count: int, classes: Sequence[int] | None = None, rows: int = MAX_ROWS) -> list[int]:
    """The classes of 0..count-1 a picture gives a row: ``classes`` as given, else at most ``rows`` of them spread
    evenly, the first and the last included. Raises :class:`~genreg.errors.UsageError` for a class outside."""
    if classes is not None:
        outside = [k for k in classes if not 0 <= k < count]
        if outside or not classes:
            raise UsageError(f"--classes: give classes of this model, in 0..{count - 1}; got {list(classes)}.")
        return list(dict.fromkeys(classes))
    if rows < 1:
        raise UsageError(f"--rows: give at least 1 row, got {rows}.")
    return torch.linspace(0, count - 1, min(rows, count), dtype=torch.float64).round().long().tolist()


def subset_title(shown: list[int], count: int) -> str | None:
    """What a picture of the classes ``shown`` of ``count`` says it shows (None when it shows all of them)."""
    if len(shown) == count:
        return None
    listed = ", ".join(map(str, shown[:12])) + (", ..." if len(shown) > 12 else "")
    return f"classes {listed}: {len(shown)} of {count:,} (choose with --classes or --rows)"


def grid_conditions(
    conditions: Conditions,
    n: int,
    fixed: Mapping[str, Value],
    classes: Sequence[int] | None = None,
    rows: int = MAX_ROWS,
) -> GridConditions:
    """The conditions of a grid of ``n`` columns: a row per class of the label column unless ``fixed`` sets
    it (``classes``, or at most ``rows`` classes spread evenly: see :func:`shown_classes`), the first
    continuous column ``fixed`` leaves free spanning its range (:func:`~genreg.model.conditions.value_range`)
    along each row, and every other column at its ``fixed`` value, class 0 or its training mean.

    Raises :class:`~genreg.errors.ConditionError` for a ``fixed`` column the model does not read.
    """
    conditions.check_known(fixed)
    base, grid_rows, varying, title = {}, [{}], {}, None
    for column, part in zip(conditions.columns, conditions.parts, strict=True):
        if column in fixed:
            base[column] = fixed[column]
        elif is_continuous(part) and not varying:
            varying[column] = torch.linspace(*value_range(part, column), n).tolist()
        elif column == LABEL and not is_continuous(part):
            shown = shown_classes(int(part.num_classes), classes, rows)
            grid_rows, title = [{LABEL: k} for k in shown], subset_title(shown, int(part.num_classes))
        else:
            base[column] = default_value(part)
    grid_rows = [{**base, **row} for row in grid_rows]
    cells = [{**row, **{c: values[j] for c, values in varying.items()}} for row in grid_rows for j in range(n)]
    return GridConditions(
        grid_rows, varying, {column: torch.tensor([cell[column] for cell in cells]) for column in cells[0]}, title
    )


def sample_images(
    model: GenerativeModel,
    n: int,
    fixed: Mapping[str, Value] | None = None,
    classes: Sequence[int] | None = None,
    rows: int = MAX_ROWS,
) -> SampleGrid:
    """Prior samples for a grid of ``n`` columns, with its labels and conditions: images (N, C, H, W) in [0, 1],
    or vectors (N, F) in the data's units.

    Unconditional: ``n`` samples. Conditional: the grid of :func:`grid_conditions`
    (a single class if ``fixed`` holds the label; else ``classes`` or at most ``rows`` of them);
    its columns are ``n`` draws, or the values of the varying column, decoded from one latent
    draw per row.
    """
    if not model.conditional:
        return SampleGrid(model.sample(n), None, None)
    grid = grid_conditions(model.conditioner, n, fixed or {}, classes, rows)
    warn_untrained(
        model, [row[LABEL] for row in grid.rows if LABEL in row] if classes or LABEL in (fixed or {}) else []
    )
    check_grid(len(grid.rows), n, model.data_info.image_shape)
    condition = model.checked(grid.cells)
    draws = len(grid.rows) if grid.varying else len(grid.rows) * n
    z = model.latent.sample_prior(draws, model.device)
    images = model.decode(z.repeat_interleave(n, dim=0) if grid.varying else z, condition)
    row_labels = [row_label(row) for row in grid.rows]
    columns = [value_label(column, value) for column, values in grid.varying.items() for value in values]
    return SampleGrid(images, row_labels if any(row_labels) else None, columns or None, grid.cells, grid.title)


def warn_untrained(model: GenerativeModel, classes: Sequence[int]) -> None:
    """Warn (:class:`~genreg.errors.PictureWarning`) when a picture asks for classes the model's training split
    had no image of (as its model file records): what the decoder makes of them is no learned class."""
    untrained = sorted(set(model.data_info.absent.get(LABEL, [])) & {int(k) for k in classes})
    if untrained:
        warnings.warn(
            f"class(es) {', '.join(map(str, untrained))} of column '{LABEL}' had no training images: the model "
            "never learned them, so their samples show no learned class.",
            PictureWarning,
            stacklevel=3,
        )


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


def samples_figure(
    model: GenerativeModel,
    n: int = 8,
    fixed: Mapping[str, Value] | None = None,
    classes: Sequence[int] | None = None,
    rows: int = MAX_ROWS,
) -> Any:
    """The sample grid: n x n draws for an unconditional model; for a conditional one, :func:`sample_images`'
    grid of ``classes`` or at most ``rows`` classes, labelled, its title naming the classes of a subset.
    Vectors are drawn as a heatmap: each grid row a block of samples, above each block's mean profile.
    Raises :class:`~genreg.errors.ConditionError` for a ``fixed`` value the model does not read,
    :class:`~genreg.errors.UsageError` for a grid too large to draw (see :func:`check_grid`)."""
    if not model.conditional:
        check_grid(n, n, model.data_info.image_shape)
    grid = sample_images(model, n if model.conditional else n * n, fixed, classes, rows)
    if model.data_info.is_vectors:
        return samples_heatmap(grid, n)
    return grid_figure(
        grid.images, ncol=n, row_labels=grid.row_labels, column_labels=grid.column_labels, title=grid.title
    )


def samples_heatmap(grid: SampleGrid, n: int) -> Any:
    """A :class:`SampleGrid` of vectors (rows * n, F) as a heatmap: a block of ``n`` samples per grid row (class),
    in the order of its columns, above each block's mean profile."""
    blocks = [(label, n) for label in grid.row_labels] if grid.row_labels else None
    order = f", {grid.column_labels[0]} to {grid.column_labels[-1]}" if grid.column_labels else ""
    ylabel = f"{n} samples each{order}" if blocks else f"sample{order}"
    return heatmap_figure(grid.images, blocks, ylabel, grid.title or "samples from the prior")


def reconstructions_figure(model: GenerativeModel, split: Split, n: int = 8) -> Any:
    """``n`` images of ``split`` above their reconstructions: what the model keeps of an image (for vectors, a
    heatmap of the two blocks of rows, above the mean profile of each).

    The images are spread evenly over the split rather than its first ``n``, so a
    split stored class by class (as the bundled sample is) shows several classes.
    """
    check_grid(2, min(n, len(split)), model.data_info.image_shape)
    index = torch.linspace(0, len(split) - 1, min(n, len(split))).round().long()
    x = split.images[index].to(model.device)
    with model.evaluating():
        decoded = model.reconstruct(x, model.condition_of(split, index))
    if model.data_info.is_vectors:
        blocks, rows = [("input", len(index)), ("reconstruction", len(index))], f"the same {len(index)} samples in both"
        return heatmap_figure(torch.cat([x, decoded]), blocks, rows, "reconstructions")
    return grid_figure(torch.cat([x, decoded]), ncol=len(index), row_labels=["input", "reconstruction"])
