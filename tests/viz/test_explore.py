"""Tests genreg/viz/explore.py: the latent manifold and interpolation pictures: which codes they decode, in
which order, and their errors.

Stub parts make the codes visible: the stub encoder's code is an image's first two pixels (plus its
label for a conditional model), and the stub decoder writes z (and the class it was asked for) into
the logits of the first pixels, so a decoded picture can be read back as the codes that made it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import genreg
import genreg.viz.explore as explore
from genreg.cli.arguments import check_label
from genreg.errors import ConditionError, UsageError
from genreg.viz.explore import interpolation_figure, interpolation_latents, manifold_figure, manifold_latents
from genreg.viz.figures import grid_figure, save_figure
from genreg_builtin.conditioners import OneHot, OneHotConfig

SHAPE = (1, 8, 8)
CLASSES = 3
# Phi^-1 at 0.05, 0.275, 0.5, 0.725, 0.95 (scipy.stats.norm.ppf).
QUANTILES_5 = torch.tensor([-1.6448536, -0.5977601, 0.0, 0.5977601, 1.6448536])


class StubEncoder(nn.Module):
    """Features = the first two pixels, shifted by the class index when conditional."""

    out_features = 2

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        features = x.flatten(1)[:, :2]
        if condition is not None:
            features = features + condition.argmax(1, keepdim=True).float()
        return features


class IdentityLatent(nn.Module):
    """z = features (posterior mean too); prior N(0, I)."""

    dim = 2
    provides: tuple[str, ...] = ()

    def forward(self, features: torch.Tensor) -> genreg.LatentSample:
        return genreg.LatentSample(features)

    def mean(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def sample_prior(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.randn(n, self.dim, device=device)


class StubDecoder(nn.Module):
    """Logits: z in pixels 0 and 1, the asked class index in pixel 2, zeros elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # a model needs one parameter (its device)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        logits = torch.zeros(z.shape[0], SHAPE[0] * SHAPE[1] * SHAPE[2])
        logits[:, :2] = z * self.scale
        if condition is not None:
            logits[:, 2] = condition.argmax(1).float()
        return logits.reshape(z.shape[0], *SHAPE)


def stub_model(conditional: bool = False) -> genreg.GenerativeModel:
    return genreg.GenerativeModel(
        encoder=StubEncoder(),
        latent=IdentityLatent(),
        decoder=StubDecoder(),
        conditioner=OneHot(OneHotConfig(), num_classes=CLASSES) if conditional else None,
        losses=[],
        data=genreg.DataInfo(SHAPE, CLASSES),
    )


def codes_of(images: torch.Tensor) -> torch.Tensor:
    """The z a stub decoder was given, read back from its pixel means."""
    return torch.logit(images.flatten(1)[:, :2].double())


def class_of(images: torch.Tensor) -> list[int]:
    """The class a stub decoder was asked for, read back from pixel 2."""
    return torch.logit(images.flatten(1)[:, 2].double()).round().long().tolist()


def toy_split(n: int = 6) -> genreg.Split:
    """Images whose first two pixels (the stub codes) are known, labels 0, 1, 2, 0, 1, 2, ..."""
    images = torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(0))
    return genreg.Split(images, torch.arange(n) % CLASSES)


@pytest.fixture
def grids(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every call to grid_figure from genreg.viz.explore, recorded; the figure is still drawn."""
    calls: list[dict] = []

    def record(images: torch.Tensor, ncol: int, row_labels: list[str] | None = None) -> object:
        calls.append({"images": images.detach().cpu(), "ncol": ncol, "row_labels": row_labels})
        return grid_figure(images, ncol=ncol, row_labels=row_labels)

    monkeypatch.setattr(explore, "grid_figure", record)
    return calls


def png_size(path: Path) -> tuple[int, int]:
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


# ---------------------------------------------------------------- manifold


def test_manifold_latents_are_prior_quantiles_in_picture_order() -> None:
    z = manifold_latents(5)
    assert z.shape == (25, 2) and z.dtype == torch.float32
    grid = z.reshape(5, 5, 2)  # [row, column, dim]
    for row in range(5):
        torch.testing.assert_close(grid[row, :, 0], QUANTILES_5)  # z1 increases along each row
        torch.testing.assert_close(grid[row, :, 1], torch.full((5,), float(QUANTILES_5[4 - row])))  # z2 drops
    torch.testing.assert_close(z[0], torch.tensor([-1.6448536, 1.6448536]))  # top left: low z1, high z2
    torch.testing.assert_close(z[-1], torch.tensor([1.6448536, -1.6448536]))


@pytest.mark.parametrize("n", [2, 4, 15])
def test_manifold_latents_are_symmetric_and_equal_in_prior_mass(n: int) -> None:
    z = manifold_latents(n)
    q = z[:n, 0]
    torch.testing.assert_close(q, -q.flip(0))
    p = torch.distributions.Normal(0.0, 1.0).cdf(q)
    torch.testing.assert_close(p, torch.linspace(0.05, 0.95, n), atol=1e-6, rtol=0)
    assert len({tuple(point) for point in z.tolist()}) == n * n


def test_manifold_latents_needs_two_points_per_side() -> None:
    with pytest.raises(UsageError, match="n >= 2"):
        manifold_latents(1)


def test_manifold_figure_decodes_the_grid_in_order(tmp_path: Path, grids: list[dict]) -> None:
    path = save_figure(manifold_figure(stub_model(), n=4), tmp_path / "manifold.png")
    assert path == tmp_path / "manifold.png"
    (call,) = grids
    assert call["ncol"] == 4 and call["images"].shape == (16, *SHAPE)
    torch.testing.assert_close(codes_of(call["images"]), manifold_latents(4).double(), atol=1e-4, rtol=0)
    width, height = png_size(path)
    assert width > 100 and height > 100


def test_manifold_figure_of_a_conditional_model_decodes_the_label(tmp_path: Path, grids: list[dict]) -> None:
    save_figure(manifold_figure(stub_model(conditional=True), n=3, fixed={"label": 2}), tmp_path / "m.png")
    assert class_of(grids[0]["images"]) == [2] * 9


def test_manifold_figure_of_a_built_vae_writes_a_png_that_grows_with_n(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = genreg.build_model({"type": "vae", "latent_dim": 2}, genreg.DataInfo(SHAPE, CLASSES)).train()
    small, large = (
        png_size(save_figure(manifold_figure(model, n=4), tmp_path / "4.png")),
        png_size(save_figure(manifold_figure(model, n=8), tmp_path / "8.png")),
    )
    assert small[0] > 50 and large[0] > small[0] and large[1] > small[1]
    assert model.training  # the caller's mode is restored


def test_manifold_figure_needs_a_2d_latent(tmp_path: Path) -> None:
    model = genreg.build_model({"type": "vae", "latent_dim": 3}, genreg.DataInfo(SHAPE, CLASSES))
    with pytest.raises(UsageError, match=r"needs a 2-D latent.*has 3 dimensions"):
        save_figure(manifold_figure(model), tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()


def test_manifold_figure_label_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"conditional: pass --label with a class in 0\.\.2"):
        save_figure(manifold_figure(stub_model(conditional=True)), tmp_path / "m.png")
    # --label is checked where the command line is read; a bad class in `fixed` by the model itself.
    with pytest.raises(UsageError, match="not conditional"):
        check_label(stub_model(), 1)
    for label in (-1, CLASSES):
        with pytest.raises(UsageError, match=rf"--label {label}: must be a class in 0\.\.2"):
            check_label(stub_model(conditional=True), label)
        with pytest.raises(ConditionError, match=rf"column 'label' has class {label}, .* classes 0\.\.2"):
            manifold_figure(stub_model(conditional=True), fixed={"label": label})
    assert not (tmp_path / "m.png").exists()


# ---------------------------------------------------------------- interpolation


def test_interpolation_latents_run_evenly_along_the_line() -> None:
    z_a, z_b = torch.tensor([0.3, -1.7, 2.0]), torch.tensor([-0.9, 0.4, 2.5])
    z = interpolation_latents(z_a, z_b, 7)
    assert z.shape == (7, 3)
    assert torch.equal(z[0], z_a) and torch.equal(z[-1], z_b)  # exactly
    steps = z.diff(dim=0)
    torch.testing.assert_close(steps, ((z_b - z_a) / 6).expand(6, 3))  # evenly spaced, on the line


def test_interpolation_latents_need_two_steps() -> None:
    with pytest.raises(UsageError, match="steps >= 2"):
        interpolation_latents(torch.zeros(2), torch.ones(2), 1)


def test_interpolation_figure_row_is_a_then_the_line_then_b(tmp_path: Path, grids: list[dict]) -> None:
    model, split = stub_model(), toy_split()
    path = save_figure(interpolation_figure(model, split, 1, 4, steps=5), tmp_path / "i.png")
    (call,) = grids
    row = call["images"]
    assert call["ncol"] == 7 and row.shape == (7, *SHAPE) and call["row_labels"] is None
    assert torch.equal(row[0], split.images[1]) and torch.equal(row[-1], split.images[4])
    codes = split.images.flatten(1)[[1, 4], :2]
    expected = interpolation_latents(codes[0], codes[1], 5).double()
    torch.testing.assert_close(codes_of(row[1:-1]), expected, atol=1e-4, rtol=0)
    width, height = png_size(path)
    assert width > 100 and height > 10


def test_interpolation_figure_of_a_built_vae_ends_at_the_reconstructions(tmp_path: Path, grids: list[dict]) -> None:
    torch.manual_seed(0)
    model = genreg.build_model({"type": "vae", "latent_dim": 2}, genreg.DataInfo(SHAPE, CLASSES)).eval()
    split = toy_split()
    save_figure(interpolation_figure(model, split, 0, 5, steps=4), tmp_path / "i.png")
    row = grids[0]["images"]
    torch.testing.assert_close(row[1], model.decode(model.encode(split.images[:1]))[0])
    torch.testing.assert_close(row[-2], model.decode(model.encode(split.images[5:6]))[0])
    assert png_size(tmp_path / "i.png")[0] > 100


def test_interpolation_figure_conditional_encodes_with_own_labels(tmp_path: Path, grids: list[dict]) -> None:
    model, split = stub_model(conditional=True), toy_split()  # image 1 has label 1, image 5 label 2
    save_figure(interpolation_figure(model, split, 1, 5, steps=3), tmp_path / "own.png")
    save_figure(interpolation_figure(model, split, 1, 5, steps=3, fixed={"label": 0}), tmp_path / "asked.png")
    own, asked = grids
    codes = split.images.flatten(1)[[1, 5], :2] + torch.tensor([[1.0], [2.0]])  # each shifted by its own label
    torch.testing.assert_close(
        codes_of(own["images"][1:-1]), interpolation_latents(codes[0], codes[1], 3).double(), atol=1e-4, rtol=0
    )
    assert class_of(own["images"][1:-1]) == [1, 1, 1] and own["row_labels"] == ["class 1"]  # image a's label
    assert class_of(asked["images"][1:-1]) == [0, 0, 0] and asked["row_labels"] == ["class 0"]


def test_interpolation_figure_errors(tmp_path: Path) -> None:
    split, path = toy_split(6), tmp_path / "i.png"
    for a, b in ((-1, 2), (0, 6)):
        with pytest.raises(UsageError, match=r"out of range: the split has 6 images \(0\.\.5\)"):
            save_figure(interpolation_figure(stub_model(), split, a, b), path)
    with pytest.raises(UsageError, match="steps >= 2"):
        save_figure(interpolation_figure(stub_model(), split, 0, 1, steps=1), path)
    # --label is checked where the command line is read; a bad class in `fixed` by the model itself.
    with pytest.raises(UsageError, match="not conditional"):
        check_label(stub_model(), 0)
    with pytest.raises(UsageError, match=r"--label 3: must be a class in 0\.\.2"):
        check_label(stub_model(conditional=True), 3)
    with pytest.raises(ConditionError, match=r"column 'label' has class 3, .* classes 0\.\.2"):
        save_figure(interpolation_figure(stub_model(conditional=True), split, 0, 1, fixed={"label": 3}), path)
    assert not path.exists()


# ---------------------------------------------------------------- transfer


def test_transfer_refuses_more_images_than_the_split_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """`transfer -n 1000000000` silently drew the whole split (1,000 rows, 60,044 pixels tall) in 29 s."""
    model, targets = stub_model(conditional=True), {"label": torch.tensor([0, 1])}
    monkeypatch.setattr(explore, "grid_figure", lambda *a, **k: pytest.fail("drawn"))
    with pytest.raises(UsageError, match=r"-n 7: transfer re-decodes that many different images of the split, which"):
        explore.transfer_figure(model, toy_split(6), targets, ["0", "1"], n=7)
    chosen, x, decoded, _ = explore.transfer_images(model, toy_split(6), targets, n=6, seed=0, count=2)
    assert sorted(chosen.tolist()) == list(range(6)) and decoded.shape == (6, 2, *SHAPE)
