"""Pictures that look inside a trained model: the 2-D latent manifold, interpolations, counterfactual transfer.

The manifold and interpolations decode chosen latent codes instead of random
draws from the prior, so what they show is the decoder itself: how smoothly it
maps the latent space onto images. A request that cannot be drawn (a grid of a
3-D latent, an image index past the split) is a :class:`~genreg.errors.UsageError`;
a condition the model does not know, a :class:`~genreg.errors.ConditionError`.

Vectors (a table's rows) are drawn as heatmap rows (:mod:`~genreg.viz.heatmaps`), in the order the
images of a grid would be: the manifold as n blocks of n rows (one block per z2, z1 growing in each),
an interpolation as sample a, the path, sample b; transfer as a block per target.

Samples of a split are in the model's units (after the dataset's ``transform``): they are encoded as they are
(``units="model"``) and every picture shows them, and what is decoded, in the data's units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from genreg.data.splits import LABEL, DataInfo, Split
from genreg.errors import ConditionError, UsageError
from genreg.model.conditions import Conditions
from genreg.model.generative import GenerativeModel
from genreg.viz.figures import check_grid, grid_figure
from genreg.viz.heatmaps import heatmap_figure
from genreg.viz.samples import Value, value_label

#: The manifold spans these prior probabilities: the ends are left out because Phi^-1(0) and
#: Phi^-1(1) are infinite, and 5%..95% (as in Kingma & Welling's figures) covers where the prior has mass.
MANIFOLD_P_RANGE = (0.05, 0.95)


def manifold_latents(n: int) -> torch.Tensor:
    """The (n*n, 2) latent codes of the classic VAE manifold picture (Kingma & Welling 2014), in grid order.

    Spacing the grid by the N(0, 1) prior's quantiles (not evenly in z) gives every cell the same
    prior mass, so the picture shows what the decoder makes of the whole prior. Rows run from high
    to low z2 and columns from low to high z1, so that z2 increases upwards in the picture.
    """
    if n < 2:
        raise UsageError(f"the manifold grid needs n >= 2 points per side, got {n}.")
    p = torch.linspace(*MANIFOLD_P_RANGE, n, dtype=torch.float64)
    q = torch.distributions.Normal(0.0, 1.0).icdf(p).float()
    z1, z2 = torch.meshgrid(q, q.flip(0), indexing="xy")  # z1 varies along a row, z2 down the rows
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)


def manifold_figure(model: GenerativeModel, n: int = 15, fixed: Mapping[str, Value] | None = None) -> Any:
    """The n x n manifold grid decoded, for a conditional model all under one condition.

    That condition is ``fixed``; a model conditioned on the label needs its class
    there, because no class is a fair default for a picture of one class's
    manifold. Other columns left out take class 0 or their training mean. Vectors: a heatmap of n blocks of
    n rows, a block per z2 (top: highest), z1 growing down each block.
    """
    images, z = manifold_images(model, n, fixed)
    info = model.data_info
    if info.is_vectors:
        blocks = [(f"z2={value:+.2f}", n) for value in z[::n, 1].tolist()]
        ylabel = f"z1 from {z[0, 0]:.2f} to {z[n - 1, 0]:.2f} in each block"
        under = f" as {value_label(LABEL, fixed[LABEL], info)}" if fixed and LABEL in fixed else ""
        title = f"latent grid decoded{under}: {n} x {n} codes"
        return heatmap_figure(images, blocks, ylabel, title, profile=False, features=info.features)
    return grid_figure(images, ncol=n)


def manifold_images(
    model: GenerativeModel, n: int = 15, fixed: Mapping[str, Value] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`manifold_figure` draws: the decoded images (n*n, C, H, W) in [0, 1], or vectors (n*n, F) in the
    data's units, and their codes (n*n, 2)."""
    dim = model.latent.dim
    if dim != 2:
        raise UsageError(
            f"the latent manifold (--grid) needs a 2-D latent, but this model's latent has {dim} dimensions; "
            "train a model with latent_dim 2 (e.g. --set model.latent_dim=2)."
        )
    fixed = dict(fixed or {})
    refuse_unread(model, fixed)
    classes = model.conditioner.num_classes if model.conditional else None
    if classes is not None and LABEL not in fixed:
        raise UsageError(f"this model is conditional: pass --label with a class in 0..{classes - 1}.")
    check_grid(n, n, model.data_info.image_shape)
    z = manifold_latents(n).to(model.device)
    condition = model.checked(model.conditioner.constant(len(z), fixed)) if model.conditional else None
    with model.evaluating():
        return model.decode(z, condition), z


def interpolation_latents(z_a: torch.Tensor, z_b: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` evenly spaced codes (steps, dim) on the straight line from z_a to z_b, both included.

    Written as (1 - t) z_a + t z_b so that the end points are z_a and z_b exactly.
    """
    if steps < 2:
        raise UsageError(f"an interpolation needs steps >= 2 (its two end points), got {steps}.")
    z_a, z_b = z_a.reshape(-1), z_b.reshape(-1)
    if z_a.shape != z_b.shape:
        raise ValueError(f"z_a and z_b must have the same size, got {z_a.numel()} and {z_b.numel()}.")
    t = torch.linspace(0.0, 1.0, steps, dtype=z_a.dtype, device=z_a.device).unsqueeze(1)
    return (1 - t) * z_a + t * z_b


def interpolation_figure(
    model: GenerativeModel, split: Split, a: int, b: int, steps: int = 10, fixed: Mapping[str, Value] | None = None
) -> Any:
    """One row: image ``a`` of ``split``, ``steps`` decodings between the two codes, image ``b``.

    Each image is encoded to its posterior mean (with its own condition for a conditional model).
    A conditional decoder needs one condition for the whole row, so that the row shows the latent
    path alone rather than a change of condition: image ``a``'s, with the columns in ``fixed``
    replaced. The row is then labelled with its class. Vectors: a heatmap of sample ``a``, the ``steps`` rows
    of the path, sample ``b``, top to bottom.
    """
    row, decode_as = interpolation_images(model, split, a, b, steps, fixed)
    info = model.data_info
    named = decode_as is not None and LABEL in decode_as and info.labelled
    row_labels = [value_label(LABEL, int(decode_as[LABEL][0]), info)] if named else None
    if info.is_vectors:
        one = info.singular
        blocks = [(f"{one} {a}", 1), (f"{steps} steps", steps), (f"{one} {b}", 1)]
        ylabel = f"decoded as {row_labels[0]}" if row_labels else "decoded"
        title = f"interpolation from {one} {a} to {one} {b}"
        return heatmap_figure(row, blocks, ylabel, title, profile=False, features=info.features)
    return grid_figure(row, ncol=steps + 2, row_labels=row_labels)


def interpolation_images(
    model: GenerativeModel, split: Split, a: int, b: int, steps: int = 10, fixed: Mapping[str, Value] | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    """What :func:`interpolation_figure` draws: its row (steps + 2, C, H, W) in [0, 1], or (steps + 2, F) vectors
    in the data's units (the split's samples, in the model's units, encoded as they are and shown in the data's),
    and the condition the codes were decoded with (None for a model that reads none)."""
    size, info = len(split), model.data_info
    for name, index in (("a", a), ("b", b)):
        if not 0 <= index < size:
            raise UsageError(
                f"{info.singular} index {name}={index} is out of range: the split has {size} {info.noun} "
                f"(0..{size - 1})."
            )
    refuse_unread(model, fixed or {})
    check_grid(1, steps + 2, model.data_info.image_shape)
    x = split.images[[a, b]].to(model.device)
    condition = model.condition_of(split, torch.tensor([a, b]))
    with model.evaluating():
        z_a, z_b = model.encode(x, condition, units="model")
        z = interpolation_latents(z_a, z_b, steps)
        decode_as = (
            None
            if condition is None
            else model.checked(row_condition(model.conditioner, condition, fixed or {}, steps))
        )
        decoded = model.decode(z, decode_as)  # the data's units
    ends = model.out_of_model(x).float()
    return torch.cat([ends[:1], decoded.float(), ends[1:]]), decode_as


def refuse_unread(model: GenerativeModel, fixed: Mapping[str, Value]) -> None:
    """Condition values for a model that reads none would be silently ignored: refuse them instead."""
    if fixed and not model.conditional:
        raise ConditionError(f"this model is not conditional: it takes no condition (got {', '.join(fixed)}).")


def row_condition(
    conditions: Conditions, condition: Mapping[str, torch.Tensor], fixed: Mapping[str, Value], steps: int
) -> dict[str, torch.Tensor]:
    """The first image's condition, ``steps`` times, with the ``fixed`` columns replaced."""
    fixed_values = conditions.constant(steps, fixed)
    return {
        column: fixed_values[column].to(values.device) if column in fixed else values[:1].repeat(steps)
        for column, values in condition.items()
    }


def transfer_figure(
    model: GenerativeModel,
    split: Split,
    targets: Mapping[str, torch.Tensor],
    headers: list[str],
    n: int = 8,
    seed: int = 0,
) -> Any:
    """Counterfactual decoding: ``n`` random images of ``split``, each re-decoded under the ``targets``.

    ``targets`` is ``{column: (T,) values}`` and ``headers`` names each of the T
    targets. One row per image: the image itself, then one column per target, all
    decoded from that image's latent code (encoded with its own condition), so the
    style stays and the condition changes. Rows are labelled with the image's own
    condition. Raises :class:`UsageError` for a model that is not conditional. Vectors: a heatmap of
    ``n + n * T`` rows, a block per target, after a block of the samples themselves (the same samples, in the
    same order, in every block), above each block's mean profile.
    """
    chosen, x, images, condition = transfer_images(model, split, targets, n, seed, len(headers))
    info = model.data_info
    if info.is_vectors:
        return transfer_heatmap(x, images, headers, info.features, info.noun)
    grid = torch.cat([x.float().unsqueeze(1), images.float()], dim=1).flatten(0, 1)
    rows = [own_label(condition, i, info) + " →" for i in range(len(chosen))]
    return grid_figure(grid, ncol=len(headers) + 1, row_labels=rows, column_labels=["image", *headers])


def transfer_heatmap(
    x: torch.Tensor,
    decoded: torch.Tensor,
    headers: list[str],
    features: Sequence[str] | None = None,
    noun: str = "vectors",
) -> Any:
    """Vectors x (n, F) and their decodings (n, T, F) under the T targets ``headers`` names, in the data's units,
    as a heatmap of T + 1 blocks of n rows (x, then each target's), above each block's mean profile; ``features``
    names the F features, ``noun`` what a row is."""
    n = len(x)
    blocks = [("as given", n), *((f"as {header}", n) for header in headers)]
    rows = torch.cat([x.float(), decoded.float().transpose(0, 1).flatten(0, 1)])
    return heatmap_figure(rows, blocks, f"the same {n} {noun} in each", "transfer", features=features)


def transfer_images(
    model: GenerativeModel, split: Split, targets: Mapping[str, torch.Tensor], n: int, seed: int, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """What :func:`transfer_figure` draws for ``count`` targets: the chosen images' indices (n,), the images
    (n, C, H, W), their decodings under each target (n, count, C, H, W) in [0, 1], and their own conditions;
    for vectors, the samples (n, F) and their decodings (n, count, F), both in the data's units (the split's
    samples, in the model's, are encoded as they are).

    Raises :class:`UsageError` for an ``n`` beyond the split's size (no image is drawn twice)."""
    if not model.conditional:
        raise UsageError("transfer decodes under another condition: this model is not conditional.")
    if not 1 <= n <= len(split):  # more were once drawn as the whole split, silently
        raise UsageError(
            f"-n {n:,}: transfer re-decodes that many different {model.data_info.noun} of the split, which has "
            f"{len(split):,}; ask for 1 to {len(split):,}."
        )
    check_grid(n, count + 1, model.data_info.image_shape)
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    x = split.images[chosen].to(model.device)
    condition = model.condition_of(split, chosen)
    with model.evaluating():
        decoded = model.transfer(x, condition, targets, units="model")
    decoded = model.out_of_model(decoded.flatten(0, 1)).view(decoded.shape)
    return chosen, model.out_of_model(x), decoded, condition


def own_label(condition: Mapping[str, torch.Tensor], i: int, info: DataInfo | None = None) -> str:
    """Image ``i``'s own condition, every column, its classes named by ``info`` (the model's data; see
    :func:`~genreg.viz.samples.value_label`): ``class 7, ink=0.123``, ``CD14+ Monocyte, batch=b2``."""
    return ", ".join(value_label(column, values[i].item(), info) for column, values in condition.items())
