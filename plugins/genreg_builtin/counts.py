"""Count likelihoods: ``poisson``, ``negative-binomial`` and ``zero-inflated-negative-binomial``, as in scVI.

For count data x (N, F) of non-negative integers (a cell's reads per gene, say), the decoder predicts expression
*proportions*: a softmax over the features of its output (one map; ZINB emits a second, the dropout logits). The
observed library size l = x.sum(1), a row's total count, scales them to the mean mu = l * softmax(output)
(Lopez et al. 2018, Nature Methods 15:1053). Every value is an exact negative log-likelihood in nats per sample,
summed over the features, given the observed library size: -log p(x | z, l), as scVI's. It is not a density of x
alone (the Poisson's, say, is a multinomial's plus -log Poisson(l; l), about 0.5 log(2 pi l)), so compare it with
models whose likelihood observes l too, not with a Gaussian on log1p values of the same data. ``library:
modelled`` makes l a latent variable instead (:mod:`genreg_builtin.library`): then the bounds are of log p(x).

- ``poisson``: Poisson(x; mu), the log-pmf of ``torch.distributions.Poisson`` (x log mu - mu - log x!) written on
  log mu = log_softmax(output) + log l, so that a proportion that underflows to 0 cannot make it -inf or NaN.
- ``negative-binomial``: NB(x; mu, theta) with a learned inverse dispersion theta per feature (a parameter of the
  sample's shape, kept as log theta): variance mu + mu^2 / theta. ``torch.distributions.NegativeBinomial`` counts
  the successes before ``total_count`` failures, success probability ``probs``, mean total_count p / (1 - p); so
  total_count = theta and p = mu / (mu + theta) give the mean mu (logits log mu - log theta). Training computes
  that log-pmf written out (:class:`NegativeBinomialLogPmf`, tested equal to the distribution's, values and
  gradients), its lgamma and digamma on the non-zero counts only (``benchmarks/bench_scvi.py``: a step of
  its model a quarter shorter).
- ``zero-inflated-negative-binomial``: with probability pi = sigmoid(dropout logit) a value is a zero; otherwise
  NB(x; mu, theta). The decoder emits two maps stacked along axis 1 (``parameter_maps = 2``): the rate logits and
  the dropout logits. Its mean is (1 - pi) mu.

Library size. Training, evaluation and ``reconstruct`` observe it: each row's own total (``reconstruct`` and
eval's R² give the mean counts for the row's own library size, ``mean_given``). ``mean(output)`` (what ``decode``
and ``sample`` return) sees no data, so it scales the proportions by ``library_size``: the configured value, or by
default the median row total of the training split, which ``check_data`` (run by ``genreg run`` and ``genreg
validate``) stores; a model trained from Python without ``check_data`` takes the median row total of its first
training batch instead. The value is a buffer, saved in the model file. A decoded sample is the distribution's mean
for a row of that library size, in the data's units (counts, not integers).

Rules for the data (``check_data``, training split): every value a finite non-negative integer, and no row whose
total is 0 (a row of all zeros has no proportions: its mean is 0 whatever the decoder says, so it teaches nothing).
Such a row met in evaluation has log-likelihood 0 (up to 1e-8 nats): under mu = 0 a zero has probability 1.
A dataset ``transform`` (log1p, standardize) makes values non-integer and is refused this way: counts are modelled
as they are.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.distributions import NegativeBinomial

from genreg.data.sparse import RowStore, row_chunks
from genreg.errors import DataError
from genreg.model.losses import NATS, LossTermConfig, full_precision
from genreg.plugin.protocols import ModelOutput
from genreg_builtin.library import LibraryPosterior

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
    library: Literal["observed", "modelled"] = Field(
        "observed",
        description="each row's library size: its observed total count, or a latent variable with a log-normal "
        "prior fitted to the training split and a posterior read off the counts (scVI's "
        "use_observed_lib_size=False; see genreg_builtin.library)",
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
    #: ``check_data`` reads sparse rows a chunk at a time (no dense copy of the training split)
    reads_sparse = True
    #: what the encoder should read (model assembly warns if an encoder with an ``input`` setting reads raw counts)
    encoder_input = "log1p"
    #: the likelihood's name in messages
    label = "count"

    def __init__(self, config: CountConfig, *, output_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.config = config
        self.parameter_maps = 1
        # NaN until check_data (or the first training batch) sets it, unless the config gives it
        size = math.nan if config.library_size is None else config.library_size
        self.register_buffer("library_size", torch.tensor(size, dtype=torch.float64))
        modelled = config.library == "modelled"
        self.library = LibraryPosterior(math.prod(output_shape or (1,))) if modelled else None

    def rates(
        self, x: torch.Tensor, output: torch.Tensor, log_library: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, F) as floats and log mu (B, F), flattened, float32 at least; mu = l softmax(output), l each row's
        observed total x.sum(1), or exp(``log_library``) (B, 1) when given."""
        logits = full_precision(output.chunk(self.parameter_maps, dim=1)[0]).flatten(1)
        x = x.flatten(1).to(logits.dtype)
        if log_library is None:
            log_library = x.sum(1, keepdim=True).clamp_min(EMPTY_ROW).log()
        return x, F.log_softmax(logits, dim=1) + log_library.to(logits.dtype)

    def log_likelihood(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example (B,), nats, given the observed library size; with ``library: modelled``, for one
        draw of log l ~ q(log l | x), log p(x|z,l) + log p(log l) - log q(log l | x) (see genreg_builtin.library)."""
        if self.library is None:
            return self.values(x, output).sum(1)
        log_library, weight = self.library.weighted_draw(x)
        return self.values(x, output, log_library).sum(1) + weight

    def forward(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        if self.training and self.config.library_size is None:
            self._first_batch_size(x)
        if self.library is None:
            return -self.log_likelihood(x, out.logits)
        if self.training:
            self.library.fit_prior_once(x)
        log_library, kl = self.library.draw(x)
        return -self.values(x, out.logits, log_library).sum(1) + kl

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
        return self.expected(output, self.library_size.to(full_precision(output).dtype))

    def mean_given(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The mean counts for reconstructing x (B, F): each row's proportions scaled by its own total x.sum(1), or
        with ``library: modelled`` by exp(mu_l), the median of its posterior."""
        if self.library is None:
            totals = x.flatten(1).sum(1, dtype=torch.float64)
        else:
            totals = self.library.posterior(x)[0].flatten().exp()
        return self.expected(output, totals.to(full_precision(output).dtype).view(-1, *[1] * (output.dim() - 1)))

    def expected(self, output: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """The distribution's mean for rows of total count ``size`` (0-d, or (B, 1) broadcast): size * softmax."""
        return self.proportions(output) * size

    def check_data(self, samples: torch.Tensor | RowStore, source: str) -> None:
        """Refuse (:class:`~genreg.errors.DataError` naming ``source``) a value that is not a finite non-negative
        integer, or a row whose total is 0 (see :meth:`check_values`); store the median row total as the library
        size ``mean`` scales by (and, with ``library: modelled``, the library's prior)."""
        totals = self.check_values(samples, source)
        if self.config.library_size is None:
            self.library_size.copy_(median_of(totals))
        if self.library is not None:
            self.library.fit_prior(totals)

    def check_values(
        self, samples: torch.Tensor | RowStore, source: str, what: str = "the training samples"
    ) -> torch.Tensor:
        """The row totals (N,) float64 of ``samples`` (``what``: "the training samples", "the test samples", "the
        new data"), read a chunk of rows at a time (a row store too); a value that is not a finite non-negative
        integer, or a row whose total is 0, is a :class:`~genreg.errors.DataError` naming ``source``, the row and
        the feature."""
        totals = torch.cat([self._checked_totals(chunk, start, source, what) for start, chunk in row_chunks(samples)])
        empty = (totals == 0).nonzero().flatten().tolist()
        if empty:
            more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
            raise DataError(
                f"{source}: row {empty[0]} of {what}{more} has a total count of 0; a count likelihood (loss "
                f"'{self.label}') scales the decoder's proportions by each row's observed total, and a row of all "
                "zeros has no proportions: drop such rows first."
            )
        return totals

    def _checked_totals(self, chunk: torch.Tensor, start: int, source: str, what: str) -> torch.Tensor:
        """The row totals of the rows ``chunk`` (float64), which begin at row ``start``; a value that is not a
        finite non-negative integer is a :class:`DataError` naming its row and feature."""
        flat = chunk.flatten(1)
        bad = ~torch.isfinite(flat) | (flat < 0) | (flat != flat.round())
        if bool(bad.any()):
            row, feature = (int(i) for i in bad.nonzero()[0])
            raise DataError(
                f"{source}: a count likelihood (loss '{self.label}') reads non-negative integers; got "
                f"{float(flat[row, feature]):.6g} at row {start + row}, feature {feature} of {what}. Give it raw "
                "counts: no log1p or standardize transform, and for an .h5ad the layer that holds them (`layer`, "
                "e.g. 'counts' or 'raw'); or use the 'gaussian' likelihood for real values."
            )
        return flat.sum(1, dtype=torch.float64)


def median_total(x: torch.Tensor) -> torch.Tensor:
    """The median of the rows' totals (the mean of the two middle ones for an even count), float64, 0-d."""
    return median_of(x.flatten(1).sum(1, dtype=torch.float64))


def median_of(values: torch.Tensor) -> torch.Tensor:
    """The median of (N,) values, the mean of the two middle ones for an even N, 0-d."""
    ordered = values.sort().values
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


class Poisson(CountTerm):
    """Poisson negative log-likelihood in nats, every constant included: -sum_f log Poisson(x_f; mu_f), (B,)."""

    label = "poisson"

    def values(self, x: torch.Tensor, output: torch.Tensor, log_library: torch.Tensor | None = None) -> torch.Tensor:
        """log Poisson(x; mu) of every value (B, F), nats: x log mu - mu - log x!."""
        x, log_mu = self.rates(x, output, log_library)
        return x * log_mu - log_mu.exp() - torch.lgamma(x + 1)


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

    def values(self, x: torch.Tensor, output: torch.Tensor, log_library: torch.Tensor | None = None) -> torch.Tensor:
        """log NB(x; mu, theta) of every value (B, F), nats: :class:`NegativeBinomialLogPmf`, the log-pmf of
        :meth:`distribution` and its gradients (tested equal to it) at under half its CPU time."""
        x, log_mu = self.rates(x, output, log_library)
        on_cpu = x.device.type == "cpu"  # lgamma and digamma of the non-zero counts only (see the class)
        return NegativeBinomialLogPmf.apply(log_mu, self.log_theta.to(log_mu.dtype).flatten(), x, on_cpu)


class ZINB(NegativeBinomialTerm):
    """Zero-inflated negative binomial NLL in nats: a value is a zero with probability pi = sigmoid(d), else
    NB(mu, theta); the decoder emits the rate logits and the dropout logits d, two maps along axis 1."""

    label = "zero-inflated-negative-binomial"

    def __init__(self, config: ZINBConfig, *, output_shape: tuple[int, ...]) -> None:
        super().__init__(config, output_shape=output_shape)
        self.parameter_maps = 2

    def values(self, x: torch.Tensor, output: torch.Tensor, log_library: torch.Tensor | None = None) -> torch.Tensor:
        """log ZINB of every value (B, F), nats: log(pi + (1 - pi) NB(0)) for a zero, log(1 - pi) + log NB(x) else."""
        log_nb = super().values(x, output, log_library)
        x = x.flatten(1).to(log_nb.dtype)
        dropout = full_precision(output.chunk(2, dim=1)[1]).flatten(1)
        kept = F.logsigmoid(-dropout)  # log(1 - pi)
        zero = torch.logaddexp(F.logsigmoid(dropout), kept + log_nb)
        return torch.where(x == 0, zero, kept + log_nb)

    def expected(self, output: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """(1 - pi) size softmax(rate logits): the mean counts of rows of total count ``size``."""
        dropout = full_precision(output.chunk(2, dim=1)[1])
        return super().expected(output, size) * torch.sigmoid(-dropout)


class NegativeBinomialLogPmf(torch.autograd.Function):
    """log NB(x; mu, theta) per value, from log mu (B, F), log theta (F,) and counts x (B, F), with its gradients
    written out: the log-pmf of ``torch.distributions.NegativeBinomial(total_count=theta, logits=log mu - log
    theta)``, theta log theta - (x + theta) log(theta + mu) + x log mu + lgamma(x + theta) - lgamma(theta) -
    lgamma(x + 1), in the form scVI writes it (``log_nb_positive``, Lopez et al. 2018).

    Why not the distribution's own: its log_prob evaluates lgamma three times over (B, F) and autograd two digammas
    (over half the time of a training step on 2,000 genes). Here lgamma and digamma run on the non-zero counts only
    (each of their terms is 0 where x = 0: lgamma(0 + theta) - lgamma(theta)), ~5% of a single-cell batch, when
    ``only_counted`` (on the CPU); else over every value (on CUDA, where ``nonzero`` would wait for the device).
    Gradients: d/d log mu = x - (x + theta) mu / (theta + mu); d/d log theta = theta (log theta + 1 - log(theta +
    mu) - (x + theta) / (theta + mu) + digamma(x + theta) - digamma(theta)).
    """

    @staticmethod
    def forward(  # noqa: ANN001 - autograd's ctx
        ctx, log_mu: torch.Tensor, log_theta: torch.Tensor, x: torch.Tensor, only_counted: bool
    ) -> torch.Tensor:
        theta = log_theta.exp()
        total = x + theta
        log_total = torch.logaddexp(log_theta, log_mu)  # log(theta + mu)
        values = x * log_mu - total * log_total + theta * log_theta
        ctx.where = x.nonzero(as_tuple=True) if only_counted else None
        counts, shapes = _counted(x, theta, ctx.where)
        gammas = torch.lgamma(counts + shapes) - torch.lgamma(shapes) - torch.lgamma(counts + 1)
        if ctx.where is None:
            values += gammas
        else:
            values[ctx.where] += gammas
        ctx.save_for_backward(log_theta, total, log_total, counts, shapes)
        return values

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:  # noqa: ANN001
        log_theta, total, log_total, counts, shapes = ctx.saved_tensors
        theta = log_theta.exp()
        ratio = total * (-log_total).exp()  # (x + theta) / (theta + mu)
        grad_mu = grad * theta * (ratio - 1) if ctx.needs_input_grad[0] else None  # = grad (x - (x + theta) share)
        if not ctx.needs_input_grad[1]:
            return grad_mu, None, None, None
        per_value = grad * ((log_theta + 1) - log_total - ratio)
        digammas = torch.digamma(counts + shapes) - torch.digamma(shapes)
        if ctx.where is None:
            grad_theta = (per_value + grad * digammas).sum(0)
        else:
            grad_theta = per_value.sum(0).index_add(0, ctx.where[1], grad[ctx.where] * digammas)
        return grad_mu, grad_theta * theta, None, None


def _counted(
    x: torch.Tensor, theta: torch.Tensor, where: tuple[torch.Tensor, torch.Tensor] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The counts and their features' theta where lgamma and digamma are computed: at the positions ``where`` (the
    non-zero counts), or everywhere ((B, F) each) for None."""
    if where is None:
        return x, theta.expand_as(x)
    return x[where], theta[where[1]]
