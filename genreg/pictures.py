"""The pictures a run writes: sample grids and the latent scatter.

matplotlib and torchvision are imported when a picture is drawn, not when
genreg is imported: together they cost seconds that `genreg list` should not pay.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genreg.conditions import Conditions, is_continuous
from genreg.data import LABEL, Split
from genreg.evaluation import posterior
from genreg.model import GenerativeModel


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_grid(images: torch.Tensor, path: str | Path, ncol: int, row_labels: list[str] | None = None) -> Path:
    """Images (N, C, H, W) in [0, 1] as a grid of ``ncol`` columns, rows optionally labelled."""
    from torchvision.utils import make_grid

    plt = pyplot()
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=ncol, padding=2, pad_value=1.0)
    rows = -(-images.shape[0] // ncol)
    fig, ax = plt.subplots(figsize=(ncol * 0.6 + 0.6, rows * 0.6 + 0.3))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray" if images.shape[1] == 1 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    if row_labels:
        step = images.shape[2] + 2
        ax.set_yticks([2 + step * i + images.shape[2] / 2 for i in range(rows)], row_labels[:rows])
        ax.tick_params(left=False)
    else:
        ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def sample_images(
    model: GenerativeModel, n: int, label: int | None = None, fixed: dict[str, float] | None = None
) -> tuple[torch.Tensor, list[str] | None]:
    """Prior samples for a grid of ``n`` columns and their row labels.

    Unconditional: ``n`` samples. Conditional: one row per class of the label column
    (or only ``label``); the columns are ``n`` draws, or, when the model reads a
    continuous column that ``fixed`` does not set, ``n`` values of it spanning its
    training range (5th to 95th percentile), so a row shows the quantity growing.
    Columns ``fixed`` sets keep that value; any other class column takes class 0
    and any other continuous one its training mean.
    """
    if not model.conditional:
        return model.sample(n), None
    fixed = dict(fixed or {})
    if label is not None:
        fixed[LABEL] = label
    rows, columns = condition_grid(model.conditioner, n, fixed)
    return model.sample(condition=grid_condition(rows, columns, n)), [row_label(row) for row in rows]


def condition_grid(
    conditions: Conditions, n: int, fixed: dict[str, float]
) -> tuple[list[dict[str, float]], dict[str, list[float]]]:
    """The rows (one per class of the label column, unless fixed) and the varying column of a sample grid."""
    base, rows, varying = {}, [{}], {}
    for column, part in zip(conditions.columns, conditions.parts, strict=True):
        if column in fixed:
            base[column] = fixed[column]
        elif is_continuous(part):
            if varying:
                base[column] = float(part.mean)
            else:
                varying[column] = torch.linspace(float(part.low), float(part.high), n).tolist()
        elif column == LABEL:
            rows = [{LABEL: k} for k in range(int(part.num_classes))]
        else:
            base[column] = 0
    return [{**base, **row} for row in rows], varying


def grid_condition(rows: list[dict[str, float]], varying: dict[str, list[float]], n: int) -> dict[str, torch.Tensor]:
    """One condition per grid cell, row by row: each row's values, the varying column along the row."""
    cells = [{**row, **{c: values[j] for c, values in varying.items()}} for row in rows for j in range(n)]
    return {column: torch.tensor([cell[column] for cell in cells]) for column in cells[0]}


def row_label(row: dict[str, float]) -> str:
    """``class 3`` for a row of the label column, else its fixed values (``ink=0.12``)."""
    if LABEL in row:
        return f"class {int(row[LABEL])}"
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def save_samples(
    model: GenerativeModel, path: str | Path, n: int = 8, label: int | None = None, fixed: dict | None = None
) -> Path:
    """Sample grid: 8x8 for an unconditional model, a row per class for a conditional one."""
    images, labels = sample_images(model, n if model.conditional else n * n, label, fixed)
    return save_grid(images, path, ncol=n, row_labels=labels)


def project_2d(z: torch.Tensor) -> tuple[torch.Tensor, tuple[str, str]]:
    """The two latent dims if z is 2-D, else the first two principal components."""
    if z.shape[1] <= 2:
        z = torch.nn.functional.pad(z, (0, 2 - z.shape[1]))
        return z, ("z1", "z2")
    centred = z - z.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    share = (s**2 / (s**2).sum()).tolist()
    return centred @ v[:2].T, (f"PC1 ({share[0]:.0%} of variance)", f"PC2 ({share[1]:.0%})")


def save_latent_scatter(model: GenerativeModel, split: Split, path: str | Path, title: str = "") -> Path:
    """Test-set latent means coloured by class."""
    points, (xlabel, ylabel) = project_2d(posterior(model, split).mu)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    labels = split.labels.cpu()
    cmap = plt.get_cmap("tab10" if model.data_info.num_classes <= 10 else "tab20")
    for k in labels.unique().tolist():
        mask = labels == k
        ax.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.6, color=cmap(k % cmap.N), label=str(k))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "test-set latent means by class")
    ax.legend(markerscale=3, fontsize=7, loc="best", title="class")
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
