"""The pictures people draw to look inside a trained model: the 2-D latent manifold and interpolations.

Both decode chosen latent codes instead of random draws from the prior, so what they show is the
decoder itself: how smoothly it maps the latent space onto images. Input a user controls (grid size,
label, image indices, steps) is checked up front and reported as a :class:`SpecError`, which the CLI
prints as one paragraph and exits with code 2.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genreg.data import LABEL, Split
from genreg.errors import SpecError
from genreg.model import GenerativeModel
from genreg.pictures import save_grid

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


def save_manifold(model: GenerativeModel, path: str | Path, n: int = 15, label: int | None = None) -> Path:
    """Decode the n x n manifold grid (for a conditional model, all of class ``label``) into a PNG."""
    dim = model.latent.dim
    if dim != 2:
        raise SpecError(
            f"the latent manifold (--grid) needs a 2-D latent, but this model's latent has {dim} dimensions; "
            "train a model with latent_dim 2 (e.g. --set model.latent_dim=2)."
        )
    check_label(model, label, required=True)
    z = manifold_latents(n).to(model.device)
    labels = None if label is None else torch.full((z.shape[0],), label, dtype=torch.long, device=z.device)
    with model.evaluating():
        images = model.decode(z, labels)
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
) -> Path:
    """One row: image ``a`` of ``split``, ``steps`` decodings between the two codes, image ``b``.

    Each image is encoded to its posterior mean (with its own label for a conditional model). A
    conditional decoder needs one class for the whole row, so that the row shows the latent path
    alone rather than a class switch: ``label`` if given, else image ``a``'s label. The row is then
    labelled with that class.
    """
    size = len(split)
    for name, index in (("a", a), ("b", b)):
        if not 0 <= index < size:
            raise SpecError(f"image index {name}={index} is out of range: the split has {size} images (0..{size - 1}).")
    check_label(model, label, required=False)

    x = split.images[[a, b]].to(model.device)
    condition = model.condition_of(split, torch.tensor([a, b]))
    with model.evaluating():
        z_a, z_b = model.encode(x, condition)
        z = interpolation_latents(z_a, z_b, steps)
        decode_as = None  # image a's condition, with the class replaced by ``label`` if given
        if condition is not None:
            decode_as = {column: values[:1].repeat(steps) for column, values in condition.items()}
            if label is not None:
                decode_as[LABEL] = torch.full((steps,), label, dtype=torch.long, device=model.device)
        decoded = model.decode(z, decode_as)
    row = torch.cat([x[:1].float(), decoded.float(), x[1:].float()])
    row_labels = None if decode_as is None or LABEL not in decode_as else [f"class {int(decode_as[LABEL][0])}"]
    return save_grid(row, path, ncol=steps + 2, row_labels=row_labels)


def check_conditional(model: GenerativeModel) -> None:
    """Transfer decodes under another condition, which only a conditional model has."""
    if not model.conditional:
        raise SpecError("transfer decodes under another condition: this model is not conditional.")


def transfer_targets(model: GenerativeModel, to: str) -> list[int]:
    """The classes ``--to`` names: ``all`` or one class K."""
    k = model.data_info.num_classes
    if to == "all":
        return list(range(k))
    if not to.isdecimal() or int(to) >= k:
        raise SpecError(f"--to {to}: must be 'all' or a class in 0..{k - 1}.")
    return [int(to)]


def save_transfer(
    model: GenerativeModel, split: Split, path: str | Path, n: int = 8, to: str = "all", seed: int = 0
) -> Path:
    """Counterfactual decoding: ``n`` random images of ``split``, each re-decoded under the target classes.

    One row per image: the image itself, then one column per target class, all decoded from that
    image's latent code (encoded with its own label), so the style stays and the class changes.
    """
    check_conditional(model)
    targets = transfer_targets(model, to)
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    x = split.images[chosen].to(model.device)
    with model.evaluating():
        images = model.transfer(x, model.condition_of(split, chosen), torch.tensor(targets))
    grid = torch.cat([x.float().unsqueeze(1), images.float()], dim=1).flatten(0, 1)
    rows = [f"{int(label)} →" for label in split.labels[chosen]]
    return save_grid(grid, path, ncol=len(targets) + 1, row_labels=rows)


def check_label(model: GenerativeModel, label: int | None, required: bool) -> None:
    """A conditional model takes a class in 0..K-1 (needs one if ``required``); others take none."""
    k = model.data_info.num_classes
    if not model.conditional:
        if label is not None:
            raise SpecError(f"--label {label}: this model is not conditional; leave --label out.")
        return
    if label is None:
        if required:
            raise SpecError(f"this model is conditional: pass --label with a class in 0..{k - 1}.")
        return
    if not 0 <= label < k:
        raise SpecError(f"--label {label}: must be a class in 0..{k - 1}.")
