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


class Term(nn.Module):
    """Holds the config (weight, schedule, name) genreg reads; ``requires`` lists latent params used."""

    requires: tuple[str, ...] = ()

    def __init__(self, config: LossTermConfig) -> None:
        super().__init__()
        self.config = config


class BCE(Term):
    """Bernoulli negative log-likelihood of the image, in nats."""

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        logits = full_precision(out.logits)
        bce = F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
        return bce.flatten(1).sum(1)


class MSE(Term):
    """Sum of squared errors between the image and sigmoid(logits)."""

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        means = torch.sigmoid(full_precision(out.logits))
        return (means - x.to(means.dtype)).square().flatten(1).sum(1)


class KLD(Term):
    """-0.5 * sum(1 + log_var - mu^2 - exp(log_var)) over latent dimensions."""

    requires: tuple[str, ...] = ("mu", "log_var")

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        mu, log_var = full_precision(out.latent.params["mu"]), full_precision(out.latent.params["log_var"])
        return -0.5 * (1 + log_var - mu.square() - log_var.exp()).sum(1)
