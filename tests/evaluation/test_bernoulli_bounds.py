"""The -ELBO and IWAE NLL of genreg's own Bernoulli likelihood (``bce``) against log p(x) computed exactly.

A model of D binary pixels with a 1-D latent: p(z) = N(0, 1), p(x_d | z) = Bernoulli(sigmoid(w_d z + b_d)).
log p(x) = log of the integral of N(z) prod_d p(x_d | z) over z, and the ELBO of q(z|x) = N(m, s^2) is the
integral of q(z) (log p(x|z) + log p(z) - log q(z)): both by quadrature on a fine grid, in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import genreg
from genreg.evaluation import metrics as evaluation
from genreg_builtin.latents import GaussianConfig, GaussianLatent
from genreg_builtin.losses import BCE, BCEConfig

D = 6
GRID = torch.linspace(-12, 12, 200_001, dtype=torch.float64)


class Pixels(nn.Module):
    """Encoder: the pixels are the features."""

    out_features = D

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return x.flatten(1)


class Logits(nn.Module):
    """Decoder: logits w z + b of D pixels, as (1, 1, D) images."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(1, D)
        with torch.no_grad():
            self.linear.weight.copy_(w[:, None])
            self.linear.bias.copy_(b)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return self.linear(z).view(-1, 1, 1, D)


def bernoulli_model(m: float, log_var: float) -> tuple[genreg.GenerativeModel, torch.Tensor, torch.Tensor]:
    """The model with q(z|x) = N(m, exp(log_var)) for every x, and its w and b (float64)."""
    g = torch.Generator().manual_seed(0)
    w, b = 2.0 * torch.randn(D, generator=g, dtype=torch.float64), torch.randn(D, generator=g, dtype=torch.float64)
    latent = GaussianLatent(GaussianConfig(), in_features=D, dim=1)
    with torch.no_grad():
        latent.project.weight.zero_()
        latent.project.bias.copy_(torch.tensor([m, log_var]))
    model = genreg.GenerativeModel(
        encoder=Pixels(),
        latent=latent,
        decoder=Logits(w, b),
        losses=[BCE(BCEConfig())],
        data=genreg.DataInfo((1, 1, D), 1),
    )
    return model.eval(), w, b


def log_p_x_given_z(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log p(x | z) on the grid: (N, grid points), float64."""
    logits = GRID[None, :, None] * w + b  # (1, G, D)
    return -torch.nn.functional.softplus(-logits * (2 * x[:, None, :] - 1)).sum(-1)


def integral(values: torch.Tensor) -> torch.Tensor:
    """The trapezoidal integral over the grid of values (N, G)."""
    return torch.trapezoid(values, GRID, dim=-1)


@pytest.mark.parametrize(("m", "log_var"), [(0.0, 0.0), (0.4, math.log(0.5))])
def test_the_bounds_of_a_bernoulli_likelihood_are_log_p_x_computed_by_quadrature(m: float, log_var: float) -> None:
    model, w, b = bernoulli_model(m, log_var)
    x = torch.bernoulli(torch.full((16, D), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    prior, q = torch.distributions.Normal(0.0, 1.0), torch.distributions.Normal(m, math.exp(0.5 * log_var))
    likelihood = log_p_x_given_z(x, w, b)  # (N, G)
    exact = torch.log(integral(torch.exp(likelihood + prior.log_prob(GRID))))  # log p(x), (N,)
    q_density = q.log_prob(GRID).exp()
    elbo = integral(q_density * (likelihood + prior.log_prob(GRID) - q.log_prob(GRID)))
    split = genreg.Split(x.float().view(-1, 1, 1, D), torch.zeros(16, dtype=torch.long))
    result = evaluation.likelihood_bounds(model, split, k=20_000, precision="fp32")
    # 20,000 draws of a 1-D latent: the IWAE estimate of log p(x) is within ~0.01 nat of it (measured at most
    # 0.005, seeds 0-2), the ELBO's Monte-Carlo mean within ~0.02 (measured at most 0.011) over 16 images; the two
    # bounds differ by 2.3-2.6 nats
    assert result["nll_iwae"] == pytest.approx(-float(exact.mean()), abs=0.02)
    assert result["neg_elbo"] == pytest.approx(-float(elbo.mean()), abs=0.03)
    assert float(elbo.mean()) < float(exact.mean())  # the ELBO is a lower bound
