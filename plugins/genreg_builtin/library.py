"""A modelled library size: a count likelihood's ``library: modelled`` (scVI's ``use_observed_lib_size=False``).

A row's library size l is a latent variable instead of its observed total (Lopez et al. 2018, Nature Methods
15:1053): a log-normal prior p(log l) = N(m, s^2), m and s the mean and standard deviation of the training split's
log row totals, and a log-normal posterior q(log l | x) = N(mu_l, sigma_l^2) that a small encoder reads off
log(1 + x) (Linear(F, 128)-ReLU-Linear(128, 2)). The likelihood is then a density of x: p(x) = integral of
p(x | z, l) p(z) p(l), and

- training minimises -log p(x | z, l) at a reparameterised draw log l = mu_l + sigma_l eps, plus the closed-form
  KL(q(log l | x) || p(log l)) (both in nats per sample, in the term's value);
- ``log_likelihood`` (what the ELBO and the IWAE bound of ``genreg eval`` read) returns, for one fresh draw of
  log l ~ q, log p(x | z, l) + log p(log l) - log q(log l | x): its expectation is a lower bound of log p(x | z)
  (the ELBO's library part), and importance weights over draws of (z, l) make the IWAE bound of log p(x);
- ``reconstruct`` scales by exp(mu_l), the posterior's median; ``decode`` and ``sample`` by the stored
  ``library_size`` (by default the median row total, about exp(m)).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Normal

#: Hidden units of the library encoder (scVI's l_encoder: one layer of n_hidden = 128)
HIDDEN = 128
#: Smallest standard deviation of the prior (a split whose rows all have one total)
MIN_SPREAD = 1e-2


class LibraryPosterior(nn.Module):
    """q(log l | x) and p(log l) for rows of ``features`` counts; the prior is fitted by :meth:`fit_prior`."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(features, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2))
        self.register_buffer("prior", torch.tensor([math.nan, math.nan]))  # mean and std of log totals

    @torch.no_grad()
    def fit_prior(self, totals: torch.Tensor) -> None:
        """The prior from the training rows' totals (N,) (all positive): the mean and std of their logs; the
        posterior starts at the prior (the encoder's output bias), so that a row's library starts on its scale."""
        self.prior.copy_(_log_normal(totals.double().log()).to(self.prior))
        self.encoder[-1].bias.copy_(torch.stack([self.prior[0], 2 * self.prior[1].log()]))

    def fit_prior_once(self, x: torch.Tensor) -> None:
        """Fit the prior on the first training batch x (B, F) if nothing fitted it, without a host sync."""
        fitted = _log_normal(x.flatten(1).sum(1, dtype=torch.float64).clamp_min(1).log()).to(self.prior)
        self.prior.copy_(torch.where(self.prior.isnan(), fitted, self.prior))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu_l and log sigma_l^2 of q(log l | x), (B, 1) each, float32 at least."""
        h = x.flatten(1).float().log1p()
        mean, log_var = self.encoder(h).float().chunk(2, dim=1)
        return mean, log_var.clamp(-10.0, 10.0)

    def draw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log l ~ q(log l | x), reparameterised (B, 1), and the KL of q to the prior (B,), nats."""
        log_library, posterior, prior = self._sampled(x)
        return log_library, torch.distributions.kl_divergence(posterior, prior).flatten()

    def weighted_draw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log l ~ q(log l | x) (B, 1) and its importance weight log p(log l) - log q(log l | x) (B,), nats."""
        log_library, posterior, prior = self._sampled(x)
        return log_library, (prior.log_prob(log_library) - posterior.log_prob(log_library)).flatten()

    def _sampled(self, x: torch.Tensor) -> tuple[torch.Tensor, Normal, Normal]:
        """A reparameterised draw log l ~ q(log l | x) (B, 1), q itself and the prior p(log l)."""
        mean, log_var = self.posterior(x)
        posterior = Normal(mean, (0.5 * log_var).exp(), validate_args=False)
        # not validated: the prior is NaN until check_data or the first training batch fits it (assembly's check)
        prior = Normal(self.prior[0].to(mean.dtype), self.prior[1].to(mean.dtype), validate_args=False)
        return posterior.rsample(), posterior, prior


def _log_normal(logs: torch.Tensor) -> torch.Tensor:
    """The mean and standard deviation (at least :data:`MIN_SPREAD`; 0 for one value) of log totals (N,), (2,)."""
    spread = logs.std() if len(logs) > 1 else torch.zeros((), dtype=logs.dtype, device=logs.device)
    return torch.stack([logs.mean(), spread.clamp_min(MIN_SPREAD)])
