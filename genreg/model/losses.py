"""What every loss term shares: a weight, an optional schedule, a name and a unit in the metrics.

A loss term computes one value per example (summed over pixels or latent
dimensions), in the unit it declares (nats per image for a likelihood or a KL
term), or one value per batch if it declares itself batch-level; the model
averages it over the batch and multiplies it by ``weight * schedule.factor(progress)``,
where progress is measured in epochs. A schedule is a registered component of kind
``schedule`` (the built-in ``linear`` KL warm-up, ``cyclical`` annealing of Fu et al.
2019, and any a plugin adds); one without ``type`` is ``linear``.

The weighted total is what training minimises, but its value depends on where the
schedules are; the *objective* is the same every epoch: for a model with a KL term
the negative ELBO (``neg_elbo``: every likelihood term's NLL plus every KL term's
plain KL, weight 1; Kingma & Welling 2014), for one without (an AE) the
reconstruction NLL (``nll``). Terms that are neither (a plugin's MMD, say) are left
out of it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from genreg.errors import AssemblyError, GenregError, SpecWarning
from genreg.model.schedules import build_schedule
from genreg.spec.parts import Part

NATS = "nats/image"
UNDECLARED = "(unit not declared)"
MIXED = "(weighted sum of mixed units)"
NEG_ELBO, NLL = "neg_elbo", "nll"
RESERVED = {
    "loss": "the weighted total",
    NEG_ELBO: "the test -ELBO (the objective of a model with a KL term)",
    NLL: "the test reconstruction NLL (the objective of a model without a KL term)",
}


class LossTermConfig(BaseModel):
    """Base of every loss term's config class: ``weight``, ``schedule`` and ``name``."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="multiplies the term in the total loss")
    schedule: Part("schedule", default_type="linear") | None = Field(
        None, description="optional weight schedule, e.g. linear (the default type) or cyclical"
    )
    name: str | None = Field(None, description="name in logs and metrics; defaults to the type")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str | None) -> str | None:
        if name in RESERVED:
            raise ValueError(f"'{name}' is reserved for {RESERVED[name]}; choose another name")
        return name

    @property
    def metric_name(self) -> str:
        """The name the term is logged under: ``name``, else its type."""
        return self.name or getattr(self, "type", None) or type(self).__name__.removesuffix("Config").lower()


def weight_schedule(config: LossTermConfig, where: str = "the loss term's schedule") -> Any:
    """The schedule ``config.schedule`` names, built (None without one); errors name ``where``.

    A loss weight's schedule belongs to the model, which outlives any run, so it
    is built with ``epochs=None``: a schedule that spans a run's length refuses it.
    """
    schedule = getattr(config, "schedule", None)
    return None if schedule is None else build_schedule(schedule, None, where, default_type="linear")


def term_unit(term: Any) -> str:
    """The unit a loss term declares in ``unit`` (e.g. ``nats/image``), else :data:`UNDECLARED`."""
    unit = getattr(term, "unit", None)
    return unit if isinstance(unit, str) and unit.strip() else UNDECLARED


def is_batch_level(term: Any) -> bool:
    """Whether a term declares ``batch_level = True``: one value per batch (a scalar), not one per image."""
    return getattr(term, "batch_level", False) is True


def is_likelihood(term: Any) -> bool:
    """Whether a term is a reconstruction likelihood: it has ``log_likelihood(x, logits)`` -> (B,) nats."""
    return callable(getattr(term, "log_likelihood", None))


def term_maps(term: Any) -> int:
    """How many parameter maps a loss term reads from the decoder: its ``parameter_maps`` (1 when it declares none).

    Raises :class:`AssemblyError` for a value that is not an integer >= 1.
    """
    maps = getattr(term, "parameter_maps", 1)
    if isinstance(maps, bool) or not isinstance(maps, int) or maps < 1:
        raise AssemblyError(
            f"loss term '{_term_name(term)}' declares parameter_maps={maps!r}; it must be an integer >= 1."
        )
    return maps


def _term_name(term: Any) -> str:
    """The name a term is logged under, or its class name for one without a config."""
    return getattr(getattr(term, "config", None), "metric_name", None) or type(term).__name__


def parameter_maps(terms: Iterable[Any]) -> int:
    """How many parameter maps the decoder emits for these loss terms, stacked along axis 1 of its output: what
    every likelihood term (and any other term that declares ``parameter_maps``) asks for; 1 without any.

    A Bernoulli or fixed-variance Gaussian likelihood reads one map (the logits, the mean); ``gaussian`` with
    ``variance: per-sample`` reads two (the mean and the scale). Raises :class:`AssemblyError` when the terms ask
    for different counts: the decoder has one output.
    """
    asks = [(t, term_maps(t)) for t in terms if is_likelihood(t) or hasattr(t, "parameter_maps")]
    counts = {maps for _, maps in asks}
    if len(counts) > 1:
        listed = ", ".join(f"'{_term_name(t)}' reads {maps}" for t, maps in asks)
        raise AssemblyError(
            f"the loss terms ask the decoder for different numbers of parameter maps ({listed}), but the decoder "
            "has one output; use likelihood terms that read the same maps (e.g. one likelihood term only)."
        )
    return counts.pop() if counts else 1


def decoder_output_shape(sample_shape: tuple[int, ...], maps: int) -> tuple[int, ...]:
    """The shape of one decoder output for samples of ``sample_shape``: ``maps`` parameter maps stacked along the
    first axis, (maps * C, H, W) for images (C, H, W) and (maps * F,) for vectors (F,)."""
    return (maps * sample_shape[0], *sample_shape[1:])


def likelihood_mean(terms: Iterable[Any], output: torch.Tensor, observed: torch.Tensor | None = None) -> torch.Tensor:
    """The decoded sample for the decoder's ``output``: the mean of the first likelihood term's distribution, in the
    units of the data, of the sample's shape: the term's ``mean(output)``. For a term without one, output's first
    parameter map (all of it for a term that reads one) is taken as Bernoulli logits and the mean is their sigmoid.

    ``observed``: the samples x (B, *sample shape) being reconstructed, when there are some. A term whose
    distribution reads something of x besides z (a count likelihood: each row's observed total, its library size)
    has ``mean_given(output, x)``, and it is called instead of ``mean``; for any other term ``observed`` changes
    nothing."""
    terms = list(terms)
    term = next((t for t in terms if is_likelihood(t)), None)
    given = getattr(term, "mean_given", None)
    if observed is not None and callable(given):
        return given(output, observed)
    mean = getattr(term, "mean", None)
    if callable(mean):
        return mean(output)
    return torch.sigmoid(output.chunk(parameter_maps(terms), dim=1)[0])


def check_values(terms: Iterable[Any], samples: Any, source: str, what: str) -> None:
    """Let every term with a ``check_values(samples, source, what)`` (the count likelihoods) refuse ``samples`` it
    cannot describe, fitting nothing: the test split before training, new data for ``genreg encode``. ``what``
    names the samples in messages ("the test samples", "the new data")."""
    for term in terms:
        check = getattr(term, "check_values", None)
        if callable(check):
            check(samples, source, what)


def is_kl(term: Any) -> bool:
    """Whether a term is a KL divergence of the posterior: it has ``kl_divergence(out)`` -> (B,) nats."""
    return callable(getattr(term, "kl_divergence", None))


def objective_name(terms: Iterable[Any]) -> str | None:
    """``neg_elbo`` with a likelihood and a KL term, ``nll`` with a likelihood term only, else None."""
    terms = list(terms)
    if not any(is_likelihood(t) for t in terms):
        return None
    return NEG_ELBO if any(is_kl(t) for t in terms) else NLL


def objective_values(terms: Iterable[Any], x: torch.Tensor, out: Any) -> torch.Tensor:
    """The objective per image (B,), nats: -log p(x|z) of every likelihood term plus every KL term's plain KL.

    ``out`` is the model's :class:`~genreg.plugin.protocols.ModelOutput` for ``x``.
    Weights and schedules are ignored (weight 1), and so is ``free_bits``: a one-sample
    estimate of the negative ELBO of Kingma & Welling (2014) for a VAE or cVAE.
    """
    values = [-full_precision(t.log_likelihood(x, out.logits)) for t in terms if is_likelihood(t)]
    values += [full_precision(t.kl_divergence(out)) for t in terms if is_kl(t)]
    return torch.stack(values).sum(0)


def metric_units(terms: Iterable[Any], sample: str = "image") -> dict[str, str]:
    """The unit of every metric an epoch's test record holds: ``loss`` (the terms' common unit, or
    ``mixed units``), each term by name, and the objective (nats per sample) if the model has one.

    A unit per image (``nats/image``, what the built-in terms declare: one value per sample) is said per
    ``sample``, the data's kind of sample (:attr:`~genreg.data.splits.DataInfo.singular`): ``nats/vector`` for
    vectors; any other unit as the term declares it.
    """
    terms = list(terms)
    units = {t.config.metric_name: _per(term_unit(t), sample) for t in terms}
    common = set(units.values())
    total = common.pop() if len(common) == 1 else MIXED
    objective = objective_name(terms)
    return {"loss": total, **units, **({objective: _per(NATS, sample)} if objective else {})}


def _per(unit: str, sample: str) -> str:
    return unit.removesuffix("/image") + f"/{sample}" if unit.endswith("/image") else unit


def with_units(values: Mapping[str, float], units: Mapping[str, str]) -> str:
    """``loss=99.42, bce=85.22, kld=14.20 nats/image``: each value, its unit said after the last of a run of
    values that share it (a name without a unit in ``units`` gets :data:`UNDECLARED`)."""
    names = list(values)
    unit = [units.get(name, UNDECLARED) for name in names]
    return ", ".join(
        f"{name}={values[name]:.2f}" + (f" {unit[i]}" if i == len(names) - 1 or unit[i + 1] != unit[i] else "")
        for i, name in enumerate(names)
    )


def check_term_values(
    terms: Iterable[Any], values: Mapping[str, Any], batch: int, describe: Callable[[Any], str]
) -> None:
    """Refuse a term whose value on a batch of ``batch`` images is not (batch,), or () for a batch-level term.

    ``values`` are the terms' outputs by metric name; ``describe`` names a part
    (e.g. ``loss 'mmd' (plugin 'x')``). Raises :class:`AssemblyError`, which also
    refuses a term named like the objective (``neg_elbo``, ``nll``): its metric would be overwritten.
    """
    for term in terms:
        name = term.config.metric_name
        if name in RESERVED:
            raise AssemblyError(f"{describe(term)} is named '{name}', {RESERVED[name]}; set its 'name' to another.")
        value = values[name]
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        expected = () if is_batch_level(term) else (batch,)
        if got == expected and value.is_floating_point():  # got is a shape only for a tensor
            continue
        what = "one value for the batch, shape ()" if expected == () else f"one value per image, shape ({batch},)"
        raise AssemblyError(
            f"{describe(term)} returned {got if isinstance(got, str) else f'a tensor of shape {got}'} "
            f"on a batch of {batch} images; it must return {what}, as floats. A loss term returns one value "
            "per image, or sets batch_level = True and returns one value per batch (see genreg.plugin.protocols)."
        )


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """At least float32: losses stay exact under bf16 autocast, and float64 stays float64."""
    return t if t.dtype == torch.float64 else t.float()


def warn_long_warmups(spec: Any) -> None:
    """Warn (:class:`SpecWarning`) about each loss weight whose first rise to full weight outlasts the run.

    Such a weight never reaches its value: a KL warm-up longer than the run
    quietly trains a beta-VAE with beta < 1, which reconstructs well but samples
    badly, and nothing in the metrics says why. ``spec`` is a validated spec; a
    schedule tells its first rise in ``rise`` (epochs), if it has one.
    """
    epochs = spec.train.epochs
    for i, term in enumerate(getattr(spec.model, "losses", None) or []):
        try:
            schedule = weight_schedule(term)
        except GenregError:  # a schedule that cannot weigh a loss: building the model says so, naming the term
            continue
        rise = getattr(schedule, "rise", None)
        if rise is not None and rise > epochs:
            length = ".epochs" if "epochs" in type(term.schedule).model_fields else ""  # the built-ins' field
            path = f"model.losses[{i}].schedule{length}"
            warnings.warn(f"{path}: {_shortfall(term, schedule, epochs)}", SpecWarning, stacklevel=3)


def _shortfall(term: LossTermConfig, schedule: Any, epochs: int) -> str:
    """What a warm-up longer than the run does to the term's final weight (its built ``schedule``), in words."""
    reached = schedule.factor(epochs)
    final, full = term.weight * reached, term.weight
    warmup = term.schedule.type in ("linear", "warmup")
    rise = "warm-up" if warmup else f"first rise ({term.schedule.type} schedule)"
    text = f"the {term.metric_name} weight's {rise} takes {schedule.rise:g} epochs but train.epochs is {epochs}: "
    text += f"its weight ends at {reached:.2f} of its full value"
    if getattr(term, "type", None) != "kld":
        text += f" ({final:.3g} instead of {full:g})"
    elif final < 1:
        text += f", so the model would end as a beta < 1 VAE (beta = {final:.2g} instead of {full:g})"
    else:
        text += f", so the model would end with beta = {final:.2g} instead of {full:g}"
    fix = "Shorten the warm-up" if warmup else f"Shorten the {term.schedule.type} schedule's first rise"
    return f"{text}. {fix} or train for more epochs."
