"""The pictures a run writes: sample grids and the latent scatter.

matplotlib and torchvision are imported when a picture is drawn, not when
genreg is imported: together they cost seconds that `genreg list` should not pay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import torch

from genreg.checkpoint import atomic_write
from genreg.conditions import Conditions, default_value, is_continuous
from genreg.data import LABEL, Split
from genreg.errors import ConditionError
from genreg.evaluation import posterior
from genreg.model import GenerativeModel

Value = int | float  # one condition value: a class index or a continuous quantity


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_grid(
    images: torch.Tensor,
    path: str | Path,
    ncol: int,
    row_labels: list[str] | None = None,
    column_labels: list[str] | None = None,
) -> Path:
    """Images (N, C, H, W) in [0, 1] as a grid of ``ncol`` columns, rows and columns optionally labelled.

    Column labels go above the grid, slanted, so that a value per column (``ink=0.123``) fits
    over images only 28 pixels wide.
    """
    from torchvision.utils import make_grid

    plt = pyplot()
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=ncol, padding=2, pad_value=1.0)
    rows = -(-images.shape[0] // ncol)
    fig, ax = plt.subplots(figsize=(ncol * 0.6 + 0.6, rows * 0.6 + 0.3))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray" if images.shape[1] == 1 else None, vmin=0, vmax=1)
    height, width = images.shape[2:]
    ax.set_xticks([])
    if column_labels:
        ax.set_xticks([2 + (width + 2) * j + width / 2 for j in range(ncol)], column_labels[:ncol], fontsize=7)
        ax.tick_params(top=False, bottom=False, labeltop=True, labelbottom=False)
        plt.setp(ax.get_xticklabels(), rotation=45, ha="left", rotation_mode="anchor")
    ax.set_yticks([])
    if row_labels:
        ax.set_yticks([2 + (height + 2) * i + height / 2 for i in range(rows)], row_labels[:rows])
        ax.tick_params(left=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout(pad=0.2)
    return save_figure(fig, path)


def save_figure(fig: object, path: str | Path) -> Path:
    """Write ``fig`` as ``path`` atomically and close it; a folder that cannot be written is an OutputError."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight"))
    finally:
        pyplot().close(fig)
    return Path(path)


class SampleGrid(NamedTuple):
    """Sampled images in grid order, and what each row and each column shows (None: plain draws)."""

    images: torch.Tensor
    row_labels: list[str] | None
    column_labels: list[str] | None


def sample_images(
    model: GenerativeModel, n: int, label: int | None = None, fixed: Mapping[str, Value] | None = None
) -> SampleGrid:
    """Prior samples for a grid of ``n`` columns, with its row and column labels.

    Unconditional: ``n`` samples. Conditional: one row per class of the label column
    (or only ``label``); the columns are ``n`` draws, or, when the model reads a
    continuous column that ``fixed`` does not set, ``n`` values of it spanning its
    training range (5th to 95th percentile), all decoded from one latent draw per
    row, so a row shows the quantity growing and nothing else changing. Columns
    ``fixed`` sets keep that value; any other class column takes class 0 and any
    other continuous one its training mean.
    """
    if not model.conditional:
        return SampleGrid(model.sample(n), None, None)
    fixed = dict(fixed or {})
    if label is not None:
        fixed[LABEL] = label
    rows, varying = condition_grid(model.conditioner, n, fixed)
    condition = model.checked(grid_condition(rows, varying, n))
    draws = len(rows) if varying else len(rows) * n
    z = model.latent.sample_prior(draws, model.device)
    images = model.decode(z.repeat_interleave(n, dim=0) if varying else z, condition)
    row_labels = [row_label(row) for row in rows]
    columns = [value_label(column, value) for column, values in varying.items() for value in values]
    return SampleGrid(images, row_labels if any(row_labels) else None, columns or None)


def condition_grid(
    conditions: Conditions, n: int, fixed: Mapping[str, Value]
) -> tuple[list[dict[str, Value]], dict[str, list[float]]]:
    """The rows (one per class of the label column, unless fixed) and the varying column of a sample grid."""
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
    return [{**base, **row} for row in rows], varying


def grid_condition(rows: list[dict[str, Value]], varying: dict[str, list[float]], n: int) -> dict[str, torch.Tensor]:
    """One condition per grid cell, row by row: each row's values, the varying column along the row."""
    cells = [{**row, **{c: values[j] for c, values in varying.items()}} for row in rows for j in range(n)]
    return {column: torch.tensor([cell[column] for cell in cells]) for column in cells[0]}


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


def save_samples(
    model: GenerativeModel,
    path: str | Path,
    n: int = 8,
    label: int | None = None,
    fixed: Mapping[str, Value] | None = None,
) -> Path:
    """Sample grid: 8x8 for an unconditional model; for a conditional one, :func:`sample_images`' grid, labelled."""
    images, rows, columns = sample_images(model, n if model.conditional else n * n, label, fixed)
    return save_grid(images, path, ncol=n, row_labels=rows, column_labels=columns)


def project_2d(z: torch.Tensor) -> tuple[torch.Tensor, tuple[str, str]]:
    """The two latent dims if z is 2-D, else the first two principal components."""
    if z.shape[1] <= 2:
        z = torch.nn.functional.pad(z, (0, 2 - z.shape[1]))
        return z, ("z1", "z2")
    centred = z - z.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    share = (s**2 / (s**2).sum()).tolist()
    return centred @ v[:2].T, (f"PC1 ({share[0]:.0%} of variance)", f"PC2 ({share[1]:.0%})")


def color_values(split: Split, column: str) -> torch.Tensor:
    """The split's values of ``column``, on the CPU, or an error listing the columns it has."""
    columns = split.condition()
    if column not in columns:
        raise ConditionError(
            f"cannot colour by '{column}': the split has no such column; its columns: {', '.join(columns)}."
        )
    return columns[column].cpu()


def save_latent_scatter(
    model: GenerativeModel, split: Split, path: str | Path, title: str = "", color_by: str = LABEL
) -> Path:
    """The split's latent means, coloured by the column ``color_by``.

    A class column gets one colour per class and a legend; a continuous one (e.g. ``ink``) a
    colormap and a colorbar, because hundreds of distinct values have no useful legend.
    """
    values = color_values(split, color_by)
    points, (xlabel, ylabel) = project_2d(posterior(model, split).mu)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    if values.is_floating_point():
        dots = ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6, c=values.numpy(), cmap="viridis")
        fig.colorbar(dots, ax=ax, label=color_by)
    else:
        _class_scatter(ax, points, values, model.data_info.columns.get(color_by, int(values.max()) + 1))
        ax.legend(markerscale=3, fontsize=7, loc="best", title="class" if color_by == LABEL else color_by)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"test-set latent means by {'class' if color_by == LABEL else color_by}")
    fig.tight_layout()
    return save_figure(fig, path)


def _class_scatter(ax, points: torch.Tensor, classes: torch.Tensor, count: int) -> None:
    """One colour and one legend entry per class present."""
    cmap = pyplot().get_cmap("tab10" if count <= 10 else "tab20")
    for k in classes.unique().tolist():
        mask = classes == k
        ax.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.6, color=cmap(k % cmap.N), label=str(k))


def save_reconstructions(model: GenerativeModel, split: Split, path: str | Path, n: int = 8) -> Path:
    """``n`` images of ``split`` above their reconstructions: what the model keeps of an image.

    The images are spread evenly over the split rather than its first ``n``, so a
    split stored class by class (as the bundled sample is) shows several classes.
    """
    index = torch.linspace(0, len(split) - 1, min(n, len(split))).round().long()
    x = split.images[index].to(model.device)
    with model.evaluating():
        decoded = model.reconstruct(x, model.condition_of(split, index))
    return save_grid(torch.cat([x, decoded]), path, ncol=len(index), row_labels=["input", "reconstruction"])


def rendered(save: Callable[[Path], object]) -> torch.Tensor:
    """The picture ``save(path)`` writes, as an (H, W, 3) uint8 tensor.

    For trackers that log images rather than files: they get exactly the picture a
    run folder holds (labels included), without a second way of drawing it.
    """
    import tempfile

    import numpy as np
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "picture.png"
        save(path)
        with Image.open(path) as image:
            return torch.from_numpy(np.array(image.convert("RGB")))
