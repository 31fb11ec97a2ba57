"""The numbers behind each picture, for ``-o FILE.npz`` (:func:`~genreg.viz.figures.save_arrays`).

Each function takes the arguments of the picture function of the same name and
returns what it would draw as tensors by name: images as float32 ``images`` (N, C, H, W)
in [0, 1], or vectors as float32 ``x`` (N, F) in the data's units (the name a ``.npz``
dataset gives them; a dataset's ``transform`` inverted), each beside its condition, one value per sample and
column. A class column is its class indices; one whose classes the data names (a vocabulary: strings, ids)
comes with ``<column>_names``, the names in class order (``label_names[label]`` is each sample's class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from genreg.data.splits import Split
from genreg.evaluation.metrics import posterior
from genreg.model.generative import GenerativeModel
from genreg.viz.explore import interpolation_images, manifold_images, transfer_images
from genreg.viz.samples import MAX_ROWS, Value, sample_images

Arrays = dict[str, torch.Tensor | np.ndarray]


def samples_arrays(
    model: GenerativeModel,
    n: int = 8,
    fixed: Mapping[str, Value] | None = None,
    classes: Sequence[int] | None = None,
    rows: int = MAX_ROWS,
) -> Arrays:
    """:func:`~genreg.viz.samples.samples_figure`'s samples (``images`` or ``x``: see :func:`samples_key`) and each
    one's condition column by column."""
    grid = sample_images(model, n if model.conditional else n * n, fixed, classes, rows)
    return named(model, {samples_key(model): grid.images, **grid.conditions})


def manifold_arrays(model: GenerativeModel, n: int = 15, fixed: Mapping[str, Value] | None = None) -> Arrays:
    """:func:`~genreg.viz.explore.manifold_figure`'s samples, row by row, and their latent codes ``z`` (n*n, 2)."""
    images, z = manifold_images(model, n, fixed)
    return named(model, {samples_key(model): images, "z": z, **_repeated(model, len(z), fixed)})


def interpolation_arrays(
    model: GenerativeModel, split: Split, a: int, b: int, steps: int = 10, fixed: Mapping[str, Value] | None = None
) -> Arrays:
    """:func:`~genreg.viz.explore.interpolation_figure`'s row: sample a, the ``steps`` decodings, sample b, and the
    condition the decodings share (``steps`` values per column)."""
    row, condition = interpolation_images(model, split, a, b, steps, fixed)
    return named(model, {samples_key(model): row, **(condition or {})})


def transfer_arrays(
    model: GenerativeModel,
    split: Split,
    targets: Mapping[str, torch.Tensor],
    headers: list[str],
    n: int = 8,
    seed: int = 0,
) -> Arrays:
    """:func:`~genreg.viz.explore.transfer_figure`'s numbers: ``images`` (n*T, C, H, W), image i's decodings under
    the T targets in rows i*T..i*T+T-1, with ``index`` (n*T,) the split's image each came from and every column
    it was decoded with; ``originals`` (n, C, H, W) are those images, ``original_index`` (n,) their indices.
    For vectors, ``x`` (n*T, F) and ``originals`` (n, F), in the data's units."""
    chosen, x, decoded, condition = transfer_images(model, split, targets, n, seed, len(headers))
    count = decoded.shape[1]
    under = {
        column: targets[column].reshape(-1).to(values.device).repeat(len(chosen))
        if column in targets
        else values.repeat_interleave(count)
        for column, values in condition.items()
    }
    arrays = {
        samples_key(model): decoded.flatten(0, 1),
        "index": chosen.repeat_interleave(count),
        **under,
        "originals": x,
        "original_index": chosen,
    }
    return named(model, arrays)


def latent_arrays(model: GenerativeModel, split: Split) -> Arrays:
    """:func:`~genreg.viz.latent.latent_scatter_figure`'s numbers: the posterior means ``mu`` (N, latent_dim) of
    the split's images (all dimensions, not the two drawn) and every column of the split (N,)."""
    return named(model, {"mu": posterior(model, split).mu, **split.condition()})


def samples_key(model: GenerativeModel) -> str:
    """The name of the decoded samples: ``images`` (N, C, H, W) in [0, 1], or for vectors ``x`` (N, F) in the
    data's units, as a ``.npz`` dataset names them."""
    return "x" if model.data_info.is_vectors else "images"


def named(model: GenerativeModel, arrays: Arrays) -> Arrays:
    """``arrays`` with ``<column>_names`` (K,) beside each class column whose classes the model's data names (a
    vocabulary): the value of each class, in class order, as text; and ``features`` (F,), the name of each
    feature of vectors whose data names them (the columns of ``x``, in order)."""
    vocabularies = model.data_info.vocabularies
    names = {
        f"{column}_names": np.array(model.data_info.class_names(column))
        for column in arrays
        if column in vocabularies and f"{column}_names" not in arrays
    }
    if model.data_info.features is not None and "features" not in arrays:
        names["features"] = np.array(model.data_info.features)
    return {**arrays, **names}


def _repeated(model: GenerativeModel, count: int, fixed: Mapping[str, Value] | None) -> Arrays:
    """The one condition a manifold is decoded under, ``count`` times (nothing for a model that reads none)."""
    return model.conditioner.constant(count, dict(fixed or {})) if model.conditional else {}
