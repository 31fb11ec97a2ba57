"""Tests plugins/genreg_builtin/counts.py: the count likelihoods (poisson, negative-binomial, zero-inflated NB).

Science: the decoder's softmax over features gives proportions, the row's observed total count l scales them
to the mean mu = l softmax(output) (scVI); each NLL is exact, in nats per sample, equal to scipy.stats' log-pmf
summed over features; the NB with inverse dispersion theta has mean mu and variance mu + mu^2 / theta.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import NegativeBinomial

import genreg
from genreg.data import DatasetConfig, as_split, finish
from genreg.errors import DataError, SpecWarning
from genreg.evaluation.metrics import r2_per_feature, reconstruction_r2
from genreg.plugin.protocols import LatentSample, ModelOutput
from genreg.training.runner import check_data
from genreg_builtin.counts import (
    ZINB,
    NegativeBinomialConfig,
    NegativeBinomialLogPmf,
    NegativeBinomialTerm,
    Poisson,
    PoissonConfig,
    ZINBConfig,
    median_total,
)

ROWS, FEATURES = 64, 7


def random_counts(rows: int = ROWS, seed: int = 0) -> torch.Tensor:
    """Overdispersed counts with many zeros and no row of total 0, float32."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(0.5, 8.0, size=(rows, FEATURES))
    x = rng.poisson(rates)
    x[:, 0] += 1  # every row has a count
    return torch.from_numpy(x.astype(np.float32))


def proportions_and_mu(x: torch.Tensor, output: torch.Tensor) -> np.ndarray:
    """mu = l softmax(output), float64, computed apart from the module."""
    p = torch.softmax(output.double(), dim=1)
    return (x.double().sum(1, keepdim=True) * p).numpy()


def output_for(rows: int = ROWS, maps: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(rows, maps * FEATURES, generator=torch.Generator().manual_seed(seed))


def test_poisson_nll_equals_scipy() -> None:
    x, output = random_counts(), output_for()
    term = Poisson(PoissonConfig(), output_shape=(FEATURES,))
    expected = stats.poisson.logpmf(x.numpy(), proportions_and_mu(x, output)).sum(1)
    got = term.log_likelihood(x, output)
    assert got.shape == (ROWS,)
    np.testing.assert_allclose(got.detach().double().numpy(), expected, rtol=1e-5, atol=1e-4)
    out = ModelOutput(output, LatentSample(torch.zeros(ROWS, 2)))
    assert torch.equal(term(x, out), -got)


def nb_term(theta: torch.Tensor) -> NegativeBinomialTerm:
    term = NegativeBinomialTerm(NegativeBinomialConfig(), output_shape=(FEATURES,))
    with torch.no_grad():
        term.log_theta.copy_(theta.log())
    return term


THETA = torch.tensor([0.3, 0.7, 1.0, 2.5, 5.0, 10.0, 50.0])


def test_negative_binomial_nll_equals_scipy_with_n_theta_and_p_theta_over_theta_plus_mu() -> None:
    x, output = random_counts(), output_for()
    term = nb_term(THETA)
    mu, theta = proportions_and_mu(x, output), THETA.double().numpy()
    expected = stats.nbinom.logpmf(x.numpy(), theta, theta / (theta + mu)).sum(1)
    np.testing.assert_allclose(term.log_likelihood(x, output).detach().double().numpy(), expected, rtol=1e-5, atol=1e-4)


def test_negative_binomial_mean_is_mu_and_theta_is_learned_per_feature() -> None:
    x, output = random_counts(), output_for()
    term = nb_term(THETA)
    _, nb = term.distribution(x, output)
    np.testing.assert_allclose(nb.mean.detach().double().numpy(), proportions_and_mu(x, output), rtol=1e-4)
    variance = proportions_and_mu(x, output) + proportions_and_mu(x, output) ** 2 / THETA.double().numpy()
    np.testing.assert_allclose(nb.variance.detach().double().numpy(), variance, rtol=1e-4)
    assert [name for name, _ in term.named_parameters()] == ["log_theta"]
    assert term.log_theta.shape == (FEATURES,)
    term.log_likelihood(x, output).sum().backward()
    assert term.log_theta.grad is not None and term.log_theta.grad.abs().sum() > 0


def test_zinb_nll_equals_a_direct_mixture_and_its_mean_is_one_minus_pi_times_mu() -> None:
    x, output = random_counts(), output_for(maps=2)
    term = ZINB(ZINBConfig(), output_shape=(FEATURES,))
    assert term.parameter_maps == 2
    with torch.no_grad():
        term.log_theta.copy_(THETA.log())
    mu = proportions_and_mu(x, output[:, :FEATURES])
    pi = torch.sigmoid(output[:, FEATURES:].double()).numpy()
    theta = THETA.double().numpy()
    nb = stats.nbinom.pmf(x.numpy(), theta, theta / (theta + mu))
    expected = np.log(np.where(x.numpy() == 0, pi + (1 - pi) * nb, (1 - pi) * nb)).sum(1)
    np.testing.assert_allclose(term.log_likelihood(x, output).detach().double().numpy(), expected, rtol=1e-5, atol=1e-4)
    term.check_data(x, "counts")
    library = float(term.library_size)
    mean = term.mean(output).detach().double().numpy()
    p = torch.softmax(output[:, :FEATURES].double(), 1).numpy()
    np.testing.assert_allclose(mean, (1 - pi) * library * p, rtol=1e-5)


def test_check_data_stores_the_median_row_total_as_the_library_size_mean_scales_by() -> None:
    x = random_counts()
    term = Poisson(PoissonConfig(), output_shape=(FEATURES,))
    assert torch.isnan(term.library_size)
    term.check_data(x, "counts")
    median = float(np.median(x.double().sum(1).numpy()))
    assert float(term.library_size) == pytest.approx(median)
    decoded = term.mean(output_for(3))
    assert decoded.shape == (3, FEATURES) and (decoded >= 0).all()
    np.testing.assert_allclose(decoded.sum(1).numpy(), median, rtol=1e-5)
    fixed = Poisson(PoissonConfig(library_size=1000.0), output_shape=(FEATURES,))
    fixed.check_data(x, "counts")
    assert float(fixed.library_size) == 1000.0
    assert float(median_total(torch.tensor([[1.0], [4.0], [2.0], [10.0]]))) == 3.0


@pytest.mark.parametrize(
    ("value", "shown"),
    [(-1.0, "got -1 at row 3, feature 2 of the training samples"), (1.5, "got 1.5 at row 3, feature 2")],
)
def test_check_data_refuses_negative_and_fractional_values_naming_where(value: float, shown: str) -> None:
    x = random_counts()
    x[3, 2] = value
    with pytest.raises(DataError, match="reads non-negative integers") as caught:
        nb_term(THETA).check_data(x, "cells.npz")
    assert str(caught.value).startswith("cells.npz: ")
    assert shown in str(caught.value)


def test_check_data_refuses_a_row_of_all_zeros_and_such_a_row_has_likelihood_one() -> None:
    x = random_counts()
    x[5] = 0
    with pytest.raises(DataError, match="row 5 .* has a total count of 0"):
        Poisson(PoissonConfig(), output_shape=(FEATURES,)).check_data(x, "cells.npz")
    for term in (Poisson(PoissonConfig(), output_shape=(FEATURES,)), nb_term(THETA)):
        values = term.log_likelihood(x, output_for()).detach()
        assert torch.isfinite(values).all() and abs(float(values[5])) < 1e-6


def count_splits(rows: int = 120) -> genreg.DataSplits:
    x = random_counts(rows, seed=3).numpy()
    split = as_split(x, None, "counts.npz")
    train, test = split.take(slice(0, 90)), split.take(slice(90, None))
    return finish(train, test, DatasetConfig(), "counts.npz")


def count_vae(likelihood: str) -> dict:
    """A tiny VAE spec with the count ``likelihood``, its encoder reading log(1 + counts) as scVI's does."""
    return {
        "type": "vae",
        "latent_dim": 2,
        "encoder": {"type": "mlp", "hidden": [16], "input": "log1p"},
        "decoder": {"type": "mlp", "hidden": [16]},
        "losses": [{"type": likelihood}, {"type": "kld"}],
    }


@pytest.mark.parametrize("likelihood", ["negative-binomial", "poisson", "zero-inflated-negative-binomial"])
def test_a_vae_with_a_count_likelihood_trains_and_samples_non_negative_means(likelihood: str, tmp_path) -> None:
    data = count_splits()
    model = genreg.build_model(count_vae(likelihood), data.info)
    check_data(model, data)  # what genreg run does first: stores the library size
    result = genreg.train(model, data, genreg.TrainConfig(epochs=2, batch_size=30, device="cpu"), progress=False)
    assert np.isfinite(result.history[-1]["test"]["neg_elbo"])
    samples = model.sample(5)
    assert samples.shape == (5, FEATURES) and (samples >= 0).all()
    median = float(np.median(data.train.images.double().sum(1).numpy()))
    if likelihood != "zero-inflated-negative-binomial":
        np.testing.assert_allclose(samples.sum(1).numpy(), median, rtol=1e-4)
    genreg.save_model(model, tmp_path / "model.safetensors")
    loaded = genreg.load_model(tmp_path / "model.safetensors")
    assert float(loaded.losses[0].library_size) == pytest.approx(median)


def test_without_check_data_the_first_training_batch_gives_the_library_size() -> None:
    data = count_splits()
    model = genreg.build_model(count_vae("negative-binomial"), data.info)
    genreg.train(model, data, genreg.TrainConfig(epochs=1, batch_size=30, device="cpu"), progress=False)
    size = float(model.losses[0].library_size)
    assert np.isfinite(size) and size > 0
    assert (model.sample(4) >= 0).all()


@pytest.mark.parametrize("likelihood", ["poisson", "zero-inflated-negative-binomial"])
def test_reconstruct_scales_each_row_by_its_own_total_count(likelihood: str) -> None:
    """scVI's reconstruction: the decoded proportions times the row's observed library size, not the median's."""
    data = count_splits()
    model = genreg.build_model(count_vae(likelihood), data.info)
    check_data(model, data)
    x = data.test.images.clone()
    x[0] *= 10  # a row ten times deeper than the median
    recon = model.reconstruct(x)
    term, output = model.losses[0], model.decoder(model.encode(x), None)
    totals = x.sum(1, keepdim=True)
    by_hand = term.proportions(output) * totals
    if likelihood == "poisson":  # sum_f l softmax_f = l
        torch.testing.assert_close(recon.sum(1, keepdim=True), totals, rtol=1e-4, atol=1e-3)
    else:
        by_hand = by_hand * torch.sigmoid(-output[:, FEATURES:])
    torch.testing.assert_close(recon, by_hand, rtol=1e-4, atol=1e-5)


def two_types_of_counts(rows: int, seed: int = 0) -> np.ndarray:
    """Poisson counts of two expression profiles, library sizes spread over a factor ~10 (log-normal)."""
    rng = np.random.default_rng(seed)
    profiles = rng.dirichlet(np.ones(FEATURES), size=2)
    library = rng.lognormal(np.log(1000), 0.6, size=(rows, 1))
    return rng.poisson(library * profiles[rng.integers(0, 2, rows)]).astype(np.float32)


def test_eval_r2_of_counts_is_of_the_rows_own_library_sizes() -> None:
    """R² of reconstructions at each row's own total is high; decoding at the median total (what decode gives,
    and what reconstruct did before) explains far less of the variance, which library sizes dominate."""
    torch.manual_seed(0)
    x = two_types_of_counts(600)
    split = as_split(x, None, "counts.npz")
    data = finish(split.take(slice(0, 500)), split.take(slice(500, None)), DatasetConfig(), "counts.npz")
    model = genreg.build_model(count_vae("poisson"), data.info)
    check_data(model, data)
    genreg.train(model, data, genreg.TrainConfig(epochs=30, batch_size=50, device="cpu"), progress=False)
    own = reconstruction_r2(model, data.test)["reconstruction_r2"]
    at_median = float(r2_per_feature(data.test.images, model.decode(model.encode(data.test.images))).mean())
    assert own > 0.9 and at_median < own - 0.3, (own, at_median)


def test_an_encoder_reading_raw_counts_is_warned_about_naming_the_setting() -> None:
    raw = {**count_vae("negative-binomial"), "encoder": {"type": "mlp", "hidden": [16]}}
    info = genreg.DataInfo((FEATURES,), 1)
    with pytest.warns(SpecWarning, match="set model.encoder.input to 'log1p'"):
        genreg.build_model(raw, info)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecWarning)
        genreg.build_model(count_vae("negative-binomial"), info)  # log1p input: no warning


@pytest.mark.parametrize("only_counted", [True, False])
def test_the_written_out_nb_log_pmf_and_its_gradients_are_torch_distributions(only_counted: bool) -> None:
    """NegativeBinomialLogPmf against torch.distributions.NegativeBinomial in float64: values and the gradients of
    log mu and log theta, with lgamma and digamma on the non-zero counts only (the CPU's way) or on every value."""
    x = random_counts().double()
    log_mu = torch.randn(ROWS, FEATURES, dtype=torch.float64, requires_grad=True)
    log_theta = (torch.randn(FEATURES, dtype=torch.float64) * 0.5).requires_grad_()
    ours = NegativeBinomialLogPmf.apply(log_mu, log_theta, x, only_counted)
    nb = NegativeBinomial(total_count=log_theta.exp(), logits=log_mu - log_theta, validate_args=False)
    theirs = nb.log_prob(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    weights = torch.randn(ROWS, FEATURES, dtype=torch.float64)
    ours_grads = torch.autograd.grad((ours * weights).sum(), (log_mu, log_theta))
    theirs_grads = torch.autograd.grad((theirs * weights).sum(), (log_mu, log_theta))
    for mine, reference in zip(ours_grads, theirs_grads, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-9, atol=1e-9)
    pmf = lambda m, t: NegativeBinomialLogPmf.apply(m, t, x, only_counted)  # noqa: E731
    assert torch.autograd.gradcheck(pmf, (log_mu, log_theta))


# --------------------------------------------------------------------------- a modelled library size


def test_a_modelled_library_size_is_importance_sampled_to_the_exact_marginal_likelihood() -> None:
    """With ``library: modelled``, exp(log_likelihood) averaged over draws of log l ~ q is an unbiased estimate of
    p(x | z) = integral of Poisson(x; l p) N(log l; m, s^2) d log l, computed here by quadrature over log l."""
    term = Poisson(PoissonConfig(library="modelled"), output_shape=(FEATURES,))
    x = random_counts(4)
    term.library.fit_prior(torch.tensor([50.0, 80.0, 120.0, 200.0]))
    m, s = (float(v) for v in term.library.prior)
    # q(log l | x) = N(log of the row's total, 0.3^2), a good proposal, in place of the (untrained) encoder's
    term.library.posterior = lambda rows: (
        rows.sum(1, keepdim=True).log(),
        torch.full((len(rows), 1), 2 * math.log(0.3)),
    )
    output = output_for(4)
    draws = 20000
    torch.manual_seed(0)
    values = term.log_likelihood(x.repeat(draws, 1), output.repeat(draws, 1)).view(draws, 4).double()
    estimate = torch.logsumexp(values, 0) - math.log(draws)
    grid = torch.linspace(m - 8 * s, m + 8 * s, 4001, dtype=torch.float64)
    p = torch.softmax(output.double(), 1)
    log_pois = stats.poisson.logpmf(x.double().numpy()[:, None, :], (grid.exp()[None, :, None] * p[:, None, :]).numpy())
    integrand = torch.from_numpy(log_pois.sum(2)) + torch.distributions.Normal(m, s).log_prob(grid)
    exact = torch.logsumexp(integrand, 1) + math.log(float(grid[1] - grid[0]))
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)
    assert (values.mean(0) < exact).all()  # one draw's expectation is a lower bound (the ELBO's part)


def test_the_modelled_library_trains_saves_and_reconstructs_at_its_posterior_median(tmp_path) -> None:
    data = count_splits()
    spec = count_vae("negative-binomial")
    spec["losses"][0] = {"type": "negative-binomial", "library": "modelled"}
    model = genreg.build_model(spec, data.info)
    check_data(model, data)
    library = model.losses[0].library
    logs = data.train.images.double().sum(1).log()
    torch.testing.assert_close(library.prior, torch.stack([logs.mean(), logs.std()]).float())
    assert float(library.encoder[-1].bias.detach()[0]) == float(library.prior[0])  # q starts at the prior's scale
    result = genreg.train(model, data, genreg.TrainConfig(epochs=3, batch_size=30, device="cpu"), progress=False)
    assert np.isfinite(result.history[-1]["test"]["neg_elbo"])
    x = data.test.images
    with torch.no_grad():
        mean, log_var = library.posterior(x)
        # the KL in the term's training value is the closed form of the two normals
        _, kl = library.draw(x)
        expected = torch.distributions.kl_divergence(
            torch.distributions.Normal(mean, (0.5 * log_var).exp()),
            torch.distributions.Normal(library.prior[0], library.prior[1]),
        ).flatten()
        torch.testing.assert_close(kl, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.reconstruct(x).sum(1).numpy(), mean.flatten().exp().numpy(), rtol=1e-4)
    genreg.save_model(model, tmp_path / "model.safetensors")
    loaded = genreg.load_model(tmp_path / "model.safetensors")
    torch.testing.assert_close(loaded.losses[0].library.prior, library.prior)
    torch.testing.assert_close(loaded.reconstruct(x), model.reconstruct(x))


def test_the_test_split_is_checked_too_without_fitting_anything_to_it() -> None:
    data = count_splits()
    data.test.images[4, 2] = 1.5
    model = genreg.build_model(count_vae("poisson"), data.info)
    with pytest.raises(DataError, match="got 1.5 at row 4, feature 2 of the test samples"):
        check_data(model, data)
    data.test.images[4, 2] = 1.0
    data.test.images[6] = 0
    with pytest.raises(DataError, match="row 6 of the test samples has a total count of 0"):
        check_data(model, data)
