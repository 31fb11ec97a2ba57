"""Latent layers: features -> z. Deterministic for an AE, Gaussian for (c)VAEs."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from genreg.plugin.protocols import LatentSample


class DeterministicConfig(BaseModel):
    """Deterministic code z = W h + b (autoencoder); size from the recipe's latent_dim."""

    model_config = ConfigDict(extra="forbid")


class GaussianConfig(DeterministicConfig):
    """Gaussian q(z|x) = N(mu, exp(log_var)) with reparameterised sampling; prior N(0, I)."""


class StandardNormalPrior:
    """Sampling from N(0, I), the prior of a VAE (and the naive choice for an AE)."""

    dim: int

    def sample_prior(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.randn(n, self.dim, device=device)


class DeterministicLatent(StandardNormalPrior, nn.Module):
    """z = W features + b: features (B, in_features) -> z (B, dim). An AE has no prior: samples from N(0, I)
    show its holes."""

    provides: tuple[str, ...] = ()

    def __init__(self, config: DeterministicConfig, *, in_features: int, dim: int) -> None:
        super().__init__()
        self.config = config
        self.dim = dim
        self.project = nn.Linear(in_features, dim)

    def forward(self, features: torch.Tensor) -> LatentSample:
        return LatentSample(self.project(features))

    def mean(self, features: torch.Tensor) -> torch.Tensor:
        return self.project(features)


class GaussianLatent(StandardNormalPrior, nn.Module):
    """q(z|x) = N(mu, diag(exp(log_var))), sampled by reparameterisation: z = mu + exp(0.5 log_var) eps.

    features (B, in_features) -> z, mu, log_var (B, dim). Kingma & Welling 2014, "Auto-Encoding
    Variational Bayes".
    """

    provides: tuple[str, ...] = ("mu", "log_var")

    def __init__(self, config: GaussianConfig, *, in_features: int, dim: int) -> None:
        super().__init__()
        self.config = config
        self.dim = dim
        self.project = nn.Linear(in_features, 2 * dim)

    def forward(self, features: torch.Tensor) -> LatentSample:
        mu, log_var = self.project(features).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        return LatentSample(z, {"mu": mu, "log_var": log_var})

    def mean(self, features: torch.Tensor) -> torch.Tensor:
        return self.project(features)[:, : self.dim]
