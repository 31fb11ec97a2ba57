"""Loss terms, one value per example: reconstruction (bernoulli alias bce, gaussian, mse) and the KL divergence.

A reconstruction term reads the decoder's output as the parameters of its likelihood and says, in
``mean(output)``, what the decoded sample is (the likelihood's mean, in the units of the data).
``gaussian`` reads it as the mean of N(x; mean, sigma^2) per feature (sigma fixed or learned per feature),
for real-valued data such as a table's standardised columns, or with ``variance: per-sample`` as two parameter
maps stacked along axis 1, the mean and sigma of every value (``parameter_maps = 2``: the decoder emits
(B, 2F) or (B, 2C, H, W)). For images the decoder emits logits:
``bce`` (also registered as ``bernoulli``) is the Bernoulli negative log-likelihood, the value and
gradient of ``binary_cross_entropy_with_logits`` (numerically safe, equal to Sigmoid +
BCE) computed by :class:`BernoulliNLL`; ``mse`` is the Gaussian alternative on the pixel means sigmoid(logits), a sum
of squared errors (its NLL, which the objective uses, is 0.5 * mse + 0.5 * D log 2 pi).
Each term declares its ``unit``; ``log_likelihood`` marks a likelihood term and
``kl_divergence`` a KL term, which is what the test objective (``neg_elbo``, ``nll``) sums.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.distributions import Normal

from genreg.errors import AssemblyError, DataError, DataWarning
from genreg.model.losses import NATS, LossTermConfig, full_precision
from genreg.plugin.protocols import LatentSample, ModelOutput

#: A feature whose training mean or standard deviation is larger than this is a warning under the Gaussian likelihood.
LARGE_SCALE = 10.0


class BCEConfig(LossTermConfig):
    """Bernoulli reconstruction: BCE with logits, summed over pixels."""


class GaussianConfig(LossTermConfig):
    """Gaussian reconstruction: -log N(x; mean, sigma^2) summed over features; sigma fixed, learned or per-sample.

    With ``variance: per-sample`` it emits sigma too, as a second parameter map (see :class:`Gaussian`).
    """

    variance: Literal["fixed", "learned", "per-sample"] = Field(
        "fixed",
        description="'fixed': sigma as given; 'learned': one sigma per feature, trained with the model; "
        "'per-sample': the decoder predicts sigma of every value of every sample (a second parameter map)",
    )
    sigma: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="the standard deviation (fixed), its starting value (learned), or the sigma a raw decoder "
        "output of 0 stands for (per-sample)",
    )
    min_sigma: float = Field(
        1e-3,
        gt=0,
        allow_inf_nan=False,
        description="per-sample only: the smallest sigma the decoder can predict, in the modelled units (after the "
        "dataset's transform); the "
        "log-density of a value the decoder predicts exactly (a constant feature or pixel) is at most "
        "-log(min_sigma sqrt(2 pi)) nats",
    )

    @model_validator(mode="after")
    def _floor_below_sigma(self) -> GaussianConfig:
        if self.variance == "per-sample" and self.min_sigma >= self.sigma:
            raise ValueError(
                f"min_sigma ({self.min_sigma:g}) must be smaller than sigma ({self.sigma:g}), the sigma a raw "
                "decoder output of 0 stands for"
            )
        return self


class MSEConfig(LossTermConfig):
    """Squared error of sigmoid(logits) for images in [0, 1], summed over pixels: not a likelihood (see gaussian)."""


class KLDConfig(LossTermConfig):
    """KL(q(z|x) || N(0, I)) in closed form, summed over latent dimensions.

    ``free_bits`` (Kingma et al. 2016) floors each dimension's batch-mean KL at
    that many nats, the usual remedy for posterior collapse: a dimension below
    the floor costs a constant, so nothing pushes it further towards the prior.
    The logged ``kld`` is then this floored objective, not the plain KL.
    """

    free_bits: float = Field(0.0, ge=0, allow_inf_nan=False, description="nats per latent dimension (0: plain KL)")


class Term(nn.Module):
    """Holds the config (weight, schedule, name) genreg reads; ``requires`` lists latent params used, ``unit``
    what one value is measured in."""

    requires: tuple[str, ...] = ()
    unit: str = NATS

    def __init__(self, config: LossTermConfig) -> None:
        super().__init__()
        self.config = config


class BCE(Term):
    """Bernoulli negative log-likelihood of the image, in nats: -sum log p(x|z) over pixels, (B,).

    The decoder emits logits; the binary cross-entropy with logits (:class:`BernoulliNLL`, in float32 at least)
    is the exact NLL for x in {0, 1} (for grey levels in [0, 1] it is the usual cross-entropy, unnormalised: not
    a continuous Bernoulli).
    """

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example: what evaluation's ELBO and IWAE estimates need."""
        logits = full_precision(logits)
        return -BernoulliNLL.apply(logits, x.to(logits.dtype)).flatten(1).sum(1)

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        return -self.log_likelihood(x, out.logits)

    @staticmethod
    def mean(logits: torch.Tensor) -> torch.Tensor:
        """The Bernoulli means sigmoid(logits): the decoded image's pixels in [0, 1], of the logits' shape."""
        return torch.sigmoid(logits)

    @staticmethod
    def check_data(samples: torch.Tensor, source: str) -> None:
        """Refuse training samples outside [0, 1], where a Bernoulli likelihood is no likelihood (its "NLL" goes
        negative): raises :class:`~genreg.errors.DataError` naming ``source`` and the range found."""
        low, high = (float(bound) for bound in torch.aminmax(samples))  # one pass
        if low < 0 or high > 1:
            raise DataError(
                f"{source}: the Bernoulli likelihood (loss 'bce' / 'bernoulli') reads values in [0, 1], but the "
                f"training samples range over [{low:.4g}, {high:.4g}]; use the 'gaussian' likelihood for real values."
            )


class Gaussian(Term):
    """Gaussian negative log-likelihood in nats, every constant included: -sum_f log N(x_f; mean_f, sigma_f^2), (B,).

    ``variance: fixed`` or ``learned``: the decoder's output is the mean, in the units of the data, and ``sigma``
    is one fixed value or one per feature (a parameter of shape ``output_shape``, kept as log sigma and trained
    with the model). ``variance: per-sample``: the decoder emits two parameter maps stacked along axis 1
    (``parameter_maps = 2``), the mean and a raw scale r, and sigma = softplus(r + c) + min_sigma with
    c = softplus^-1(sigma - min_sigma), so that r = 0 (a decoder near its start) stands for the configured sigma:
    a heteroscedastic "mean-variance" network (Nix & Weigend 1994). Softplus rather than exp (Kendall & Gal 2017
    predict log sigma^2): sigma grows linearly, not exponentially, with r, so one large output cannot overflow or
    swamp the gradient, and the floor keeps a value the decoder predicts exactly (a constant feature, a blank
    pixel) from driving sigma to 0 and its density to infinity; Lakshminarayanan, Pritzel & Blundell (2017) likewise
    pass the second output through a softplus and add a minimum variance for numerical stability. Computed by
    ``torch.distributions.Normal.log_prob`` in float32 at least.
    """

    def __init__(self, config: GaussianConfig, *, output_shape: tuple[int, ...]) -> None:
        super().__init__(config)
        self.per_sample = config.variance == "per-sample"
        #: the decoder's output: the mean, or the mean and the raw scale, stacked along axis 1
        self.parameter_maps = 2 if self.per_sample else 1
        log_sigma = torch.full(tuple(output_shape), math.log(config.sigma))
        if config.variance == "learned":
            self.log_sigma = nn.Parameter(log_sigma)
        elif not self.per_sample:
            self.register_buffer("log_sigma", log_sigma)
        else:  # softplus^-1(y) = log(expm1(y)) = y + log(1 - exp(-y)), y = sigma - min_sigma: the raw output 0's
            spread = config.sigma - config.min_sigma
            self.offset = spread + math.log(-math.expm1(-spread))

    def parameters_of(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and sigma (B, *sample shape) each, float32 at least, that the decoder's ``output`` stands for."""
        output = full_precision(output)
        if not self.per_sample:
            return output, self.log_sigma.float().exp()
        means, raw = output.chunk(2, dim=1)
        return means, F.softplus(raw + self.offset) + self.config.min_sigma

    def log_likelihood(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example (B,), nats: x (B, *sample shape), output (B, *output shape) the decoder's."""
        means, sigma = self.parameters_of(output)
        likelihood = Normal(means, sigma, validate_args=False)
        return likelihood.log_prob(x.to(means.dtype)).flatten(1).sum(1)

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        return -self.log_likelihood(x, out.logits)

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        """The Gaussian's mean, in the units of the data: the decoder's output, or its first map (per-sample)."""
        return output.chunk(2, dim=1)[0] if self.per_sample else output

    @staticmethod
    def check_data(samples: torch.Tensor, source: str) -> None:
        """Warn (:class:`~genreg.errors.DataWarning`) when some feature's training mean or standard deviation
        exceeds :data:`LARGE_SCALE`: a decoder that starts near 0 fits such data slowly or overflows."""
        flat = samples.flatten(1)  # a view: no float64 copy of a large table
        spreads, means = torch.std_mean(flat, 0) if len(flat) > 1 else (torch.zeros_like(flat[0]), flat[0])
        scale = torch.maximum(means.abs(), spreads)
        worst = int(scale.argmax())
        if float(scale[worst]) > LARGE_SCALE:
            warnings.warn(
                f"{source}: feature {worst} has mean {float(means[worst]):.4g} and standard deviation "
                f"{float(spreads[worst]):.4g}; the Gaussian decoder starts near 0 and may fit such values poorly or "
                "overflow: standardise each feature (subtract its mean, divide by its standard deviation) first.",
                DataWarning,
                stacklevel=2,
            )


class BernoulliNLL(torch.autograd.Function):
    """-log Bernoulli(x; sigmoid(logits)) per element, the value and gradients of
    ``F.binary_cross_entropy_with_logits(logits, x, reduction="none")`` at a third of its CPU time.

    Forward: ``max(l, 0) - x l + log(1 + exp(-|l|))`` (the stable softplus form); backward:
    ``sigmoid(l) - x`` for the logits and ``-l`` for x. torch's own kernel computes the last
    term with ``log1p``, which on x86 CPUs (torch 2.14) is a scalar loop: 520 us for a 128 x 784
    batch against 170 us here (``benchmarks/RESULTS.md``). ``log`` of ``1 + exp(-|l|)`` instead of
    ``log1p`` changes a value by at most 6e-8 nats (the rounding of 1 + e), the same size as
    torch's own error against float64 (tested).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd's ctx
        ctx.save_for_backward(logits, x)
        softplus_tail = logits.abs().neg_().exp_().add_(1).log_()  # log(1 + exp(-|l|))
        return softplus_tail.add_(logits.clamp_min(0)).sub_(x * logits)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # noqa: ANN001
        logits, x = ctx.saved_tensors
        grad_logits = grad * (torch.sigmoid(logits) - x) if ctx.needs_input_grad[0] else None
        grad_x = -grad * logits if ctx.needs_input_grad[1] else None
        return grad_logits, grad_x


class MSE(Term):
    """Sum of squared errors between the image and sigmoid(logits), per image (B,): not nats."""

    unit = "squared error/image"

    def __init__(self, config: MSEConfig, *, output_shape: tuple[int, ...] | None = None) -> None:
        super().__init__(config)
        if output_shape is not None and len(output_shape) == 1:
            raise AssemblyError(
                f"loss 'mse' compares sigmoid(output) with images in [0, 1], but the data's samples are vectors of "
                f"shape {tuple(output_shape)}; use the 'gaussian' likelihood (an exact NLL in nats) for real values."
            )

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log N(x; sigmoid(logits), I) per example: the unit-variance Gaussian this term implies."""
        sse = self.forward(x, ModelOutput(logits, LatentSample(logits)))
        return -0.5 * sse - 0.5 * x[0].numel() * math.log(2 * math.pi)

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        means = torch.sigmoid(full_precision(out.logits))
        return (means - x.to(means.dtype)).square().flatten(1).sum(1)

    @staticmethod
    def mean(logits: torch.Tensor) -> torch.Tensor:
        """sigmoid(logits): the pixel means this term compares with the image."""
        return torch.sigmoid(logits)


class KLD(Term):
    """-0.5 * sum(1 + log_var - mu^2 - exp(log_var)) over latent dimensions, each floored if free_bits > 0."""

    requires: tuple[str, ...] = ("mu", "log_var")

    @staticmethod
    def per_dimension(out: ModelOutput) -> torch.Tensor:
        """KL(q(z_d|x) || N(0, 1)) of every latent dimension, (B, latent dims), nats."""
        mu, log_var = full_precision(out.latent.params["mu"]), full_precision(out.latent.params["log_var"])
        return -0.5 * (1 + log_var - mu.square() - log_var.exp())

    def kl_divergence(self, out: ModelOutput) -> torch.Tensor:
        """The plain KL per example (B,), nats, without free bits: what the negative ELBO adds."""
        return self.per_dimension(out).sum(1)

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        kl = self.per_dimension(out)  # (batch, latent dims)
        floor = self.config.free_bits
        if floor == 0:
            return kl.sum(1)
        # a dimension whose batch mean is under the floor counts as the floor itself, a constant with no
        # gradient, so the batch mean of the result is exactly sum_d max(floor, mean_batch KL_d)
        return torch.where(kl.mean(0) >= floor, kl, floor).sum(1)
