"""Sample grids and reconstructions: what a model draws from its prior, and what it keeps of an image.

For a conditional model a sample grid has a row per class of the label column (at
most :data:`MAX_ROWS` of them, spread evenly, unless the classes are chosen) and,
when the model reads a continuous column (``ink``), a column per value of it, all
decoded from one latent draw per row, so a row shows the quantity growing and
nothing else changing.

Vectors (a table's rows) are drawn as a heatmap instead (:mod:`~genreg.viz.heatmaps`): each grid row
becomes a labelled block of rows, one per sample, above each block's mean profile.

Every picture names a class as the data does (:func:`class_label`): ``CD14+ Monocyte`` for a class column whose
values are strings, ``class 3000`` for one of integer ids, ``class 3`` for classes that are their indices; and
shows samples in the data's units (the dataset's ``transform`` inverted), whatever the model's own units are.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch

from genreg.data.splits import LABEL, DataInfo, Split
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


def subset_title(shown: list[int], count: int, info: DataInfo | None = None) -> str | None:
    """What a picture of the classes ``shown`` of ``count`` says it shows (None when it shows all of them); the
    classes named by ``info``'s vocabulary of the label column, if it has one."""
    if len(shown) == count:
        return None
    names = info.class_names(LABEL) if info is not None and LABEL in info.vocabularies else None
    listed = ", ".join(names[k] if names else str(k) for k in shown[:12]) + (", ..." if len(shown) > 12 else "")
    return f"classes {listed}: {len(shown)} of {count:,} (choose with --classes or --rows)"


def grid_conditions(
    conditions: Conditions,
    n: int,
    fixed: Mapping[str, Value],
    classes: Sequence[int] | None = None,
    rows: int = MAX_ROWS,
    info: DataInfo | None = None,
) -> GridConditions:
    """The conditions of a grid of ``n`` columns: a row per class of the label column unless ``fixed`` sets
    it (``classes``, or at most ``rows`` classes spread evenly: see :func:`shown_classes`), the first
    continuous column ``fixed`` leaves free spanning its range (:func:`~genreg.model.conditions.value_range`)
    along each row, and every other column at its ``fixed`` value, class 0 or its training mean. ``info`` (the
    model's data) names the classes in the title.

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
            grid_rows, title = [{LABEL: k} for k in shown], subset_title(shown, int(part.num_classes), info)
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
    draw per row. Rows and columns are named as the data names its classes (:func:`value_label`); a grid of the
    one class ``fixed`` holds is titled with it (``samples of CD14+ Monocyte (label)``).
    """
    if not model.conditional:
        return SampleGrid(model.sample(n), None, None)
    info, fixed = model.data_info, fixed or {}
    grid = grid_conditions(model.conditioner, n, fixed, classes, rows, info)
    warn_untrained(model, [row[LABEL] for row in grid.rows if LABEL in row] if classes or LABEL in fixed else [])
    check_grid(len(grid.rows), n, info.image_shape)
    condition = model.checked(grid.cells)
    draws = len(grid.rows) if grid.varying else len(grid.rows) * n
    z = model.latent.sample_prior(draws, model.device)
    images = model.decode(z.repeat_interleave(n, dim=0) if grid.varying else z, condition)  # the data's units
    row_labels = [row_label(row, info) for row in grid.rows]
    columns = [value_label(column, value, info) for column, values in grid.varying.items() for value in values]
    title = grid.title
    if LABEL in fixed and info.labelled:
        title = f"samples of {class_label(info, LABEL, int(fixed[LABEL]))}"
        title += f" ({LABEL})" if _names_classes(info, LABEL) else ""
    return SampleGrid(images, row_labels if any(row_labels) else None, columns or None, grid.cells, title)


def warn_untrained(model: GenerativeModel, classes: Sequence[int]) -> None:
    """Warn (:class:`~genreg.errors.PictureWarning`) when a picture asks for classes the model's training split
    had no image of (as its model file records): what the decoder makes of them is no learned class."""
    info = model.data_info
    untrained = sorted(set(info.absent.get(LABEL, [])) & {int(k) for k in classes})
    if untrained:
        named = [repr(info.class_names(LABEL)[k]) if LABEL in info.vocabularies else str(k) for k in untrained]
        warnings.warn(
            f"class(es) {', '.join(named)} of column '{LABEL}' had no training {info.noun}: the model never "
            "learned them, so their samples show no learned class.",
            PictureWarning,
            stacklevel=3,
        )


def class_label(info: DataInfo | None, column: str, k: int) -> str:
    """How a picture names class ``k`` of the class column ``column``: its value in the data where that is text
    (``CD14+ Monocyte``); ``class 3000`` for an integer id, or ``class 3`` for a column without a vocabulary (the
    class is its index); for a column other than the label, ``dose=high``, ``dose=3000`` or ``dose=3``."""
    vocabulary = info.vocabularies.get(column) if info is not None else None
    value = vocabulary[k] if vocabulary and 0 <= k < len(vocabulary) else k
    if column != LABEL:
        return f"{column}={value}"
    return value if isinstance(value, str) else f"class {value}"


def _names_classes(info: DataInfo | None, column: str) -> bool:
    """Whether ``column`` has a vocabulary of text, so that a class's name alone does not say its column."""
    vocabulary = info.vocabularies.get(column) if info is not None else None
    return bool(vocabulary) and isinstance(vocabulary[0], str)


def value_label(column: str, value: Value, info: DataInfo | None = None) -> str:
    """A class of the label column as :func:`class_label` names it (``class 3``, ``CD14+ Monocyte``), ``ink=0.123``
    for a continuous value, ``dose=2`` (or ``dose=high``) for a class of another column; ``info`` is the model's
    data (its vocabularies), None for indices."""
    if isinstance(value, float) and not (column == LABEL and value.is_integer()):
        return f"{column}={value:.3g}"
    return class_label(info, column, int(value))


def row_label(row: Mapping[str, Value], info: DataInfo | None = None) -> str:
    """The class's name (:func:`class_label`) for a row of the label column, else its fixed values
    (``ink=0.12``); empty for the one class of unlabelled data (``info.labelled`` false), which says nothing."""
    if LABEL in row:
        return value_label(LABEL, row[LABEL], info) if info is None or info.labelled else ""
    return ", ".join(value_label(column, value, info) for column, value in row.items())


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
        return samples_heatmap(grid, n, model.data_info.features)
    return grid_figure(
        grid.images, ncol=n, row_labels=grid.row_labels, column_labels=grid.column_labels, title=grid.title
    )


def samples_heatmap(grid: SampleGrid, n: int, features: Sequence[str] | None = None) -> Any:
    """A :class:`SampleGrid` of vectors (rows * n, F) as a heatmap: a block of ``n`` samples per grid row (class),
    in the order of its columns, above each block's mean profile; ``features`` names the F features."""
    blocks = [(label, n) for label in grid.row_labels] if grid.row_labels else None
    order = f", {grid.column_labels[0]} to {grid.column_labels[-1]}" if grid.column_labels else ""
    ylabel = f"{n} samples each{order}" if blocks else f"sample{order}"
    return heatmap_figure(grid.images, blocks, ylabel, grid.title or "samples from the prior", features=features)


def reconstruction_images(model: GenerativeModel, split: Split, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`reconstructions_figure` draws: ``n`` samples of ``split`` spread evenly over it, and their
    reconstructions (each one's posterior mean decoded, with its own condition), both in the data's units:
    images (n, C, H, W) in [0, 1], or vectors (n, F) with the dataset's ``transform`` inverted (a split holds
    the model's units)."""
    check_grid(2, min(n, len(split)), model.data_info.image_shape)
    index = torch.linspace(0, len(split) - 1, min(n, len(split))).round().long()
    x = split.images[index].to(model.device)
    with model.evaluating():
        decoded = model.reconstruct(x, model.condition_of(split, index), units="model")
    return model.out_of_model(x), model.out_of_model(decoded)


def reconstructions_figure(model: GenerativeModel, split: Split, n: int = 8) -> Any:
    """``n`` images of ``split`` above their reconstructions (:func:`reconstruction_images`, in the data's
    units): what the model keeps of an image (for vectors, a heatmap of the two blocks of rows, above the mean
    profile of each).

    The images are spread evenly over the split rather than its first ``n``, so a
    split stored class by class (as the bundled sample is) shows several classes.
    """
    x, decoded = reconstruction_images(model, split, n)
    info = model.data_info
    if info.is_vectors:
        blocks, rows = [("input", len(x)), ("reconstruction", len(x))], f"the same {len(x)} {info.noun} in both"
        return heatmap_figure(torch.cat([x, decoded]), blocks, rows, "reconstructions", features=info.features)
    return grid_figure(torch.cat([x, decoded]), ncol=len(x), row_labels=["input", "reconstruction"])
