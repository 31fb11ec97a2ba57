"""What each component kind must provide. Factories are called with the kind's context.

============  ==============================================================  ========================
kind          factory call                                                    the built object
============  ==============================================================  ========================
conditioner   ``factory(config, num_classes=int)``                            :class:`Conditioner`
encoder       ``factory(config, input_shape=(C,H,W), condition_dim=int)``     :class:`Encoder`
latent        ``factory(config, in_features=int, dim=int)``                   :class:`Latent`
decoder       ``factory(config, latent_dim=int, condition_dim=int,            :class:`Decoder`
              output_shape=(maps*C,H,W))``
loss          ``factory(config)``                                             :class:`LossTerm`
dataset       ``factory(config)``                                             :class:`genreg.data.DataSplits`
model         ``factory(config, data=DataInfo)``                              :class:`genreg.GenerativeModel`
schedule      ``factory(config, epochs=int | None)``                          :class:`Schedule`
callback      ``factory(config)``                                             hooks, :mod:`genreg.training.callbacks`
============  ==============================================================  ========================

``condition_dim`` is 0 and the condition argument ``None`` for unconditional models.
A decoder's ``output_shape`` is the sample's shape (C, H, W) or (F,) with its first axis
multiplied by the number of parameter maps the likelihood term reads (its
``parameter_maps``, 1 unless it says otherwise): (2C, H, W) or (2F,) for ``gaussian``
with ``variance: per-sample``, which reads a mean and a scale.
A model may have several conditioners, each reading one data column (its spec's
``column``, default ``label``); the encoder and decoder get their vectors
concatenated, so ``condition_dim`` is the sum of their ``dim``. For a continuous
column ``num_classes`` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch


@dataclass
class LatentSample:
    """A latent code and the distribution parameters its loss terms read (e.g. mu, log_var)."""

    z: torch.Tensor
    params: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ModelOutput:
    """One forward pass: the decoder's output (logits in the data's shape, or the likelihood's parameter maps
    stacked along axis 1) plus the latent sample."""

    logits: torch.Tensor
    latent: LatentSample


@runtime_checkable
class Conditioner(Protocol):
    """Values of its column (B,) -> condition vectors (B, dim).

    The values are class indices (int64) unless the part sets ``continuous = True``
    (then floats). A part that needs statistics of its column (a standardisation,
    say) may define ``fit(values)``: genreg calls it with the training split's column
    before training; keep what it computes in buffers, so the model file saves it.
    A continuous part should also have ``low`` and ``high`` (floats or 0-d tensors):
    the range of values pictures span (a sample grid's columns; the built-in
    ``continuous`` takes the 5th and 95th percentiles of the training values), and
    may have ``mean`` (the value pictures hold the column at, default 0.0). Without
    ``low``/``high`` pictures span ``mean`` -/+ 2 ``std``, else -2..2, with a
    :class:`~genreg.errors.PictureWarning` (see :func:`genreg.model.conditions.value_range`).
    A categorical part that can take classes it was not trained on defines
    ``extend(count)`` and ``class_parameters()`` (see :mod:`genreg.model.extend`).
    """

    dim: int

    def __call__(self, values: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Encoder(Protocol):
    """Images (B, C, H, W) and condition (B, condition_dim) or None -> features (B, out_features)."""

    out_features: int

    def __call__(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor: ...


@runtime_checkable
class Latent(Protocol):
    """Features -> :class:`LatentSample`; ``provides`` names the params it fills."""

    dim: int
    provides: tuple[str, ...]

    def __call__(self, features: torch.Tensor) -> LatentSample: ...

    def mean(self, features: torch.Tensor) -> torch.Tensor:
        """The deterministic code (the posterior mean) for ``features``."""
        ...

    def sample_prior(self, n: int, device: torch.device) -> torch.Tensor:
        """``n`` draws from the prior the decoder is sampled with."""
        ...


@runtime_checkable
class Decoder(Protocol):
    """z (B, latent_dim) and condition or None -> the likelihood's parameters, (B, *output_shape): of the sample's
    shape, (B, C, H, W) for images (Bernoulli logits, say), (B, F) for vectors (a Gaussian's mean, say), when the
    likelihood reads one parameter map; with ``parameter_maps = k``, k maps stacked along axis 1, (B, k C, H, W)
    or (B, k F) (a Gaussian's mean and scale for k = 2)."""

    def __call__(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor: ...


@runtime_checkable
class LossTerm(Protocol):
    """x (B, C, H, W) or (B, F) and the :class:`ModelOutput` -> one value per example, shape (B,), floats.

    A factory that takes an ``output_shape`` keyword gets the shape of one sample ((C, H, W) or (F,)),
    for a term with a parameter per feature (``gaussian`` with a learned variance).

    ``requires`` names the latent params it reads. Optional attributes genreg reads:

    - ``unit`` (str): what one value is measured in, printed beside it in progress
      lines and tables, e.g. ``"nats/image"`` for a negative log-likelihood or a KL,
      ``"squared error/image"``, ``"per batch"``; a term without one is shown as
      ``(unit not declared)``.
    - ``batch_level = True``: the term measures the batch as a whole (an MMD between
      the batch's codes and the prior, say) and returns one value, shape (); it is
      averaged over the batches, weighted by their sizes. Without it, any shape but
      (B,) is refused when the model is assembled (on a batch of 2), naming the plugin.
    - ``log_likelihood(x, output)`` -> (B,) nats, ``output`` the decoder's: the term is
      a reconstruction likelihood (its forward is then -log p(x|z)); evaluation's ELBO
      and IWAE read it, so it is exact, every constant included.
      ``kl_divergence(out)`` -> (B,) nats: the term is the posterior's KL to the
      prior. The test objective every epoch
      records sums the NLLs and KLs with weight 1 (``test.neg_elbo``, or
      ``test.nll`` without a KL term); a term with neither method (a regulariser) is
      left out of it, but counts in the weighted total ``test.loss``.
    - ``parameter_maps`` (int, default 1): how many parameter maps of the sample's
      shape the term reads from the decoder. genreg builds the loss terms first and
      asks the decoder for ``output_shape`` (k C, H, W) or (k F,), the k maps
      stacked along axis 1, so ``log_likelihood`` gets (B, k C, H, W) or (B, k F)
      and splits it with ``output.chunk(k, dim=1)`` (``gaussian`` with
      ``variance: per-sample`` has 2: the mean and the scale). Every likelihood term
      of a model (and any term that declares it) must ask for the same count, or
      assembly raises :class:`~genreg.errors.AssemblyError`.
    - ``mean(output)``: for a likelihood term, the decoded sample the decoder's
      output stands for (the distribution's mean, in the units of the data, of the
      sample's shape: one map): what ``decode``, ``sample``, ``reconstruct`` and the
      pictures show. Without it the output's first map is taken as Bernoulli logits
      and the mean is their sigmoid.
    - ``mean_given(output, x)``: optional, the mean for reconstructing the samples x,
      when the distribution reads something of x besides z (a count likelihood: each
      row's observed total); ``reconstruct`` and eval's R² call it instead of ``mean``.
    - ``check_data(samples, source)``: called by ``genreg run`` / ``validate`` with the
      training samples before any work; raise :class:`~genreg.errors.DataError` for data
      the term cannot describe, or warn (``bernoulli`` refuses values outside [0, 1];
      ``gaussian`` warns about features of large scale). Samples kept sparse
      (:class:`~genreg.data.sparse.SparseRows`) are given dense unless the term declares
      ``reads_sparse = True``; ``check_values(samples, source, what)``, if a term has it, is also called on the
      test split and on new data (``genreg encode``), fitting nothing; a term may declare ``encoder_input``
      (``"log1p"`` for counts), and assembly warns when an encoder with an ``input`` setting reads ``raw``.
    """

    config: object
    requires: tuple[str, ...]

    def __call__(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor: ...


@runtime_checkable
class Schedule(Protocol):
    """A factor after ``progress`` epochs (fractional within an epoch): of ``train.lr``, or of a loss term's weight.

    The factory gets the run's ``epochs`` for a learning-rate schedule, so that one
    can span the whole run (cosine, one-cycle); a loss weight's schedule belongs to
    the model, which outlives any one run, and gets ``epochs=None`` (a schedule that
    needs the run's length refuses that). genreg evaluates it once per step,
    before the step. A schedule may say in ``rise`` how many epochs it takes to
    first reach the factor 1 (a warm-up's length), so that genreg can warn when
    that outlasts the run.
    """

    def factor(self, progress: float) -> float: ...
