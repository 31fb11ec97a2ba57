"""Vectors drawn: samples of F features as a heatmap (rows: samples in labelled blocks, columns: features 0..F-1)
above each block's mean profile, one line per block (per class, say).

Vectors hold any finite real values in the data's units, not [0, 1], so the colours span the values drawn: a
diverging colormap centred on 0 for values well on both sides of it (standardised data, fold changes), else a
sequential one over their range. Samples are drawn as given: the pictures of :mod:`~genreg.viz.samples` and
:mod:`~genreg.viz.explore` give them in the data's units (a dataset's ``transform`` inverted), so the colorbar is
too. Features are named on the x axis when the data names them (a table's columns: ``DataInfo.features``), else
indexed 0..F-1. Of many features (765 genes) only the :data:`SHOWN_FEATURES` that tell the blocks apart most are
drawn, as a marker-gene heatmap does: those whose block means vary most (with one block, whose values do); the
title says how many of how many.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from genreg.viz.figures import pyplot

Block = tuple[str, int]  # consecutive rows of a heatmap: their label and their number

#: The share of the values drawn that the colours span; values beyond take the end colours (the colorbar's arrows),
#: so that a few outliers do not wash out every other row.
COLOR_QUANTILES = (0.01, 0.99)
#: Values on both sides of 0 get a diverging colormap centred on 0 when the smaller side reaches this share of the
#: larger: standardised data do; raw intensities a little below 0 from noise do not.
DIVERGING_SHARE = 0.25
#: Profiles (blocks) that get a colour and legend entry each; more are coloured along a colormap, without a legend.
MAX_LEGEND = 20
#: Block labels written on the y axis; past this, every k-th.
MAX_TICKS = 40
#: Features that each get a tick on the x axis; past this, about ten ticks.
MAX_FEATURE_TICKS = 25
#: Named features that each get their name on the x axis; past this, every k-th, about :data:`NAMED_TICKS` names.
MAX_FEATURE_NAMES, NAMED_TICKS = 40, 20
#: A feature name longer than this is cut, ending in an ellipsis, so the axis stays readable.
NAME_CHARS = 18
#: Past this many features a heatmap draws only the :data:`SHOWN_FEATURES` that differ most between its blocks.
MAX_FEATURES, SHOWN_FEATURES = 60, 40
WIDTH, PROFILE_HEIGHT, ROW_HEIGHT = 7.5, 2.0, 0.08  # inches: the figure's, a profile's, a heatmap row's


class ColorScale(NamedTuple):
    """A heatmap's colormap, the values at its ends, and which ends values pass (the colorbar's ``extend``)."""

    cmap: str
    vmin: float
    vmax: float
    extend: str


def color_scale(values: torch.Tensor) -> ColorScale:
    """The colours of ``values`` (any shape, the data's units): ``RdBu_r`` centred on 0 for values well on both
    sides of it (:data:`DIVERGING_SHARE`), else ``viridis``; either spanning :data:`COLOR_QUANTILES` of them."""
    import numpy as np

    finite = values.detach().float().cpu().numpy().ravel()
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return ColorScale("viridis", 0.0, 1.0, "neither")
    low, high = (float(q) for q in np.quantile(finite, COLOR_QUANTILES))
    if low < 0 < high and min(-low, high) >= DIVERGING_SHARE * max(-low, high):
        cmap, low, high = "RdBu_r", -max(-low, high), max(-low, high)
    else:
        cmap = "viridis"
        if high <= low:  # every value the same: a range around it, so that the colorbar can be drawn
            low, high = low - 0.5, high + 0.5
    below, above = bool(finite.min() < low), bool(finite.max() > high)
    return ColorScale(cmap, low, high, {(0, 0): "neither", (1, 0): "min", (0, 1): "max"}.get((below, above), "both"))


def show_heatmap(ax: Any, vectors: torch.Tensor, scale: ColorScale | None = None) -> Any:
    """Draw vectors (N, F) in the data's units on ``ax``: a row per sample, a column per feature, coloured by
    ``scale`` (:func:`color_scale` of the vectors by default). Returns matplotlib's image, for a colorbar."""
    values = vectors.detach().float().cpu()
    scale = scale or color_scale(values)
    return ax.imshow(values.numpy(), aspect="auto", cmap=scale.cmap, vmin=scale.vmin, vmax=scale.vmax)


def heatmap_figure(
    vectors: torch.Tensor,
    blocks: Sequence[Block] | None = None,
    ylabel: str = "sample",
    title: str | None = None,
    profile: bool = True,
    features: Sequence[str] | None = None,
) -> Any:
    """Vectors (N, F) in the data's units as a heatmap with a colorbar, above (with ``profile``) each block's mean
    over its rows, one line per block, against the same feature axis.

    ``blocks`` splits the N rows, in order, into labelled runs (a class's samples): each label is written at its
    block's middle and a rule drawn between blocks. Without blocks, rows are numbered and the profile is the mean
    of all of them. ``ylabel`` says what the rows are, ``title`` goes above. ``features`` names the F features
    on the x axis (see :func:`feature_ticks`); without names, they are indexed. Of more than
    :data:`MAX_FEATURES` features, only the :data:`SHOWN_FEATURES` of :func:`telling_features` are drawn.
    """
    plt = pyplot()
    values = vectors.detach().float().cpu()
    if values.shape[1] > MAX_FEATURES:
        kept = telling_features(values, blocks)
        names = [str(k) for k in range(values.shape[1])] if features is None else list(features)
        values, features = values[:, kept], [names[k] for k in kept.tolist()]
        shown = f"the {len(kept)} of {len(names)} features whose {'block means' if blocks else 'values'} vary most"
        title = f"{title}\n{shown}" if title else shown
    heights = [min(max(ROW_HEIGHT * len(values), 2.0), 9.0)] + ([PROFILE_HEIGHT] if profile else [])
    fig = plt.figure(figsize=(WIDTH, sum(heights) + 0.6), layout="constrained")
    grid = fig.add_gridspec(len(heights), 2, width_ratios=[40, 1], height_ratios=heights)
    ax = fig.add_subplot(grid[0, 0])
    scale = color_scale(values)
    image = show_heatmap(ax, values, scale)
    bar = fig.colorbar(image, cax=fig.add_subplot(grid[0, 1]), extend=scale.extend)
    bar.set_label("value (the data's units)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    label_rows(ax, blocks, ylabel, "k" if scale.cmap == "RdBu_r" else "w")
    if title:
        ax.set_title(title, fontsize=9)
    bottom = ax
    if profile:
        bottom = fig.add_subplot(grid[1, 0], sharex=ax)
        ax.tick_params(labelbottom=False)
        draw_profiles(bottom, values, blocks, fig.add_subplot(grid[1, 1]))
    feature_ticks(bottom, values.shape[1], features)
    return fig


def telling_features(values: torch.Tensor, blocks: Sequence[Block] | None) -> torch.Tensor:
    """The indices, in order, of the :data:`SHOWN_FEATURES` features of ``values`` (N, F) whose means over the
    blocks' rows vary most between blocks (markers of a class), or, without two blocks, whose values vary most."""
    if blocks and len(blocks) > 1:
        sizes = [size for _, size in blocks]
        spread = torch.stack([rows.mean(0) for rows in values.split(sizes)]).var(0)
    else:
        spread = values.var(0) if len(values) > 1 else values[0].abs()
    return spread.topk(min(SHOWN_FEATURES, values.shape[1])).indices.sort().values


def label_rows(ax: Any, blocks: Sequence[Block] | None, ylabel: str, rule_color: str = "w") -> None:
    """Label a heatmap's rows: each block's label at its middle (at most :data:`MAX_TICKS` of them) and, where
    that many blocks leave room, a rule between blocks; without blocks, row numbers."""
    from matplotlib.ticker import MaxNLocator

    ax.set_ylabel(ylabel, fontsize=8)
    if not blocks:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        ax.tick_params(axis="y", labelsize=7)
        return
    starts = torch.tensor([0, *(size for _, size in blocks)]).cumsum(0).tolist()
    step = -(-len(blocks) // MAX_TICKS)
    middles = [(starts[i] + starts[i + 1] - 1) / 2 for i in range(0, len(blocks), step)]
    ax.set_yticks(middles, [label for label, _ in blocks[::step]], fontsize=7)
    ax.tick_params(axis="y", length=0)
    for start in starts[1:-1] if len(blocks) <= MAX_TICKS else []:
        ax.axhline(start - 0.5, color=rule_color, linewidth=1.0)


def draw_profiles(ax: Any, vectors: torch.Tensor, blocks: Sequence[Block] | None, legend_ax: Any = None) -> None:
    """Each block's mean over its rows (F,) as a line against the feature index, in the data's units; the legend
    (at most :data:`MAX_LEGEND` entries) on ``legend_ax`` if given, an axis of its own, else on ``ax``."""
    blocks = list(blocks or [(f"mean of {len(vectors):,} samples", len(vectors))])
    plt = pyplot()
    colors = plt.get_cmap("tab10" if len(blocks) <= 10 else "tab20" if len(blocks) <= MAX_LEGEND else "viridis")
    start = 0
    for i, (label, size) in enumerate(blocks):
        color = colors(i) if len(blocks) <= MAX_LEGEND else colors(i / (len(blocks) - 1))
        ax.plot(vectors[start : start + size].mean(0).numpy(), color=color, linewidth=1.2, label=label)
        start += size
    ax.set_ylabel("mean value", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3)
    if legend_ax is not None:
        legend_ax.set_axis_off()
    if len(blocks) > MAX_LEGEND:
        ax.set_title(f"mean of each of {len(blocks):,} blocks, coloured in order", fontsize=8)
        return
    handles, labels = ax.get_legend_handles_labels()
    (legend_ax or ax).legend(handles, labels, loc="upper left", fontsize=7, frameon=False, borderaxespad=0)


def feature_ticks(ax: Any, features: int, names: Sequence[str] | None = None) -> None:
    """The x axis of a heatmap or profile of ``features`` features: with ``names`` (one per feature), each name
    up to :data:`MAX_FEATURE_NAMES` features, else every k-th (about :data:`NAMED_TICKS` of them), written
    upright and cut at :data:`NAME_CHARS` characters; without, every index up to :data:`MAX_FEATURE_TICKS`
    features, else about ten."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(-0.5, features - 0.5)
    ax.tick_params(axis="x", labelsize=7)
    if names is not None and len(names) == features:
        step = 1 if features <= MAX_FEATURE_NAMES else -(-features // NAMED_TICKS)
        shown = list(range(0, features, step))
        ax.set_xticks(shown, [_short(names[i]) for i in shown], rotation=90, fontsize=6)
        every = "" if step == 1 else f", every {_ordinal(step)} of {features:,} named"
        ax.set_xlabel(f"feature{every}", fontsize=8)
        return
    if features <= MAX_FEATURE_TICKS:
        ax.set_xticks(range(features))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
    ax.set_xlabel(f"feature (0..{features - 1})", fontsize=8)


def _ordinal(k: int) -> str:
    """``k`` as an ordinal: 3rd, 5th, 21st, 112th."""
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _short(name: str) -> str:
    """``name`` cut to :data:`NAME_CHARS` characters, the last an ellipsis, when it is longer."""
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"
