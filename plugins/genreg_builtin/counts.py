"""Count likelihoods: ``poisson``, ``negative-binomial`` and ``zero-inflated-negative-binomial``, as in scVI.

For count data x (N, F) of non-negative integers (a cell's reads per gene, say), the decoder predicts expression
*proportions*: a softmax over the features of its output (one map; ZINB emits a second, the dropout logits). The
observed library size l = x.sum(1), a row's total count, scales them to the mean mu = l * softmax(output)
(Lopez et al. 2018, Nature Methods 15:1053). Every value is an exact negative log-likelihood in nats per sample,
summed over the features:

- ``poisson``: Poisson(x; mu), the log-pmf of ``torch.distributions.Poisson`` (x log mu - mu - log x!) written on
  log mu = log_softmax(output) + log l, so that a proportion that underflows to 0 cannot make it -inf or NaN.
- ``negative-binomial``: NB(x; mu, theta) with a learned inverse dispersion theta per feature (a parameter of the
  sample's shape, kept as log theta): variance mu + mu^2 / theta. ``torch.distributions.NegativeBinomial`` counts
  the successes before ``total_count`` failures, success probability ``probs``, mean total_count p / (1 - p); so
  total_count = theta and p = mu / (mu + theta) give the mean mu. It is given as logits, log mu - log theta.
- ``zero-inflated-negative-binomial``: with probability pi = sigmoid(dropout logit) a value is a zero; otherwise
  NB(x; mu, theta). The decoder emits two maps stacked along axis 1 (``parameter_maps = 2``): the rate logits and
  the dropout logits. Its mean is (1 - pi) mu.

Library size. Training and evaluation observe it: each row's own total. ``mean(output)`` (what ``decode``,
``sample`` and ``reconstruct`` return) sees no data, so it scales the proportions by ``library_size``: the configured
value, or by default the median row total of the training split, which ``check_data`` (run by ``genreg run`` and
``genreg validate``) stores; a model trained from Python without ``check_data`` takes the median row total of its
first training batch instead. The value is a buffer, saved in the model file. A decoded sample is the distribution's
mean for a row of that library size, in the data's units (counts, not integers).

Rules for the data (``check_data``, training split): every value a finite non-negative integer, and no row whose
total is 0 (a row of all zeros has no proportions: its mean is 0 whatever the decoder says, so it teaches nothing).
Such a row met in evaluation has log-likelihood 0 (up to 1e-8 nats): under mu = 0 a zero has probability 1.
A dataset ``transform`` (log1p, standardize) makes values non-integer and is refused this way: counts are modelled
as they are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.distributions import NegativeBinomial

from genreg.errors import DataError
from genreg.model.losses import NATS, LossTermConfig, full_precision
from genreg.plugin.protocols import ModelOutput

#: The library size a row of total 0 is given in the log-likelihood: its mean is ~0, so a zero has probability ~1.
EMPTY_ROW = 1e-8


class CountConfig(LossTermConfig):
    """A count likelihood: the decoder's softmax over features, scaled by the row's total count (observed)."""

    library_size: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="the total count a decoded or sampled row stands for (decode, sample, reconstruct); "
        "default: the training split's median row total",
    )


class PoissonConfig(CountConfig):
    """Poisson reconstruction of counts: -log Poisson(x; l softmax(output)) summed over features."""


class NegativeBinomialConfig(CountConfig):
    """Negative-binomial reconstruction of counts, mean l softmax(output), inverse dispersion theta per feature."""

    theta: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="the starting value of every feature's inverse dispersion theta "
        "(learned; variance mu + mu^2/theta)",
    )


class ZINBConfig(NegativeBinomialConfig):
    """Zero-inflated negative binomial: a second decoder map gives each value's dropout logit."""


class CountTerm(nn.Module):
    """What the three count likelihoods share: the observed library size, the stored one, the data's checks."""

    requires: tuple[str, ...] = ()
    unit: str = NATS
    #: the likelihood's name in messages
    label = "count"

    def __init__(self, config: CountConfig, *, output_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.config = config
        self.parameter_maps = 1
        # NaN until check_data (or the first training batch) sets it, unless the config gives it
        size = math.nan if config.library_size is None else config.library_size
        self.register_buffer("library_size", torch.tensor(size, dtype=torch.float64))

    def rates(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, F) as floats and log mu (B, F), flattened, float32 at least; mu = x.sum(1) softmax(output)."""
        logits = full_precision(output.chunk(self.parameter_maps, dim=1)[0]).flatten(1)
        x = x.flatten(1).to(logits.dtype)
        totals = x.sum(1, keepdim=True).clamp_min(EMPTY_ROW)
        return x, F.log_softmax(logits, dim=1) + totals.log()

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        if self.training and self.config.library_size is None:
            self._first_batch_size(x)
        return -self.log_likelihood(x, out.logits)

    @torch.no_grad()
    def _first_batch_size(self, x: torch.Tensor) -> None:
        """Without ``check_data``: the first training batch's median row total, without a host sync (graph-safe)."""
        median = median_total(x).to(self.library_size)
        self.library_size.copy_(torch.where(self.library_size.isnan(), median, self.library_size))

    def proportions(self, output: torch.Tensor) -> torch.Tensor:
        """softmax(output's first map) over the features, of the sample's shape."""
        first = full_precision(output.chunk(self.parameter_maps, dim=1)[0])
        return F.softmax(first.flatten(1), dim=1).view_as(first)

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        """The mean counts of a row of ``library_size`` total count: library_size * softmax(output), data units."""
        return self.proportions(output) * self.library_size.to(full_precision(output).dtype)

    def check_data(self, samples: torch.Tensor, source: str) -> None:
        """Refuse (:class:`~genreg.errors.DataError` naming ``source``) a value that is not a finite non-negative
        integer, or a row whose total is 0; store the median row total as the library size ``mean`` scales by."""
        flat = samples.flatten(1)
        bad = ~torch.isfinite(flat) | (flat < 0) | (flat != flat.round())
        if bool(bad.any()):
            row, feature = (int(i) for i in bad.nonzero()[0])
            raise DataError(
                f"{source}: a count likelihood (loss '{self.label}') reads non-negative integers; got "
                f"{float(flat[row, feature]):.6g} at row {row}, feature {feature} of the training samples. Give it "
                "raw counts (no log1p or standardize transform), or use the 'gaussian' likelihood for real values."
            )
        totals = flat.sum(1, dtype=torch.float64)
        empty = (totals == 0).nonzero()
        if len(empty):
            raise DataError(
                f"{source}: row {int(empty[0])} of the training samples (and {len(empty) - 1} more) has a total count "
                f"of 0; a count likelihood (loss '{self.label}') scales the decoder's proportions by each row's "
                "observed total, and a row of all zeros has no proportions: drop such rows first."
            )
        if self.config.library_size is None:
            self.library_size.copy_(median_total(flat))


def median_total(x: torch.Tensor) -> torch.Tensor:
    """The median of the rows' totals (the mean of the two middle ones for an even count), float64, 0-d."""
    totals = x.flatten(1).sum(1, dtype=torch.float64).sort().values
    n = len(totals)
    return (totals[(n - 1) // 2] + totals[n // 2]) / 2


class Poisson(CountTerm):
    """Poisson negative log-likelihood in nats, every constant included: -sum_f log Poisson(x_f; mu_f), (B,)."""

    label = "poisson"

    def log_likelihood(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example (B,), nats: x log mu - mu - log x! summed over features."""
        x, log_mu = self.rates(x, output)
        return (x * log_mu - log_mu.exp() - torch.lgamma(x + 1)).sum(1)


class NegativeBinomialTerm(CountTerm):
    """Negative-binomial negative log-likelihood in nats: -sum_f log NB(x_f; mu_f, theta_f), (B,).

    theta, one per feature, is trained with the model (kept as log theta, of the sample's shape).
    """

    label = "negative-binomial"

    def __init__(self, config: NegativeBinomialConfig, *, output_shape: tuple[int, ...]) -> None:
        super().__init__(config, output_shape=output_shape)
        self.log_theta = nn.Parameter(torch.full(tuple(output_shape), math.log(config.theta)))

    def distribution(self, x: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, NegativeBinomial]:
        """x (B, F) as floats and NB(total_count=theta, logits=log mu - log theta): mean mu, p = mu / (mu + theta)."""
        x, log_mu = self.rates(x, output)
        log_theta = self.log_theta.to(log_mu.dtype).flatten()
        nb = NegativeBinomial(total_count=log_theta.exp(), logits=log_mu - log_theta, validate_args=False)
        return x, nb

    def log_likelihood(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example (B,), nats."""
        x, nb = self.distribution(x, output)
        return nb.log_prob(x).sum(1)


class ZINB(NegativeBinomialTerm):
    """Zero-inflated negative binomial NLL in nats: a value is a zero with probability pi = sigmoid(d), else
    NB(mu, theta); the decoder emits the rate logits and the dropout logits d, two maps along axis 1."""

    label = "zero-inflated-negative-binomial"

    def __init__(self, config: ZINBConfig, *, output_shape: tuple[int, ...]) -> None:
        super().__init__(config, output_shape=output_shape)
        self.parameter_maps = 2

    def log_likelihood(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example (B,), nats: log(pi + (1 - pi) NB(0)) for a zero, log(1 - pi) + log NB(x) else."""
        x, nb = self.distribution(x, output)
        dropout = full_precision(output.chunk(2, dim=1)[1]).flatten(1)
        log_nb = nb.log_prob(x)
        kept = F.logsigmoid(-dropout)  # log(1 - pi)
        zero = torch.logaddexp(F.logsigmoid(dropout), kept + log_nb)
        return torch.where(x == 0, zero, kept + log_nb).sum(1)

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        """(1 - pi) library_size softmax(rate logits): the mean counts of a row of ``library_size`` total."""
        dropout = full_precision(output.chunk(2, dim=1)[1])
        return super().mean(output) * torch.sigmoid(-dropout)
