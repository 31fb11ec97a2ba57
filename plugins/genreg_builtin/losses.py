"""Loss terms, one value per example: reconstruction (bce, mse) and the KL divergence.

Decoders emit logits. ``bce`` is the Bernoulli negative log-likelihood computed
with ``binary_cross_entropy_with_logits`` (numerically safe, equal to Sigmoid +
BCE); ``mse`` is the Gaussian alternative on the pixel means sigmoid(logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genreg.losses import LossTermConfig, full_precision
from genreg.protocols import ModelOutput


class BCEConfig(LossTermConfig):
    """Bernoulli reconstruction: BCE with logits, summed over pixels."""


class MSEConfig(LossTermConfig):
    """Gaussian reconstruction: squared error of sigmoid(logits), summed over pixels."""


class KLDConfig(LossTermConfig):
    """KL(q(z|x) || N(0, I)) in closed form, summed over latent dimensions."""


class BCE(nn.Module):
    """Bernoulli negative log-likelihood of the image, in nats."""

    requires: tuple[str, ...] = ()

    def __init__(self, config: BCEConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        logits = full_precision(out.logits)
        bce = F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
        return bce.flatten(1).sum(1)


class MSE(nn.Module):
    """Sum of squared errors between the image and sigmoid(logits)."""

    requires: tuple[str, ...] = ()

    def __init__(self, config: MSEConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        means = torch.sigmoid(full_precision(out.logits))
        return (means - x.to(means.dtype)).square().flatten(1).sum(1)


class KLD(nn.Module):
    """-0.5 * sum(1 + log_var - mu^2 - exp(log_var)) over latent dimensions."""

    requires: tuple[str, ...] = ("mu", "log_var")

    def __init__(self, config: KLDConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        mu, log_var = full_precision(out.latent.params["mu"]), full_precision(out.latent.params["log_var"])
        return -0.5 * (1 + log_var - mu.square() - log_var.exp()).sum(1)
