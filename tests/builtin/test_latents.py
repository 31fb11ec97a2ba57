"""Tests plugins/genreg_builtin/latents.py: the Gaussian latent samples with mean mu and variance
exp(log_var) and its mean is mu; the deterministic latent is its own mean."""

from __future__ import annotations

import math

import torch

from genreg_builtin.latents import DeterministicConfig, DeterministicLatent, GaussianConfig, GaussianLatent

# --------------------------------------------------------------------------- latents


def test_gaussian_latent_samples_with_mean_mu_and_variance_exp_log_var():
    torch.manual_seed(4)
    latent = GaussianLatent(GaussianConfig(), in_features=3, dim=2)
    with torch.no_grad():  # log_var fixed at (1, -2) so variance and std differ clearly
        latent.project.weight[2:].zero_()
        latent.project.bias[2:] = torch.tensor([1.0, -2.0])
    n = 200_000
    features = torch.randn(1, 3).expand(n, -1)

    with torch.no_grad():
        sample = latent(features)
        mu = latent.mean(features[:1])[0]
    assert sample.z.shape == (n, 2)
    assert set(sample.params) == {"mu", "log_var"} == set(latent.provides)
    torch.testing.assert_close(sample.params["mu"][0], mu)
    torch.testing.assert_close(sample.params["log_var"][0], torch.tensor([1.0, -2.0]))

    var = torch.tensor([math.e, math.exp(-2.0)])
    assert ((sample.z.mean(0) - mu).abs() < 5 * (var / n).sqrt()).all()
    assert ((sample.z.var(0) / var - 1).abs() < 5 * math.sqrt(2 / n)).all()


def test_gaussian_latent_mean_returns_mu_deterministically():
    torch.manual_seed(5)
    latent = GaussianLatent(GaussianConfig(), in_features=6, dim=3)
    features = torch.randn(4, 6)
    with torch.no_grad():
        first, second = latent(features), latent(features)
        mean = latent.mean(features)
    assert mean.shape == (4, 3)
    torch.testing.assert_close(mean, first.params["mu"])
    torch.testing.assert_close(latent.mean(features), mean)
    assert not torch.allclose(first.z, second.z)  # sampling draws fresh noise
    assert latent.sample_prior(7, "cpu").shape == (7, 3)


def test_deterministic_latent_is_its_own_mean():
    latent = DeterministicLatent(DeterministicConfig(), in_features=6, dim=3)
    features = torch.randn(4, 6)
    sample = latent(features)
    assert latent.provides == () and sample.params == {}
    torch.testing.assert_close(sample.z, latent.mean(features))
