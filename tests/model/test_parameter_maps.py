"""Tests a likelihood's parameter maps (issue 18): a loss term's ``parameter_maps`` (genreg/model/losses.py) sets the
decoder's output shape at assembly (genreg/model/assembly.py) and in ``GenerativeModel``'s shape check, the
``gaussian`` likelihood with ``variance: per-sample`` reads two maps (the mean and sigma), ``decode``/``sample``/
``reconstruct`` return the sample's shape, and the ELBO and IWAE bounds of such a model are its closed forms: a
linear-Gaussian model with a sigma per feature (a constant second map), and a heteroscedastic one whose sigma moves
with z (log p(x) by quadrature over a 1-D latent).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal, kl_divergence

import genreg
from genreg.errors import AssemblyError
from genreg.evaluation import metrics as evaluation
from genreg.model.losses import LossTermConfig, likelihood_mean, parameter_maps
from genreg_builtin.latents import GaussianConfig, GaussianLatent
from genreg_builtin.losses import Gaussian, Term
from genreg_builtin.losses import GaussianConfig as GaussianTermConfig
from tests.helpers import single_thread

VECTORS, IMAGES = genreg.DataInfo((5,), 2), genreg.DataInfo((1, 4, 4), 2)
MLP = {"encoder": {"type": "mlp", "hidden": [16]}, "decoder": {"type": "mlp", "hidden": [16]}}
CONV = {"encoder": {"type": "conv", "channels": [4]}, "decoder": {"type": "conv", "channels": [4]}}
PER_SAMPLE = {"type": "gaussian", "variance": "per-sample"}


def spec(*losses: dict, recipe: str = "vae", parts: dict = MLP) -> dict:
    return {"type": recipe, "latent_dim": 2, **parts, "losses": list(losses)}


# --------------------------------------------------------------------------- the decoder emits the maps


@pytest.mark.parametrize(
    ("info", "parts", "recipe"),
    [(VECTORS, MLP, "vae"), (IMAGES, MLP, "vae"), (IMAGES, CONV, "vae"), (VECTORS, MLP, "cvae")],
    ids=["vectors-mlp", "images-mlp", "images-conv", "vectors-cvae"],
)
def test_a_per_sample_gaussian_model_decodes_two_maps_and_gives_samples_of_the_datas_shape(
    info: genreg.DataInfo, parts: dict, recipe: str
) -> None:
    torch.manual_seed(0)
    model = genreg.build_model(spec(PER_SAMPLE, {"type": "kld"}, recipe=recipe, parts=parts), info).eval()
    channels, *sides = info.image_shape
    labels = torch.tensor([0, 1, 0]) if recipe == "cvae" else None
    given = None if labels is None else {"label": labels}
    z = torch.randn(3, 2)
    output = model.decoder(z, model.condition(given))
    assert output.shape == (3, 2 * channels, *sides)  # (B, 2F) or (B, 2C, H, W): the mean, then the scale
    decoded = model.decode(z, labels)
    assert decoded.shape == (3, *info.image_shape)
    torch.testing.assert_close(decoded, output[:, :channels])  # the first map: the mean, in the data's units
    assert model.sample(3, labels=labels).shape == (3, *info.image_shape)
    x = torch.rand(3, *info.image_shape)
    assert model.reconstruct(x, labels).shape == (3, *info.image_shape)
    assert model.reconstruct(x[0], None if labels is None else labels[0]).shape == info.image_shape
    loss, terms = model.loss(x, given)
    assert torch.isfinite(loss) and set(terms) == {"gaussian", "kld"}
    # the one-sample -ELBO of the test record reads the same two maps
    test = genreg.average_losses(model, genreg.Split(x, torch.tensor([0, 1, 0])), genreg.TrainConfig(device="cpu"))
    assert test["neg_elbo"] == pytest.approx(test["gaussian"] + test["kld"], rel=1e-5)


@pytest.mark.parametrize(
    ("info", "parts", "likelihood"),
    [
        (IMAGES, CONV, {"type": "bce"}),
        (IMAGES, MLP, {"type": "mse"}),
        (VECTORS, MLP, {"type": "gaussian"}),
        (VECTORS, MLP, {"type": "gaussian", "variance": "learned"}),
    ],
)
def test_likelihoods_of_one_map_keep_a_decoder_of_the_samples_shape(
    info: genreg.DataInfo, parts: dict, likelihood: dict
) -> None:
    model = genreg.build_model(spec(likelihood, {"type": "kld"}, parts=parts), info).eval()
    assert parameter_maps(model.losses) == 1
    assert model.decoder(torch.zeros(2, 2), None).shape == (2, *info.image_shape)
    assert model.decode(torch.zeros(2, 2)).shape == (2, *info.image_shape)


def test_a_per_sample_model_saves_and_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = genreg.build_model(spec({**PER_SAMPLE, "sigma": 0.5, "min_sigma": 0.01}, {"type": "kld"}), VECTORS)
    path = genreg.save_model(model.eval(), tmp_path / "model.safetensors")
    loaded = genreg.load_model(path)
    z = torch.randn(4, 2)
    torch.testing.assert_close(loaded.decode(z), model.decode(z))
    assert loaded.losses[0].config.min_sigma == 0.01 and loaded.losses[0].parameter_maps == 2


# --------------------------------------------------------------------------- plugin terms and refusals


class PlainLikelihoodConfig(LossTermConfig):
    """A plugin likelihood that says nothing about parameter maps."""


class PlainLikelihood(Term):
    """log N(x; output, 1) without ``parameter_maps`` or ``mean``: as a plugin written before maps existed."""

    def log_likelihood(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return Normal(output.float(), 1.0).log_prob(x).flatten(1).sum(1)

    def forward(self, x: torch.Tensor, out: genreg.ModelOutput) -> torch.Tensor:
        return -self.log_likelihood(x, out.logits)


class Laplace(Term):
    """Three maps and a mean: a location, a log scale and an unused third map, to see the count flow through."""

    parameter_maps = 3

    def log_likelihood(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        location, log_scale, _ = output.float().chunk(3, dim=1)
        return torch.distributions.Laplace(location, log_scale.exp()).log_prob(x).flatten(1).sum(1)

    def forward(self, x: torch.Tensor, out: genreg.ModelOutput) -> torch.Tensor:
        return -self.log_likelihood(x, out.logits)

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return output.chunk(3, dim=1)[0]


class TwoMapsNoMean(PlainLikelihood):
    """Two maps, no mean: its likelihood reads the first map as N(x; output, 1) and ignores the second."""

    parameter_maps = 2

    def log_likelihood(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return super().log_likelihood(x, output.chunk(2, dim=1)[0])


class WrongMean(Laplace):
    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return output  # all three maps: not a sample


class ZeroMaps(PlainLikelihood):
    parameter_maps = 0


class MapTerms:
    @genreg.hookimpl
    def register_components(self, register):
        register("loss", "plain", PlainLikelihood, PlainLikelihoodConfig)
        register("loss", "laplace3", Laplace, PlainLikelihoodConfig)
        register("loss", "two-no-mean", TwoMapsNoMean, PlainLikelihoodConfig)
        register("loss", "wrong-mean", WrongMean, PlainLikelihoodConfig)
        register("loss", "zero-maps", ZeroMaps, PlainLikelihoodConfig)


@pytest.fixture
def map_terms():
    genreg.register_plugin(MapTerms(), "map-terms")
    yield
    genreg.unregister_plugin("map-terms")


def test_a_plugin_term_without_parameter_maps_reads_one_map(map_terms) -> None:
    model = genreg.build_model(spec({"type": "plain"}, {"type": "kld"}), VECTORS).eval()
    assert model.decoder(torch.zeros(2, 2), None).shape == (2, 5)
    output = model.decoder(torch.zeros(2, 2), None)
    torch.testing.assert_close(model.decode(torch.zeros(2, 2)), torch.sigmoid(output))  # read as logits, as before


def test_a_plugin_term_asks_for_its_own_number_of_maps(map_terms) -> None:
    model = genreg.build_model(spec({"type": "laplace3"}, {"type": "kld"}, parts=CONV), IMAGES).eval()
    assert model.decoder(torch.zeros(2, 2), None).shape == (2, 3, 4, 4)
    assert model.sample(2).shape == (2, 1, 4, 4)
    x = torch.rand(2, 1, 4, 4)
    result = evaluation.likelihood_bounds(model, genreg.Split(x, torch.zeros(2, dtype=torch.long)), k=5)
    assert math.isfinite(result["nll_iwae"]) and math.isfinite(result["neg_elbo"])


def test_without_a_mean_the_first_of_several_maps_is_read_as_logits(map_terms) -> None:
    model = genreg.build_model(spec({"type": "two-no-mean"}, {"type": "kld"}), VECTORS).eval()
    output = model.decoder(torch.zeros(2, 2), None)
    assert output.shape == (2, 10)
    torch.testing.assert_close(model.decode(torch.zeros(2, 2)), torch.sigmoid(output[:, :5]))
    torch.testing.assert_close(likelihood_mean(model.losses, output), torch.sigmoid(output[:, :5]))


def test_a_mean_that_is_not_of_the_samples_shape_is_refused(map_terms) -> None:
    with pytest.raises(AssemblyError, match=r"loss 'wrong-mean' \(plugin 'map-terms'\)'s mean\(output\) has shape"):
        genreg.build_model(spec({"type": "wrong-mean"}, {"type": "kld"}), VECTORS)


def test_a_parameter_maps_that_is_no_count_is_refused(map_terms) -> None:
    with pytest.raises(AssemblyError, match="loss term 'zero-maps' declares parameter_maps=0; it must be an integer"):
        genreg.build_model(spec({"type": "zero-maps"}, {"type": "kld"}), VECTORS)


def test_likelihoods_asking_for_different_maps_are_refused_naming_them() -> None:
    with pytest.raises(AssemblyError) as caught:
        genreg.build_model(spec(PER_SAMPLE, {"type": "mse"}, {"type": "kld"}), IMAGES)
    assert str(caught.value) == (
        "the loss terms ask the decoder for different numbers of parameter maps ('gaussian' reads 2, 'mse' reads 1), "
        "but the decoder has one output; use likelihood terms that read the same maps (e.g. one likelihood term only)."
    )


class MeanOnly(nn.Module):
    """A decoder that emits one map, the sample's shape, whatever the likelihood asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 5)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return self.linear(z)


def test_a_hand_built_model_whose_decoder_emits_too_few_maps_is_refused() -> None:
    term = Gaussian(GaussianTermConfig(variance="per-sample"), output_shape=(5,))
    latent = GaussianLatent(GaussianConfig(), in_features=5, dim=2)
    with pytest.raises(AssemblyError) as caught:
        genreg.GenerativeModel(encoder=Features(5), latent=latent, decoder=MeanOnly(), losses=[term], data=VECTORS)
    assert str(caught.value) == (
        "component MeanOnly returned parameters (2 maps of the likelihood, stacked along axis 1) of shape (2, 5); "
        "expected (2, 10)."
    )


# --------------------------------------------------------------------------- ELBO and IWAE: exact on small cases
# The evaluation of genreg/evaluation/metrics.py reads the decoder's whole output through the term's
# log_likelihood, unchanged; here its bounds are compared with closed forms.


class Features(nn.Module):
    """Encoder: the vector itself is the features."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_features = features

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return x.flatten(1)


def raw_for(sigma: torch.Tensor, term: Gaussian) -> torch.Tensor:
    """The raw second-map value that stands for ``sigma`` under ``term``: softplus^-1(sigma - min_sigma) - offset."""
    return torch.log(torch.expm1(sigma - term.config.min_sigma)) - term.offset


D, LATENT = 4, 2


class LinearPerSample:
    """z ~ N(0, I_2), x | z ~ N(W z + b, diag(s^2)) with s one value per feature, emitted by the decoder as its
    constant second map: x ~ N(b, W W^T + diag(s^2)), and p(z|x) = N(M (x - b), S) with S = (I + W^T D^-1 W)^-1,
    M = S W^T D^-1 (D = diag(s^2)). The encoder is q(z|x) = N(0.9 M (x - b), diag(1.5 diag S)): not the posterior,
    so that the ELBO misses log p(x) by KL(q || p(z|x)) > 0."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.w = torch.randn(D, LATENT, generator=g, dtype=torch.float64)
        self.b = torch.randn(D, generator=g, dtype=torch.float64)
        self.s = 0.3 + torch.rand(D, generator=g, dtype=torch.float64)  # sigma per feature, 0.3..1.3
        precision = torch.diag(self.s**-2)
        self.cov = torch.linalg.inv(torch.eye(LATENT, dtype=torch.float64) + self.w.T @ precision @ self.w)
        self.m = self.cov @ self.w.T @ precision
        term = Gaussian(GaussianTermConfig(variance="per-sample"), output_shape=(D,))
        latent = GaussianLatent(GaussianConfig(), in_features=D, dim=LATENT)
        decoder = nn.Linear(LATENT, 2 * D)  # (B, 2D): the mean W z + b, then the raw scale, constant in z
        with torch.no_grad():
            latent.project.weight.zero_()
            latent.project.weight[:LATENT] = 0.9 * self.m
            latent.project.bias[:LATENT] = -0.9 * self.m @ self.b
            latent.project.bias[LATENT:] = torch.log(1.5 * torch.diagonal(self.cov))
            decoder.weight.zero_()
            decoder.weight[:D] = self.w
            decoder.bias.copy_(torch.cat([self.b, raw_for(self.s, term)]))
        self.model = genreg.GenerativeModel(
            encoder=Features(D), latent=latent, decoder=Wrapped(decoder), losses=[term], data=genreg.DataInfo((D,), 3)
        ).eval()

    def draws(self, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(2)
        z = torch.randn(n, LATENT, generator=g, dtype=torch.float64)
        return z @ self.w.T + self.b + self.s * torch.randn(n, D, generator=g, dtype=torch.float64)

    def exact_nll(self, x: torch.Tensor) -> float:
        return -float(MultivariateNormal(self.b, self.w @ self.w.T + torch.diag(self.s**2)).log_prob(x).mean())

    def elbo_gap(self, x: torch.Tensor) -> float:
        exact_mean = (x - self.b) @ self.m.T
        q = MultivariateNormal(0.9 * exact_mean, torch.diag(1.5 * torch.diagonal(self.cov)))
        return float(kl_divergence(q, MultivariateNormal(exact_mean, self.cov)).mean())


class Wrapped(nn.Module):
    """A module of z alone as a decoder (which also gets the condition)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return self.module(z)


def vector_split(x: torch.Tensor) -> genreg.Split:
    return genreg.Split(x.float(), torch.zeros(len(x), dtype=torch.long))


def test_elbo_and_iwae_of_a_per_sample_gaussian_are_the_closed_forms_of_a_linear_gaussian_model() -> None:
    lg = LinearPerSample()
    x = lg.draws(30)
    result = evaluation.likelihood_bounds(lg.model, vector_split(x), k=4000, precision="fp32")
    exact, gap = lg.exact_nll(x), lg.elbo_gap(x)
    assert gap > 0.1  # the encoder is not the posterior: the test tells the IWAE from the ELBO
    # As tests/evaluation/test_metrics.py's linear-Gaussian test: an average over 30 vectors of estimates with a
    # standard deviation of ~0.01 nat each.
    assert result["nll_iwae"] == pytest.approx(exact, abs=0.03)
    assert result["neg_elbo"] == pytest.approx(exact + gap, abs=0.03)


class Heteroscedastic(nn.Module):
    """The decoder of a 1-D latent: the mean w z + b and the raw scale a z + c of every feature (F = 3), so sigma
    moves with z. The encoder's job is done by :class:`Quadrature`."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, a: torch.Tensor, c: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 6)
        with torch.no_grad():
            self.linear.weight.copy_(torch.cat([w, a])[:, None])
            self.linear.bias.copy_(torch.cat([b, c]))

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return self.linear(z)


#: z on a grid, steps of 0.005: p(z) is below 1e-31 beyond it, and the sum over a fine grid of a smooth integrand
#: that vanishes at both ends is its integral to far below the tolerances here (the trapezoid rule's error falls
#: exponentially for such functions)
GRID = torch.linspace(-12.0, 12.0, 4801, dtype=torch.float64)


class Quadrature(nn.Module):
    """Encoder: the exact posterior's mean m(x) and variance v(x), by quadrature on :data:`GRID`, as the features
    (0.9 m, log 1.5 v), which an identity projection makes q(z|x) = N(0.9 m, 1.5 v): close to p(z|x) but not it."""

    def __init__(self, log_joint) -> None:  # noqa: ANN001 - a function (x (B, F), z (G,)) -> (B, G)
        super().__init__()
        self.log_joint = log_joint
        self.out_features = 2

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        weights = torch.softmax(self.log_joint(x.double(), GRID), dim=1)  # p(z|x) on the grid
        mean = weights @ GRID
        variance = weights @ GRID.square() - mean.square()
        return torch.stack([0.9 * mean, torch.log(1.5 * variance)], 1).to(x.dtype)


def test_the_iwae_bound_of_a_heteroscedastic_decoder_tends_to_the_exact_log_likelihood() -> None:
    """sigma depends on z: log p(x) = log int N(z; 0, 1) prod_f N(x_f; w_f z + b_f, sigma_f(z)^2) dz has no closed
    form, but with a 1-D latent the integral is a quadrature (4,801 points, float64), and so is the -ELBO,
    -int q(z|x) log [p(x, z) / q(z|x)] dz. IWAE tends to the first as K grows; the -ELBO stays above it."""
    g = torch.Generator().manual_seed(7)
    w, b = torch.randn(3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    a, c = 0.8 * torch.randn(3, generator=g, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    term = Gaussian(GaussianTermConfig(variance="per-sample", sigma=0.5, min_sigma=0.01), output_shape=(3,))
    decoder = Heteroscedastic(w, b, a, c)

    def sigma_of(z: torch.Tensor) -> torch.Tensor:  # (G,) -> (G, 3): the term's transform, written out
        return 0.01 + torch.log1p(torch.exp(z[:, None] * a + c + term.offset))

    def log_joint(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # log p(x | z) + log p(z), (B, G)
        means, sigma = z[:, None] * w + b, sigma_of(z)
        log_px = Normal(means[None], sigma[None]).log_prob(x[:, None]).sum(-1)
        return log_px + Normal(0.0, 1.0).log_prob(z)[None]

    latent = GaussianLatent(GaussianConfig(), in_features=2, dim=1)
    with torch.no_grad():
        latent.project.weight.copy_(torch.eye(2))
        latent.project.bias.zero_()
    model = genreg.GenerativeModel(
        encoder=Quadrature(log_joint), latent=latent, decoder=decoder, losses=[term], data=genreg.DataInfo((3,), 3)
    ).eval()
    # 20 draws of the model itself
    z = torch.randn(20, generator=g, dtype=torch.float64)
    x = z[:, None] * w + b + sigma_of(z) * torch.randn(20, 3, generator=g, dtype=torch.float64)
    x = x.float().double()  # what the model reads
    step, joint = float(GRID[1] - GRID[0]), log_joint(x, GRID)
    exact_nll = -float((torch.logsumexp(joint, 1) + math.log(step)).mean())
    features = model.encoder(x.float(), None).double()
    q = Normal(features[:, :1], torch.exp(0.5 * features[:, 1:]))  # q(z|x) as the model has it, (B, 1)
    q_grid = q.log_prob(GRID[None])  # (B, G)
    exact_neg_elbo = -float(((q_grid.exp() * (joint - q_grid)).sum(1) * step).mean())
    assert exact_neg_elbo > exact_nll + 0.05  # q is not the posterior: the two bounds differ
    split = vector_split(x)
    bounds = {k: evaluation.likelihood_bounds(model, split, k=k, precision="fp32") for k in (1, 4000)}
    # K = 4000: an average over 20 vectors of estimates with standard deviations of ~0.01 nat each
    assert bounds[4000]["nll_iwae"] == pytest.approx(exact_nll, abs=0.03)
    assert bounds[4000]["neg_elbo"] == pytest.approx(exact_neg_elbo, abs=0.03)
    # K = 1 is a one-draw ELBO: it sits by the -ELBO, far from log p(x) where K = 4000 reached it
    assert abs(bounds[1]["nll_iwae"] - exact_nll) > 5 * abs(bounds[4000]["nll_iwae"] - exact_nll)


# --------------------------------------------------------------------------- training: heteroscedastic noise


def heteroscedastic_table(n: int, seed: int) -> genreg.Split:
    """Rows x = u t + noise, t ~ N(0, 1) and 6 fixed loadings u; the noise's sigma is 0.05 for t < 0 and 1 for
    t > 0, so how noisy a row is depends on where it lies: a decoder that knows z can predict it."""
    g = torch.Generator().manual_seed(seed)
    loadings = torch.tensor([1.0, -0.5, 0.8, 1.2, -1.0, 0.3])
    t = torch.randn(n, 1, generator=g)
    sigma = torch.where(t < 0, 0.05, 1.0)
    x = t * loadings + sigma * torch.randn(n, 6, generator=g)
    return genreg.Split(x, torch.zeros(n, dtype=torch.long))


def test_a_per_sample_variance_fits_heteroscedastic_noise_better_than_a_fixed_sigma() -> None:
    data = genreg.DataSplits(heteroscedastic_table(500, 0), heteroscedastic_table(500, 1), 1)
    config = genreg.TrainConfig(epochs=150, batch_size=250, lr=1e-2, device="cpu", precision="fp32", pictures=False)
    nll = {}
    with single_thread():
        for variance in ("fixed", "per-sample"):
            torch.manual_seed(0)
            likelihood = {"type": "gaussian", "variance": variance, "sigma": 1.0}
            model = genreg.build_model(spec(likelihood, {"type": "kld"}), genreg.DataInfo((6,), 1))
            genreg.train(model, data, config, progress=False)  # 300 steps, about 1 s
            nll[variance] = evaluation.likelihood_bounds(model.eval(), data.test, k=50, precision="fp32")["nll_iwae"]
    # Sigma = 1 pays 6 * 0.92 nats where a sigma of 0.05 could gain 6 * 2.08 on the quiet half of the rows. Measured
    # (IWAE, K = 50, test split): fixed 8.11 nats per row, per-sample 2.92-3.65 over seeds 0-5.
    assert nll["per-sample"] < nll["fixed"] - 3.5, nll
