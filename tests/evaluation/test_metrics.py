"""Tests genreg/evaluation/metrics.py: likelihood bounds (ELBO, IWAE) and latent-space metrics.

Every tolerance below is stated next to the assertion with the reason for its size.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, kl_divergence

import genreg
from genreg.errors import UsageError
from genreg.evaluation import metrics as evaluation
from genreg_builtin.conditioners import OneHot, OneHotConfig
from genreg_builtin.latents import GaussianConfig, GaussianLatent
from genreg_builtin.losses import Gaussian
from genreg_builtin.losses import GaussianConfig as GaussianTermConfig

pytestmark = pytest.mark.usefixtures("module_on_one_thread")  # tiny networks: one thread is much faster

# --------------------------------------------------------------------------------------------------
# Likelihood bounds of the small VAE trained on binarised digits (conftest's ``digits_vae``)


@pytest.fixture(scope="module")
def bounds(
    module_on_one_thread: None, digits_vae: genreg.GenerativeModel, digits: genreg.DataSplits
) -> dict[int, dict[str, float]]:
    return {k: evaluation.likelihood_bounds(digits_vae, digits.test, k) for k in (1, 10, 100)}


def test_iwae_is_a_tighter_bound_than_the_elbo(bounds: dict[int, dict[str, float]]) -> None:
    for k, result in bounds.items():
        assert result["iw_samples"] == k
        assert math.isfinite(result["neg_elbo"]) and math.isfinite(result["nll_iwae"])
        # Binarised MNIST: a good VAE reaches ~85-100 nats, an untrained one ~545; this toy measures ~166-169.
        assert 60 < result["nll_iwae"] < 250 and 60 < result["neg_elbo"] < 250
        # Same draws: log(mean(exp(w))) >= mean(w) (Jensen) image by image, so this holds up to float32 rounding.
        assert result["nll_iwae"] <= result["neg_elbo"] + 1e-3
    # With K > 1 the gap is real, not rounding: ~2.5 nat already at K = 10 (measured over 4 training seeds).
    assert bounds[10]["nll_iwae"] < bounds[10]["neg_elbo"] - 1.0
    assert bounds[100]["nll_iwae"] < bounds[100]["neg_elbo"] - 1.0


def test_iwae_with_one_sample_is_the_elbo(bounds: dict[int, dict[str, float]]) -> None:
    # K = 1: logsumexp over one weight minus log 1 is that weight, so both are the mean of the same log weights;
    # only the order of float32 sums differs.
    one = bounds[1]
    assert one["nll_iwae"] == pytest.approx(one["neg_elbo"], abs=1e-3)


def test_iwae_decreases_as_k_grows(bounds: dict[int, dict[str, float]]) -> None:
    # E[IWAE_K] is monotone in K, but each K uses its own draws, so the averages over 200 images carry
    # Monte-Carlo noise: seeds move them by ~0.1-0.3 nat, while the steps measured over 4 training seeds are
    # ~2 nat (1 -> 10) and ~0.7 nat (10 -> 100). 0.5 nat tolerates the noise and still catches an estimate
    # that does not improve with K.
    nll = [bounds[k]["nll_iwae"] for k in (1, 10, 100)]
    assert nll[1] <= nll[0] + 0.5
    assert nll[2] <= nll[1] + 0.5
    assert nll[2] < nll[0] - 1.0  # strictly tighter over the whole range


def test_likelihood_bounds_need_a_gaussian_latent(digits_ae: genreg.GenerativeModel, digits: genreg.DataSplits) -> None:
    assert not evaluation.is_probabilistic(digits_ae)
    with pytest.raises(UsageError, match="Gaussian latent"):
        evaluation.likelihood_bounds(digits_ae, digits.test, 10)


# --------------------------------------------------------------------------------------------------
# A linear-Gaussian model, whose log-likelihood is known in closed form:
#   z ~ N(0, I_2),  x | z, y ~ N(W z + b + B onehot(y), SIGMA^2 I_4)  =>  x | y ~ N(b + B onehot(y), W W^T + SIGMA^2 I)
# (B = 0 and no conditioner for the unconditional model).

D, LATENT, SIGMA, CLASSES = 4, 2, 0.5, 3


class Features(nn.Module):
    """Encoder: the pixels (and the condition, if any) are the features."""

    def __init__(self, condition_dim: int) -> None:
        super().__init__()
        self.out_features = D + condition_dim

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return x.flatten(1) if condition is None else torch.cat([x.flatten(1), condition], 1)


class LinearDecoder(nn.Module):
    """Mean of p(x|z, y) = W z + b + B onehot(y), as a (1, 1, D) image, or a (D,) vector with ``vectors``."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, offsets: torch.Tensor | None, vectors: bool = False) -> None:
        super().__init__()
        self.shape = (D,) if vectors else (1, 1, D)
        self.linear = nn.Linear(LATENT, D)
        self.offsets = None if offsets is None else nn.Linear(CLASSES, D, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(w)
            self.linear.bias.copy_(b)
            if offsets is not None:
                self.offsets.weight.copy_(offsets)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        mean = self.linear(z) if condition is None else self.linear(z) + self.offsets(condition)
        return mean.view(-1, *self.shape)


class GaussianLikelihood(nn.Module):
    """p(x|z) = N(x; logits, SIGMA^2 I): the decoder output is the mean, summed over pixels."""

    requires: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.config = genreg.LossTermConfig(name="gauss")

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(logits, SIGMA).log_prob(x).flatten(1).sum(1)

    def forward(self, x: torch.Tensor, out: genreg.ModelOutput) -> torch.Tensor:
        return -self.log_likelihood(x, out.logits)


class LinearGaussian:
    """The model, its parameters, its exact marginal p(x|y) and exact posterior p(z|x, y).

    The encoder is deliberately not the exact posterior: its mean is 0.9 E[z|x, y] and its covariance
    diag(1.5 diag S) drops the correlation and is broader (a broader proposal keeps the relative variance
    of the importance weights ~0.2, so K = 4000 draws estimate log p(x) to ~0.01 nat).

    With ``vectors`` the data are (D,) vectors and p(x|z, y) is genreg's own ``gaussian`` term (sigma SIGMA).
    """

    def __init__(self, conditional: bool = False, vectors: bool = False) -> None:
        g = torch.Generator().manual_seed(1)
        self.w = torch.randn(D, LATENT, generator=g, dtype=torch.float64)
        self.b = torch.randn(D, generator=g, dtype=torch.float64)
        # Class offsets 3 apart: routing an image's draws to another image's label would cost many nats.
        self.offsets = 3.0 * torch.randn(D, CLASSES, generator=g, dtype=torch.float64) if conditional else None
        self.s = torch.linalg.inv(torch.eye(LATENT, dtype=torch.float64) + self.w.T @ self.w / SIGMA**2)
        self.m = self.s @ self.w.T / SIGMA**2  # E[z|x, y] = M (x - mean(y))
        conditioner = OneHot(OneHotConfig(), num_classes=CLASSES) if conditional else None
        encoder = Features(CLASSES if conditional else 0)
        latent = GaussianLatent(GaussianConfig(), in_features=encoder.out_features, dim=LATENT)
        with torch.no_grad():
            latent.project.weight.zero_()
            latent.project.weight[:LATENT, :D] = 0.9 * self.m
            latent.project.bias[:LATENT] = -0.9 * self.m @ self.b
            if conditional:
                latent.project.weight[:LATENT, D:] = -0.9 * self.m @ self.offsets
            latent.project.bias[LATENT:] = torch.log(1.5 * torch.diagonal(self.s))
        likelihood = Gaussian(GaussianTermConfig(sigma=SIGMA), output_shape=(D,)) if vectors else GaussianLikelihood()
        self.model = genreg.GenerativeModel(
            conditioner=conditioner,
            encoder=encoder,
            latent=latent,
            decoder=LinearDecoder(self.w, self.b, self.offsets, vectors),
            losses=[likelihood],
            data=genreg.DataInfo((D,) if vectors else (1, 1, D), CLASSES),
        ).eval()

    def mean(self, y: torch.Tensor) -> torch.Tensor:
        return self.b if self.offsets is None else self.b + self.offsets[:, y].T

    def marginal(self, y: torch.Tensor) -> MultivariateNormal:
        cov = self.w @ self.w.T + SIGMA**2 * torch.eye(D, dtype=torch.float64)
        return MultivariateNormal(self.mean(y), cov)

    def draws(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x float64 (n, D), labels (n,)) drawn from the model itself."""
        g = torch.Generator().manual_seed(2)
        y = torch.arange(n) % CLASSES
        z = torch.randn(n, LATENT, generator=g, dtype=torch.float64)
        return z @ self.w.T + self.mean(y) + SIGMA * torch.randn(n, D, generator=g, dtype=torch.float64), y

    def elbo_gap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x, y) || p(z|x, y)) per image, in closed form: -ELBO - (-log p(x|y))."""
        exact_mean = (x - self.mean(y)) @ self.m.T
        q = MultivariateNormal(0.9 * exact_mean, torch.diag(1.5 * torch.diagonal(self.s)))
        return kl_divergence(q, MultivariateNormal(exact_mean, self.s))


def as_split(x: torch.Tensor, y: torch.Tensor) -> genreg.Split:
    return genreg.Split(x.float().view(-1, 1, 1, D), y)


def test_iwae_recovers_the_exact_log_likelihood_of_a_linear_gaussian_model() -> None:
    lg = LinearGaussian()
    xs, ys = lg.draws(6)
    for x, y in zip(xs, ys, strict=True):
        x, y = x[None], y[None]
        exact_nll = -float(lg.marginal(y).log_prob(x))
        result = evaluation.likelihood_bounds(lg.model, as_split(x, y), k=4000, precision="fp32")
        # Importance weights with relative variance ~0.2: the K = 4000 estimate has a standard deviation of
        # ~0.007 nat and a bias of ~3e-5 nat, so 0.05 nat per image is ~7 standard deviations (worst error
        # measured over 60 images x 3 seeds: 0.012 nat).
        assert result["nll_iwae"] == pytest.approx(exact_nll, abs=0.05)
        # The ELBO misses log p(x) by exactly KL(q(z|x) || p(z|x)), also known in closed form here.
        gap = float(lg.elbo_gap(x, y))
        assert gap > 0.1  # the encoder is not the posterior: the test can tell the IWAE from the ELBO
        # Its K = 4000 estimate has a Monte-Carlo std of ~0.012 nat (worst of 180 image x seed trials: 0.035).
        assert result["neg_elbo"] == pytest.approx(exact_nll + gap, abs=0.06)
        assert result["neg_elbo"] > result["nll_iwae"] + 0.05


@pytest.mark.parametrize(
    ("conditional", "k", "max_rows"),
    [
        (False, 2500, 1000),  # k > max_rows: one image at a time, its draws in pieces of 1000, 1000 and 500
        (True, 4000, 50_000),  # 12 images per chunk, each image's 4000 draws decoded with its own label
    ],
)
def test_iwae_over_a_split_averages_the_exact_log_likelihoods(conditional: bool, k: int, max_rows: int) -> None:
    lg = LinearGaussian(conditional)
    x, y = lg.draws(30)
    result = evaluation.likelihood_bounds(lg.model, as_split(x, y), k=k, max_rows=max_rows, precision="fp32")
    assert result["iw_samples"] == k
    # Averages over 30 images of estimates with std ~0.01 nat each.
    assert result["nll_iwae"] == pytest.approx(-float(lg.marginal(y).log_prob(x).mean()), abs=0.03)
    assert result["neg_elbo"] == pytest.approx(result["nll_iwae"] + float(lg.elbo_gap(x, y).mean()), abs=0.03)


# --------------------------------------------------------------------------------------------------
# Vectors (D,) and genreg's own ``gaussian`` likelihood term: the same closed forms


def vector_split(x: torch.Tensor, y: torch.Tensor) -> genreg.Split:
    return genreg.Split(x.float(), y)


@pytest.mark.parametrize(
    ("conditional", "k", "max_rows"),
    [
        (False, 2500, 1000),  # k > max_rows: one vector at a time, its draws in pieces of 1000, 1000 and 500
        (True, 4000, 50_000),  # 12 vectors per chunk, each one's 4000 draws decoded with its own label
    ],
)
def test_iwae_and_elbo_of_vectors_are_the_closed_forms_of_a_linear_gaussian_model(
    conditional: bool, k: int, max_rows: int
) -> None:
    """The bounds read (B, D) vectors and the ``gaussian`` term's log-likelihood (every constant included): the IWAE
    estimate is -log p(x|y) of x|y ~ N(b + B onehot(y), W W^T + SIGMA^2 I), the -ELBO adds KL(q || p(z|x, y))."""
    lg = LinearGaussian(conditional, vectors=True)
    x, y = lg.draws(30)
    result = evaluation.likelihood_bounds(lg.model, vector_split(x, y), k=k, max_rows=max_rows, precision="fp32")
    exact_nll, gap = -float(lg.marginal(y).log_prob(x).mean()), float(lg.elbo_gap(x, y).mean())
    assert gap > 0.1  # the encoder is not the posterior: the test can tell the IWAE from the ELBO
    # As for images above: averages over 30 vectors of estimates with std ~0.01 nat each (worst of 8 seeds: 0.005).
    assert result["nll_iwae"] == pytest.approx(exact_nll, abs=0.03)
    assert result["neg_elbo"] == pytest.approx(exact_nll + gap, abs=0.03)


class ConstantMean(nn.Module):
    """A decoder that ignores z: the mean of p(x|z) is one learned vector m (D,), whatever the code."""

    def __init__(self, mean: torch.Tensor) -> None:
        super().__init__()
        self.mean = nn.Parameter(mean.float())

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return self.mean.expand(len(z), -1)


def ignoring_z(posterior_shift: float, log_var: float) -> tuple[genreg.GenerativeModel, torch.Tensor, torch.Tensor]:
    """A model of D-vectors whose p(x|z) = N(x; m, diag sigma^2) ignores z, with a learned sigma per feature, and
    q(z|x) = N(posterior_shift * x[:2], exp(log_var) I); with its m and sigma (float64)."""
    g = torch.Generator().manual_seed(3)
    mean, log_sigma = torch.randn(D, generator=g, dtype=torch.float64), 0.5 * torch.randn(D, generator=g).double()
    likelihood = Gaussian(GaussianTermConfig(variance="learned"), output_shape=(D,))
    latent = GaussianLatent(GaussianConfig(), in_features=D, dim=LATENT)
    with torch.no_grad():
        likelihood.log_sigma.copy_(log_sigma)
        latent.project.weight.zero_()
        latent.project.weight[:LATENT, :LATENT] = posterior_shift * torch.eye(LATENT)
        latent.project.bias.zero_()
        latent.project.bias[LATENT:] = log_var
    model = genreg.GenerativeModel(
        encoder=Features(0),
        latent=latent,
        decoder=ConstantMean(mean),
        losses=[likelihood],
        data=genreg.DataInfo((D,), 3),
    )
    return model.eval(), mean, log_sigma.exp()


def exact_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """sum_f log N(x_f; mean_f, sigma_f^2), (N,), written out in float64."""
    return (-0.5 * ((x - mean) / sigma).square() - sigma.log() - 0.5 * math.log(2 * math.pi)).sum(1)


def test_bounds_of_a_decoder_that_ignores_z_are_the_exact_gaussian_log_likelihood_when_q_is_the_prior() -> None:
    # q(z|x) = N(0, I) = p(z): every log weight is log p(x|z) + log p(z) - log q(z|x) = log p(x) exactly, for any K.
    model, mean, sigma = ignoring_z(0.0, 0.0)
    x = 3.0 * torch.randn(40, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64) - 1.0
    exact = float(exact_gaussian_log_likelihood(x, mean, sigma).mean())
    result = evaluation.likelihood_bounds(model, vector_split(x, torch.zeros(40, dtype=torch.long)), k=7)
    # Only float32 rounding of ~40 nats per vector: measured 6e-7 over 8 seeds.
    assert result["nll_iwae"] == pytest.approx(-exact, abs=1e-4)
    assert result["neg_elbo"] == pytest.approx(-exact, abs=1e-4)


def test_iwae_of_a_decoder_that_ignores_z_tends_to_the_exact_gaussian_log_likelihood() -> None:
    # q(z|x) = N(0.3 x[:2], 1.3 I) is not the prior: the -ELBO pays KL(q || N(0, I)) (its closed form), while the
    # IWAE's log weights log p(x) + log p(z)/q(z) average to log p(x) as K grows.
    model, mean, sigma = ignoring_z(0.3, math.log(1.3))
    x = torch.randn(20, D, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    exact = exact_gaussian_log_likelihood(x, mean, sigma)
    mu = 0.3 * x[:, :LATENT]
    kl = 0.5 * (LATENT * (1.3 - 1 - math.log(1.3)) + mu.square().sum(1))
    result = evaluation.likelihood_bounds(model, vector_split(x, torch.zeros(20, dtype=torch.long)), k=4000)
    # Weights p(z)/q(z) with relative variance ~0.1: K = 4000 estimates log 1 to ~0.005 nat per vector, and the
    # ELBO's Monte-Carlo mean of log p(z)/q(z) has std ~0.01 nat per vector; averaged over 20 vectors, both missed
    # the closed forms by at most 0.003 nat over 8 seeds.
    assert result["nll_iwae"] == pytest.approx(-float(exact.mean()), abs=0.02)
    assert result["neg_elbo"] == pytest.approx(-float((exact - kl).mean()), abs=0.03)
    assert result["neg_elbo"] > result["nll_iwae"] + 0.05  # KL averages ~0.1 nat: the two differ


def test_log_weights_of_vectors_have_one_row_per_draw() -> None:
    lg = LinearGaussian(conditional=True, vectors=True)
    x, y = lg.draws(5)
    weights = evaluation.log_weights(lg.model, x.float(), {"label": y}, k=3)
    assert weights.shape == (3, 5) and torch.isfinite(weights).all()


# --------------------------------------------------------------------------------------------------
# Reconstruction R^2 of vectors


def numpy_r2(x: np.ndarray, reconstructed: np.ndarray) -> np.ndarray:
    """1 - SS_res / SS_tot per column, written out with numpy in float64."""
    x, reconstructed = np.asarray(x, np.float64), np.asarray(reconstructed, np.float64)
    return 1 - ((x - reconstructed) ** 2).sum(0) / ((x - x.mean(0)) ** 2).sum(0)


def test_r2_per_feature_is_the_coefficient_of_determination() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [1, 10, 0.01, 300, 2] + [0, -5, 1, 1000, 0]  # any units, any offsets
    noisy = x + 0.5 * rng.normal(size=x.shape) * x.std(0)
    r2 = evaluation.r2_per_feature(torch.from_numpy(x), torch.from_numpy(noisy))
    assert r2.dtype == torch.float64 and r2.shape == (5,)
    np.testing.assert_allclose(r2.numpy(), numpy_r2(x, noisy), rtol=1e-12)
    assert np.all((r2.numpy() > 0.6) & (r2.numpy() < 0.9))  # noise of half the std: R^2 ~0.75
    means = np.broadcast_to(x.mean(0), x.shape).copy()
    assert evaluation.r2_per_feature(torch.from_numpy(x), torch.from_numpy(x)).tolist() == [1.0] * 5
    np.testing.assert_allclose(evaluation.r2_per_feature(torch.from_numpy(x), torch.from_numpy(means)), 0, atol=1e-12)
    constant = np.column_stack([x[:, 0], np.full(200, 7.0)])
    r2 = evaluation.r2_per_feature(torch.from_numpy(constant), torch.from_numpy(constant + 1))
    assert r2[0] == pytest.approx(1 - 200 / ((x[:, 0] - x[:, 0].mean()) ** 2).sum()) and math.isnan(r2[1])


@pytest.mark.parametrize(("conditional", "batch_size"), [(False, 1000), (True, 1000), (True, 7)])
def test_reconstruction_r2_decodes_posterior_means_as_numpy_does(conditional: bool, batch_size: int) -> None:
    """The linear-Gaussian model's reconstruction is known in closed form: z = 0.9 M (x - mean(y)), decoded to
    W z + mean(y); its R^2, written out with numpy, is what ``reconstruction_r2`` reports, whatever the batches
    it reads the split in."""
    lg = LinearGaussian(conditional, vectors=True)
    x, y = lg.draws(300)
    x[:, 3] = 2.5  # a feature that does not vary: no R^2, left out of the mean
    mean = lg.mean(y).expand(len(x), D).numpy()
    reconstructed = 0.9 * (x.numpy() - mean) @ lg.m.numpy().T @ lg.w.numpy().T + mean
    expected = numpy_r2(x.numpy()[:, :3], reconstructed[:, :3])
    result = evaluation.reconstruction_r2(lg.model, vector_split(x, y), batch_size)
    assert result["r2_features"] == 3 and result["reconstruction_r2_per_feature"][3] is None
    # float32 model against float64 numpy: ~1e-6 relative
    np.testing.assert_allclose(result["reconstruction_r2_per_feature"][:3], expected, rtol=1e-4)
    assert result["reconstruction_r2"] == pytest.approx(expected.mean(), rel=1e-4)
    assert 0.2 < result["reconstruction_r2"] < 1  # a 2-D code of 4 noisy features keeps part of their variance


# --------------------------------------------------------------------------------------------------
# Gaussianity of a point set: KL of the fitted Gaussian to N(0, I), and MMD^2 to N(0, I)


def points(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


# Thresholds for n = 2000 points from N(0, I), measured over 20 seeds in 2 and 8 dims: the fitted KL is biased
# up by ~d(d+1)/(4n) (mean 0.011, max 0.016 for d = 8); the unbiased MMD^2 is centred on 0 with a standard
# deviation of 2.7e-4 (d = 2) and 1.4e-4 (d = 8), max |value| 6e-4. "Near zero" is KL < 0.05 and
# |MMD^2| < 0.002 (over 7 standard deviations); "clearly positive" is KL > 1 and MMD^2 > 10 x 0.002.
KL_NEAR_ZERO, MMD_NEAR_ZERO = 0.05, 0.002


@pytest.mark.parametrize("d", [2, 8])
def test_gaussianity_metrics_near_zero_for_standard_normal_points(d: int) -> None:
    z = points(2000, d, seed=10 + d)
    assert 0 <= evaluation.gaussian_kl_to_standard(z) < KL_NEAR_ZERO
    assert abs(evaluation.mmd_to_standard(z)) < MMD_NEAR_ZERO


@pytest.mark.parametrize("d", [2, 8])
def test_gaussianity_metrics_clearly_positive_for_non_standard_points(d: int) -> None:
    z = points(2000, d, seed=20 + d)
    signs = torch.where(torch.rand(2000, 1, generator=torch.Generator().manual_seed(3)) < 0.5, -1.0, 1.0)
    cases = {
        "shifted (mean 2)": z + 2.0,  # KL = 2 d; measured MMD^2 ~0.65
        "scaled (std 3)": 3.0 * z,  # KL = d (9 - 1 - ln 9) / 2 = 2.9 d; MMD^2 ~0.3
        "bimodal (+-3)": z + 3.0 * signs,  # modes at +-3 (1, ..., 1); MMD^2 ~0.6
    }
    for name, cloud in cases.items():
        assert evaluation.gaussian_kl_to_standard(cloud) > 1.0, name
        assert evaluation.mmd_to_standard(cloud) > 10 * MMD_NEAR_ZERO, name


def test_mmd_sees_bimodality_that_the_fitted_gaussian_hides() -> None:
    # Two modes at +-0.95 with std 0.312 in each of 2 coordinates: mean 0 and variance 1, like N(0, I) up to
    # the second moment, so the fitted Gaussian's KL stays near zero; MMD^2 compares the whole distribution
    # (measured 0.006-0.010 over 10 seeds, i.e. > 20 standard deviations of its N(0, I) noise).
    g = torch.Generator().manual_seed(4)
    signs = torch.where(torch.rand(2000, 2, generator=g) < 0.5, -1.0, 1.0)
    z = 0.95 * signs + math.sqrt(1 - 0.95**2) * torch.randn(2000, 2, generator=g)
    assert evaluation.gaussian_kl_to_standard(z) < 0.01
    assert evaluation.mmd_to_standard(z) > 2 * MMD_NEAR_ZERO


def test_gaussian_kl_is_the_closed_form_kl_of_the_fitted_gaussian() -> None:
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    a = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.2, 0.5]], dtype=torch.float64)
    cov = a @ a.T
    analytic = float(
        kl_divergence(
            MultivariateNormal(mean, cov),
            MultivariateNormal(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)),
        )
    )
    z = mean + torch.randn(20_000, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64) @ a.T
    # Sampling error of the fitted mean and covariance at n = 20,000 moves the KL (here ~3.9) by ~0.02.
    assert evaluation.gaussian_kl_to_standard(z) == pytest.approx(analytic, abs=0.08)
    # And on any sample it is exactly the KL of that sample's own mean and covariance (no sampling tolerance).
    fitted = MultivariateNormal(z.mean(0), torch.cov(z.T))
    own = kl_divergence(fitted, MultivariateNormal(torch.zeros(3, dtype=torch.float64), torch.eye(3).double()))
    assert evaluation.gaussian_kl_to_standard(z) == pytest.approx(float(own), abs=1e-6)


def test_gaussian_kl_in_one_dimension() -> None:
    z = 2.0 + 0.5 * points(5000, 1, seed=6)
    analytic = 0.5 * (0.25 + 4.0 - 1 - math.log(0.25))
    assert evaluation.gaussian_kl_to_standard(z) == pytest.approx(analytic, abs=0.05)


# --------------------------------------------------------------------------------------------------
# k-NN accuracy, chance level, active units


def test_knn_accuracy_is_chance_for_label_independent_points() -> None:
    z = points(2000, 8, seed=7)
    labels = torch.randint(0, 10, (2000,), generator=torch.Generator().manual_seed(8))
    # Each of the 2000 predictions is right with probability ~0.1: std sqrt(0.09 / 2000) = 0.007; 0.03 is ~4 std.
    assert evaluation.knn_accuracy(z, labels) == pytest.approx(0.1, abs=0.03)


def test_knn_accuracy_is_near_one_for_separated_clusters() -> None:
    labels = torch.arange(10).repeat_interleave(50)
    z = 10.0 * torch.eye(10)[labels] + points(500, 10, seed=9)  # centres 14 apart, unit noise
    assert evaluation.knn_accuracy(z, labels) > 0.99


def test_knn_accuracy_without_features_is_the_majority_class() -> None:
    labels = torch.tensor([0] * 60 + [1] * 25 + [2] * 15)
    # Every fold's training part is mostly class 0, so every image is called class 0: right for 60 of 100.
    assert evaluation.knn_accuracy(torch.empty(100, 0), labels) == pytest.approx(0.6)


# Issue 16, case 2: a cVAE's encoder sees the label, so its means can carry tiny label-dependent offsets that no
# draw of z does; k-NN read them (0.958 on pure noise with random labels) and the study called it "class mixing".
THREE = torch.arange(3).repeat(500)  # 1500 images, 3 balanced classes: chance 1/3, k-NN std on noise ~0.012


def test_knn_cannot_read_label_offsets_of_a_collapsed_posterior() -> None:
    # KL ~ 0: q(z|x, y) ~ N(0, I) for every image, but the means sit 1e-3 apart by label (no unit active).
    offsets = 1e-3 * torch.nn.functional.one_hot(THREE, 3).float()
    metrics = evaluation.latent_metrics(evaluation.Posterior(offsets, torch.zeros(1500, 3), THREE))
    assert evaluation.knn_accuracy(offsets, THREE) == 1.0  # the means alone give the label away
    assert metrics["active_units"] == 0 and metrics["knn_on"] == "draws z ~ q, 0 active units"
    assert metrics["knn_accuracy"] == pytest.approx(1 / 3, abs=0.05)


def test_knn_cannot_read_label_offsets_of_inactive_units() -> None:
    # Two active units carry a label-free style (std 0.15 across images, posterior std 0.1); three inactive ones
    # (variance of the means 0.002 < 0.01) carry label offsets 0.1 apart, which k-NN on the means reads.
    style = 0.15 * points(1500, 2, seed=13)
    offsets = 0.1 * torch.nn.functional.one_hot(THREE, 3).float()
    log_var = torch.cat([torch.full((1500, 2), math.log(0.01)), torch.zeros(1500, 3)], 1)
    post = evaluation.Posterior(torch.cat([style, offsets], 1), log_var, THREE)
    assert evaluation.knn_accuracy(post.mu, THREE) > 0.6  # measured 0.75
    metrics = evaluation.latent_metrics(post)
    assert metrics["active_units"] == 2 and metrics["knn_on"] == "draws z ~ q, 2 active units"
    assert metrics["knn_accuracy"] == pytest.approx(1 / 3, abs=0.05)


def test_knn_sees_the_class_of_active_units_through_the_noise_of_inactive_ones() -> None:
    # Two active units hold the classes 1 apart (posterior std 0.1); thirty collapsed units are N(0, 1) noise in
    # every draw, which would swamp the distances if k-NN read them.
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[THREE]
    mu = torch.cat([centres, torch.zeros(1500, 30)], 1)
    log_var = torch.cat([torch.full((1500, 2), math.log(0.01)), torch.zeros(1500, 30)], 1)
    post = evaluation.Posterior(mu, log_var, THREE)
    assert evaluation.knn_accuracy(evaluation.aggregate_sample(post), THREE) < 0.6  # all units: measured 0.50
    assert evaluation.latent_metrics(post)["knn_accuracy"] > 0.99  # measured 1.0


def noise_data(n_train: int = 600, n_test: int = 1500) -> genreg.DataSplits:
    """8x8 uniform noise with labels drawn at random from 3 classes: no image says anything of its label."""
    g = torch.Generator().manual_seed(14)

    def split(n: int) -> genreg.Split:
        return genreg.Split(torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g))

    return genreg.DataSplits(split(n_train), split(n_test), 3)


@pytest.mark.parametrize("kind", ["ae", "vae", "cvae"])
def test_knn_accuracy_is_chance_when_labels_are_unrelated_to_the_images(kind: str) -> None:
    # A 32-D latent trained for 2 epochs: the cVAE's means carry label offsets (k-NN on them measured 0.60 against
    # chance 0.34), as untrained label weights of its encoder do; its draws on active units carry nothing.
    data = noise_data()
    torch.manual_seed(0)
    parts = {"latent_dim": 32, "encoder": {"type": "mlp", "hidden": [16]}, "decoder": {"type": "mlp", "hidden": [16]}}
    model = genreg.build_model({"type": kind, **parts}, data.info)
    genreg.train(model, data, genreg.TrainConfig(epochs=2, batch_size=100, device="cpu"), progress=False)
    metrics = evaluation.latent_metrics(evaluation.posterior(model.eval(), data.test))
    # 1500 test images: k-NN on label-free features is right ~1/3 of the time, std ~0.012; 0.05 is ~4 std.
    assert metrics["knn_accuracy"] == pytest.approx(metrics["chance"], abs=0.05)


def test_chance_level_is_the_majority_class_share() -> None:
    assert evaluation.chance_level(torch.arange(10).repeat(30)) == pytest.approx(0.1)
    unbalanced = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    assert evaluation.chance_level(unbalanced) == pytest.approx(0.5)
    assert evaluation.chance_level(torch.tensor([3, 3, 3, 7])) == pytest.approx(0.75)  # class 0 absent


def test_active_units_counts_dims_whose_mean_varies() -> None:
    n = 500
    alternate = torch.tensor([-1.0, 1.0]).repeat(n // 2)  # variance n / (n - 1) ~ 1.002
    mu = torch.stack(
        [
            points(n, 1, seed=11)[:, 0],  # var ~1: active
            torch.full((n,), 3.0),  # constant: inactive however large
            0.2 * alternate,  # var 0.04: active
            0.05 * alternate,  # var 0.0025: inactive
            torch.zeros(n),  # inactive
            0.12 * alternate,  # var 0.0144: just above 0.01
        ],
        dim=1,
    )
    assert evaluation.ACTIVE_UNIT_THRESHOLD == 0.01
    assert evaluation.active_units(mu) == 3
    assert evaluation.active_units(mu, threshold=0.001) == 4
    assert evaluation.active_units(mu, threshold=0.5) == 1


def test_latent_metrics_use_the_aggregate_posterior_not_the_means() -> None:
    # A posterior collapsed onto the prior, q(z|x) = N(0, I) for every x: no active unit, yet its aggregate
    # posterior (one draw per image) is exactly N(0, I), so the Gaussianity metrics are near zero.
    n = 2000
    labels = torch.cat([torch.zeros(1200, dtype=torch.long), torch.arange(1, 5).repeat(200)])  # 60 % class 0
    collapsed = evaluation.Posterior(torch.zeros(n, 3), torch.zeros(n, 3), labels)
    metrics = evaluation.latent_metrics(collapsed)
    assert metrics["latent_dim"] == 3 and metrics["active_units"] == 0
    assert metrics["gaussian_kl"] < KL_NEAR_ZERO and abs(metrics["mmd"]) < MMD_NEAR_ZERO
    assert metrics["chance"] == pytest.approx(0.6)
    # A deterministic latent (no log_var): the means themselves are the sample.
    means = 3.0 * points(n, 2, seed=12)
    deterministic = evaluation.Posterior(means, None, labels)
    assert torch.equal(evaluation.aggregate_sample(deterministic), means)
    metrics = evaluation.latent_metrics(deterministic)
    assert metrics["gaussian_kl"] == evaluation.gaussian_kl_to_standard(means) > 1.0
    assert metrics["active_units"] == 2


# --------------------------------------------------------------------------------------------------
# The precision of the bounds: bf16 where training would use it, if it moves them by 0.1 nat at most


def test_auto_measures_the_bounds_in_bf16_within_a_tenth_of_a_nat_of_fp32(
    cpu_has, digits_vae: genreg.GenerativeModel, digits: genreg.DataSplits
) -> None:
    test = digits.test.take(slice(0, 200))
    exact = evaluation.likelihood_bounds(digits_vae, test, 50, precision="fp32")
    assert (exact["precision"], exact["precision_note"]) == ("fp32", "fp32 (precision fp32)")
    cpu_has(avx512_bf16=True)
    auto = evaluation.likelihood_bounds(digits_vae, test, 50)
    assert auto["precision"] == "bf16"
    assert "this CPU has AVX512-BF16; " in auto["precision_note"]
    assert re.search(r"; 0\.\d{3} nats from fp32 on the first 1\d\d images\)$", auto["precision_note"])
    for bound in ("neg_elbo", "nll_iwae"):
        assert auto[bound] != exact[bound]  # the decoder ran in bf16 ...
        assert auto[bound] == pytest.approx(exact[bound], abs=evaluation.BF16_TOLERANCE)  # ... close enough
    cpu_has(avx512_bf16=False)
    assert evaluation.likelihood_bounds(digits_vae, test, 50) == {
        **exact,
        "precision_note": "fp32 (precision auto: this CPU has neither AVX512-BF16 nor AMX-BF16)",
    }


def test_auto_stays_fp32_and_says_so_when_bf16_moves_the_bounds_too_far(
    cpu_has, monkeypatch, digits_vae: genreg.GenerativeModel, digits: genreg.DataSplits
) -> None:
    test = digits.test.take(slice(0, 150))
    exact = evaluation.likelihood_bounds(digits_vae, test, 50, precision="fp32")
    cpu_has(avx512_bf16=True)
    monkeypatch.setattr(evaluation, "BF16_TOLERANCE", 0.0)  # any change is too much
    auto = evaluation.likelihood_bounds(digits_vae, test, 50)
    assert auto["precision"] == "fp32"
    assert auto["precision_note"].startswith("fp32 (bf16 autocast was ")
    assert "more than 0.0" in auto["precision_note"]
    assert (auto["neg_elbo"], auto["nll_iwae"]) == (exact["neg_elbo"], exact["nll_iwae"])  # measured again, in fp32


# --------------------------------------------------------------------------------------------------
# Data in other units, data without labels, a split of one sample


def test_the_r2_of_a_transformed_model_is_on_its_own_scale_and_unchanged_without_a_transform() -> None:
    """Splits hold log1p, standardized counts: the R^2 is of those values, the likelihood's, not of the counts."""
    from tests.viz.vectors import SPECS, named_data

    for transform in (None, []):
        data = named_data(transform=transform)
        torch.manual_seed(0)
        model = genreg.build_model(SPECS["cvae"], data.info).eval()
        test, condition = data.test, data.test.condition()
        in_model = model.reconstruct(test.images, condition, units="model")
        result = evaluation.reconstruction_r2(model, test)
        np.testing.assert_allclose(
            result["reconstruction_r2_per_feature"], numpy_r2(test.images, in_model), rtol=1e-4, atol=1e-6
        )
        in_data = numpy_r2(
            model.out_of_model(test.images), model.reconstruct(model.out_of_model(test.images), condition)
        )
        if transform is None:  # fitted: the data's own R^2 is another figure
            assert not np.allclose(result["reconstruction_r2_per_feature"], in_data, rtol=1e-3)
        else:  # no transform: the data's units are the model's, as before
            assert data.info.transform is None
            np.testing.assert_allclose(result["reconstruction_r2_per_feature"], in_data, rtol=1e-4, atol=1e-6)


def test_class_metrics_of_data_without_labels_are_skipped_with_the_reason() -> None:
    post = evaluation.Posterior(torch.randn(50, 2), torch.zeros(50, 2), torch.zeros(50, dtype=torch.long))
    metrics = evaluation.latent_metrics(post, labelled=False)
    assert metrics["knn_accuracy"] is None and metrics["chance"] is None and metrics["knn_on"] is None
    assert metrics["skipped"] == {"knn_accuracy": "the data has no labels"}
    assert metrics["gaussian_kl"] >= 0 and metrics["active_units"] == 2
    assert "skipped" not in evaluation.latent_metrics(post)  # labelled: every figure


def test_a_split_of_one_sample_has_no_latent_statistics_and_says_why() -> None:
    """k-NN of one point crashed (torch.mode of no neighbours): 'Expected reduction dim to have non-zero size'."""
    with pytest.raises(UsageError, match="k-NN accuracy .* needs at least 2 points; got 1"):
        evaluation.knn_accuracy(torch.randn(1, 2), torch.zeros(1, dtype=torch.long))
    assert evaluation.knn_accuracy(torch.tensor([[0.0], [1.0]]), torch.tensor([0, 0])) == 1.0
    post = evaluation.Posterior(torch.randn(1, 3), torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
    metrics = evaluation.latent_metrics(post, noun="vectors")
    assert metrics["knn_accuracy"] is None and metrics["gaussian_kl"] is None and metrics["active_units"] is None
    reason = "the split has 1 vector; it needs at least 2"
    assert metrics["skipped"] == dict.fromkeys(["active_units", "gaussian_kl", "mmd", "knn_accuracy"], reason)
