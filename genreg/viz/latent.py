"""Latent spaces drawn: one model's latent means as a scatter, and several models side by side.

Above two latent dimensions the scatter shows the first two principal components
of the means, labelled with the share of variance each holds. Classes are named as the data names them (a
vocabulary's values: ``CD14+ Monocyte``); the points of unlabelled data (``DataInfo.labelled`` false) share one
colour, without a legend.
"""

from __future__ import annotations

from typing import Any

import torch

from genreg.data.splits import LABEL, DataInfo, Split
from genreg.errors import ConditionError
from genreg.evaluation.metrics import posterior
from genreg.model.conditions import default_value
from genreg.model.generative import GenerativeModel
from genreg.viz.figures import pyplot, show_grid
from genreg.viz.heatmaps import show_heatmap
from genreg.viz.samples import sample_images


def project_2d(z: torch.Tensor) -> tuple[torch.Tensor, tuple[str, str]]:
    """The two latent dims if z is 2-D, else the first two principal components, each labelled with the share of
    the variance it holds (none when the points do not vary: one point, or all in one place)."""
    if z.shape[1] <= 2:
        z = torch.nn.functional.pad(z, (0, 2 - z.shape[1]))
        return z, ("z1", "z2")
    centred = z - z.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)  # min(N, d) components: one for a single point
    points = torch.nn.functional.pad(centred @ v[:2].T, (0, max(0, 2 - len(s))))
    total = float((s**2).sum())
    if total <= 0:
        return points, ("PC1", "PC2")
    share = (s**2 / total).tolist() + [0.0]
    return points, (f"PC1 ({share[0]:.0%} of variance)", f"PC2 ({share[1]:.0%})")


def color_values(split: Split, column: str) -> torch.Tensor:
    """The split's values of ``column``, on the CPU, or an error listing the columns it has."""
    columns = split.condition()
    if column not in columns:
        raise ConditionError(
            f"cannot colour by '{column}': the split has no such column; its columns: {', '.join(columns)}."
        )
    return columns[column].cpu()


def latent_scatter_figure(model: GenerativeModel, split: Split, title: str = "", color_by: str = LABEL) -> Any:
    """The split's latent means (their first two principal components above 2-D), coloured by ``color_by``.

    A class column gets one colour per class and a legend naming each as the data does (see
    :func:`class_names`); a continuous one (e.g. ``ink``) a colormap and a colorbar, because hundreds of
    distinct values have no useful legend. The label of unlabelled data colours nothing: one colour, no legend,
    and a title's ``by class`` left out.
    """
    values = color_values(split, color_by)
    points, (xlabel, ylabel) = project_2d(posterior(model, split).mu)
    info = model.data_info
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    unlabelled = color_by == LABEL and not info.labelled
    if unlabelled:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6, color="tab:blue")
        title = (title or "test-set latent means").replace(" by class", "") + " (the data has no labels)"
    elif values.is_floating_point():
        dots = ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6, c=values.numpy(), cmap="viridis")
        fig.colorbar(dots, ax=ax, label=color_by)
    else:
        _class_scatter(ax, points, values, "class" if color_by == LABEL else color_by, class_names(info, color_by))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"test-set latent means by {'class' if color_by == LABEL else color_by}")
    fig.tight_layout()
    return fig


#: Classes a latent scatter gives a colour and legend entry each; more share one colormap and a colorbar.
MAX_LEGEND = 20


def class_names(info: DataInfo | None, column: str = LABEL) -> list[str] | None:
    """What a legend calls each class of ``column``: the values of its vocabulary in ``info`` (the model's data),
    or None for classes that are their indices (the legend shows the index)."""
    if info is None or column not in info.vocabularies:
        return None
    return info.class_names(column)


def _class_scatter(
    ax: Any, points: torch.Tensor, classes: torch.Tensor, title: str, names: list[str] | None = None
) -> None:
    """One colour and legend entry per class present (named by ``names``, else its index), or, past
    :data:`MAX_LEGEND` classes, one colormap over the class indices and a colorbar: one draw call and bounded
    memory whatever the number of classes."""
    present = classes.unique().tolist()
    if len(present) > MAX_LEGEND:
        dots = ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6, c=classes.numpy(), cmap="turbo")
        ax.figure.colorbar(dots, ax=ax, label=f"{title} ({len(present):,} present)")
        return
    cmap = pyplot().get_cmap("tab10" if len(present) <= 10 else "tab20")
    for i, k in enumerate(present):
        mask = classes == k
        label = names[k] if names and 0 <= k < len(names) else str(k)
        ax.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.6, color=cmap(i % cmap.N), label=label)
    ax.legend(markerscale=3, fontsize=7, loc="best", title=title)


def comparison_figure(runs: dict[str, tuple[GenerativeModel, Split]], n_samples: int = 10, seed: int = 0) -> Any:
    """One column per run: its test latents (shared axes and colours) above a row of its samples.

    Classes are coloured by index and the legend names them as the first run's data does when every run's data
    names them alike (else by index); runs of unlabelled data draw their points in one colour and add no class to
    the legend."""
    plt = pyplot()
    labelled = [model.data_info for model, _ in runs.values() if model.data_info.labelled]
    same = len({repr(info.vocabularies.get(LABEL)) for info in labelled}) == 1
    names = class_names(labelled[0]) if same else None
    points = {name: project_2d(posterior(model, split).mu) for name, (model, split) in runs.items()}
    everything = torch.cat([p for p, _ in points.values()])
    low, high = everything.quantile(0.005, 0).tolist(), everything.quantile(0.995, 0).tolist()
    fig, axes = plt.subplots(2, len(runs), figsize=(4.2 * len(runs), 5.6), height_ratios=[4, 1], squeeze=False)
    cmap = plt.get_cmap("tab10")
    classes: set[int] = set()
    for column, (name, (model, split)) in enumerate(runs.items()):
        (xy, (xlabel, ylabel)), ax = points[name], axes[0][column]
        labels = split.labels.cpu()
        if model.data_info.labelled:
            classes |= set(labels.tolist())
            ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.6, c=[cmap(int(k) % 10) for k in labels])
        else:
            ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.6, color="tab:gray")
        ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), xlabel=xlabel, ylabel=ylabel, title=name)
        ax.set_aspect("equal", adjustable="box")
        _sample_strip(axes[1][column], model, n_samples, seed)
    if 0 < len(classes) <= 10:  # beyond, colours repeat (class mod 10) and a legend would not tell them apart
        handles = [
            plt.Line2D([], [], marker="o", ls="", color=cmap(k % 10), label=names[k] if names else str(k))
            for k in sorted(classes)
        ]
        fig.legend(handles=handles, title="class", loc="center right", fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.95, 1))
    return fig


def _sample_strip(ax, model: GenerativeModel, n: int, seed: int) -> None:
    """A row of at most ``n`` prior samples, titled with what the row shows; vectors (n, F) as a heatmap of a row
    per sample, its colours spanning the run's own samples."""
    torch.manual_seed(seed)
    images, title = strip_samples(model, n)
    if model.data_info.is_vectors:
        show_heatmap(ax, images)
    else:
        show_grid(ax, images, ncol=images.shape[0])
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)


def strip_samples(model: GenerativeModel, n: int) -> tuple[torch.Tensor, str]:
    """Samples for one row: images (n, C, H, W) in [0, 1] or vectors (n, F) in the data's units, and its title.

    A model conditioned on the label shows one sample of each class, of at most ``n`` classes spread
    evenly (its other columns at class 0 or their training mean), since the class is what one
    compares across runs; any other model
    shows its sample grid's first row: ``n`` draws, or a continuous column's ``n`` values.
    """
    conditions = model.conditioner
    if conditions is None or conditions.num_classes is None:
        images, _, columns, _, _ = sample_images(model, n)
        return images[:n], "samples" + (f" ({columns[0]} to {columns[-1]})" if columns else "")
    others = {c: default_value(p) for c, p in zip(conditions.columns, conditions.parts, strict=True) if c != LABEL}
    grid = sample_images(model, 1, fixed=others, rows=n)
    if grid.title is None and LABEL not in model.data_info.vocabularies:
        return grid.images, f"samples (classes 0-{len(grid.images) - 1})"
    shown = ", ".join(label.removeprefix("class ") for label in grid.row_labels)
    of = "" if grid.title is None else f" of {conditions.num_classes:,}"
    return grid.images, f"samples (classes {shown}{of})"
