"""Model assembly: from validated part configs to a :class:`GenerativeModel`, and back.

Recipes (``ae``, ``vae``, ``cvae`` in the built-in plugin) are subclasses of
:class:`ComposedModelConfig` that only change defaults; :func:`compose_model`
builds every one of them.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from pydantic import Field, field_validator

from genreg.data.splits import DataInfo
from genreg.errors import AssemblyError, ModelFileError, SpecWarning
from genreg.model.conditions import Conditions, is_continuous
from genreg.model.generative import GenerativeModel, describe
from genreg.model.losses import check_term_values, decoder_output_shape, is_likelihood, likelihood_mean, parameter_maps
from genreg.plugin.manager import get_registry
from genreg.plugin.registry import Registry
from genreg.spec.parts import OneOrMore, Part, StrictModel
from genreg.spec.validate import validate_part


class ComposedModelConfig(StrictModel):
    """Custom composition: every part named explicitly (recipes subclass this with defaults)."""

    latent_dim: int = Field(ge=1, description="size of the latent code z")
    encoder: Part("encoder")
    latent: Part("latent")
    decoder: Part("decoder")
    conditioner: OneOrMore(Part("conditioner")) | None = Field(
        None,
        description="one conditioner or a list, each reading its 'column' (default: label); their vectors, "
        "concatenated in this order, go to the decoder, and to the encoder unless condition_encoder is false",
    )
    condition_encoder: bool = Field(
        True,
        description="feed the condition to the encoder as well as the decoder (a cVAE's q(z|x,c)); false gives q(z|x)",
    )
    losses: list[Part("loss")] = Field(min_length=1, description="loss terms, summed with their weights")

    @field_validator("conditioner", mode="before")
    @classmethod
    def _at_least_one(cls, value: Any) -> Any:
        """An empty list is a mistake: null means no conditioner."""
        if isinstance(value, list) and not value:
            raise ValueError("give at least one conditioner, or null for an unconditional model")
        return value


UNCONDITIONED_ENCODER = (
    "model.condition_encoder is false: the encoder ignores the class label and only the decoder gets it, "
    "so the posterior is q(z|x) instead of the textbook cVAE's q(z|x,c). The latent code must then carry "
    "the class information itself, and changing the label at decode time no longer separates class from "
    "style as cleanly. Leave condition_encoder true (the default) for a standard cVAE."
)


def compose_model(config: ComposedModelConfig, *, data: DataInfo) -> GenerativeModel:
    """Build the parts a composed config names, with the data's shape and condition columns.

    The registered factory of every recipe built from parts (``ae``, ``vae``, ``cvae``,
    ``custom``). The loss terms are built before the decoder, whose ``output_shape`` holds as many
    parameter maps of the sample's shape, stacked along the first axis, as the likelihood reads
    (its ``parameter_maps``: (2F,) or (2C, H, W) for a ``gaussian`` with ``variance: per-sample``;
    see :func:`genreg.model.losses.parameter_maps`). Raises :class:`AssemblyError` when parts do
    not fit each other or the data (a condition column the data lacks, likelihood terms that ask
    for different numbers of maps, a part that fails on a dummy batch).
    """
    registry = get_registry()
    spec = config.model_dump(mode="json")
    conditions = None
    if config.conditioner is not None:  # a list, or one conditioner where a plugin recipe declares one Part
        conditions = build_conditions(_listed(config.conditioner), data, registry)
        for part_spec, part in zip(_listed(spec["conditioner"]), conditions.parts, strict=True):
            if part_spec.get("num_classes", 0) is None:
                part_spec["num_classes"] = part.num_classes  # resolve "from the data"
        if not config.condition_encoder:
            warnings.warn(UNCONDITIONED_ENCODER, stacklevel=2)
    condition_dim = 0 if conditions is None else conditions.dim
    encoder_condition_dim = condition_dim if config.condition_encoder else 0
    encoder = registry.build(
        "encoder", config.encoder, input_shape=data.image_shape, condition_dim=encoder_condition_dim
    )
    latent = registry.build("latent", config.latent, in_features=encoder.out_features, dim=config.latent_dim)
    # the loss terms first: the decoder emits as many parameter maps as the likelihood reads, along axis 1
    losses = [build_term(registry, term, data.image_shape) for term in config.losses]
    check_encoder_input(config.encoder, losses)
    decoder = registry.build(
        "decoder",
        config.decoder,
        latent_dim=config.latent_dim,
        condition_dim=condition_dim,
        output_shape=decoder_output_shape(data.image_shape, parameter_maps(losses)),
    )
    return GenerativeModel(
        encoder=encoder,
        latent=latent,
        decoder=decoder,
        losses=losses,
        data=data,
        conditioner=conditions,
        condition_encoder=config.condition_encoder,
        spec=spec,
    )


def check_encoder_input(encoder_config: Any, losses: list[Any]) -> None:
    """Warn (:class:`~genreg.errors.SpecWarning`) when a likelihood term asks the encoder to read its input another
    way (its ``encoder_input``, e.g. ``log1p`` for counts) and the encoder, which has an ``input`` setting, reads
    it ``raw``."""
    if getattr(encoder_config, "input", None) != "raw":
        return
    for term in losses:
        wanted = getattr(term, "encoder_input", None)
        if wanted is not None and wanted != "raw":
            warnings.warn(
                f"the likelihood '{term.config.metric_name}' models raw counts and the encoder reads them raw; counts "
                "of hundreds make its first layer's activations large and training unstable. scVI encodes "
                f"log(1 + x): set model.encoder.input to '{wanted}' (the likelihood still models the raw counts).",
                SpecWarning,
                stacklevel=3,
            )
            return


def build_term(registry: Registry, config: Any, sample_shape: tuple[int, ...]) -> Any:
    """The loss term ``config`` names; given the shape of one sample as ``output_shape`` if its factory takes it
    (a likelihood with a parameter per feature, e.g. ``gaussian`` with a learned variance)."""
    factory = registry.get("loss", config.type).factory
    takes_shape = "output_shape" in inspect.signature(factory).parameters
    return registry.build("loss", config, **({"output_shape": sample_shape} if takes_shape else {}))


def _listed(item: Any) -> list[Any]:
    return item if isinstance(item, list) else [item]


def build_conditions(configs: list[Any], data: DataInfo, registry: Registry) -> Conditions:
    """One conditioner per config, each built for the column it reads; errors name the column."""
    parts, columns = [], []
    for i, config in enumerate(configs):
        where = f"model.conditioner[{i}] (column '{config.column}')"
        if config.column not in data.columns:
            raise AssemblyError(
                f"{where}: the data has no column '{config.column}'; its columns: {', '.join(data.columns)}."
            )
        classes = data.columns[config.column]
        try:
            part = registry.build("conditioner", config, num_classes=max(classes, 1))
        except AssemblyError as exc:
            raise AssemblyError(f"{where}: {exc}") from None
        if classes == 0 and not is_continuous(part):
            raise AssemblyError(
                f"{where}: column '{config.column}' is continuous (float values) but this conditioner reads "
                "classes; use a continuous conditioner (e.g. 'continuous') for it."
            )
        parts.append(part)
        columns.append(config.column)
    return Conditions(parts, columns)


def build_model(model_spec: dict | Any, data: DataInfo) -> GenerativeModel:
    """Build a model from a (validated or raw) model spec and the data's description.

    Raises :class:`~genreg.errors.SpecError` for a raw spec that does not validate and
    :class:`AssemblyError` for parts that do not fit together or the data, or a loss
    term whose values have the wrong shape (see :func:`check_loss_terms`).
    """
    registry = get_registry()
    if isinstance(model_spec, dict):
        model_spec = validate_part("model", model_spec, registry)
    model = registry.build("model", model_spec, data=data)
    if not isinstance(model, GenerativeModel):
        raise AssemblyError(f"model recipe '{model_spec.type}' returned {type(model).__name__}, not a GenerativeModel.")
    if model.spec is None:
        model.spec = model_spec.model_dump(mode="json")
    check_loss_terms(model)
    return model


def check_loss_terms(model: GenerativeModel) -> None:
    """Run the loss terms on a dummy batch of two images and refuse a value that is not (2,) (or () for a
    batch-level term), naming the term's plugin (see :func:`genreg.model.losses.check_term_values`), and a
    likelihood whose ``mean(output)`` is not of the samples' shape.

    Random numbers the forward pass draws (the latent's noise) leave the caller's RNG as it was.
    """
    device = model.device
    x = torch.zeros(2, *model.data_info.image_shape, device=device)
    columns = model.conditioner.columns if model.conditioner is not None else []
    condition = {column: torch.zeros(2, device=device) for column in columns} or None
    forked = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    with forked, model.evaluating(), torch.no_grad():
        out = model(x, condition)
        values = {term.config.metric_name: _term_value(term, x, out) for term in model.losses}
        decoded = likelihood_mean(model.losses, out.logits)
    check_term_values(model.losses, values, 2, describe)
    if tuple(decoded.shape) != tuple(x.shape):
        term = next((t for t in model.losses if is_likelihood(t)), None)
        whose = "the sigmoid of the decoder's first map" if term is None else f"{describe(term)}'s mean(output)"
        raise AssemblyError(
            f"{whose} has shape {tuple(decoded.shape)} on a batch of 2, but a decoded sample has the data's shape "
            f"{tuple(x.shape)}; mean(output) returns the likelihood's mean, one parameter map of the decoder's "
            "output (see genreg.plugin.protocols)."
        )


def _term_value(term: Any, x: torch.Tensor, out: Any) -> Any:
    """``term(x, out)``; a term that raises is named, rather than shown as a traceback."""
    try:
        return term(x, out)
    except Exception as exc:  # noqa: BLE001 - any failure of a plugin's term on a well-formed batch
        raise AssemblyError(f"{describe(term)} failed on a batch of 2 images: {type(exc).__name__}: {exc}") from exc


def derive_spec(model: GenerativeModel) -> dict:
    """The ``custom`` recipe spec of a model composed by hand from registered parts."""
    if model.spec is not None:
        return model.spec
    registry = get_registry()
    parts = {"encoder": model.encoder, "latent": model.latent, "decoder": model.decoder}
    spec: dict[str, Any] = {
        "type": "custom",
        "latent_dim": model.latent.dim,
        "condition_encoder": model.condition_encoder,
    }
    for slot, part in parts.items():
        spec[slot] = _part_spec(registry, part, slot)
    if model.conditioner is not None:
        conditions = model.conditioner
        spec["conditioner"] = [
            {**_part_spec(registry, part, "conditioner"), "column": column}
            for part, column in zip(conditions.parts, conditions.columns, strict=True)
        ]
    spec["losses"] = [_part_spec(registry, term, "loss term") for term in model.losses]
    return spec


def _part_spec(registry: Registry, part: Any, slot: str) -> dict:
    entry = registry.find(part)
    config = getattr(part, "config", None)
    if entry is None or config is None:
        raise ModelFileError(
            f"cannot describe the {slot} ({type(part).__name__}) as a spec: it is not a registered "
            "component with a .config. Register it through a plugin, or save weights only with "
            "genreg.save_weights and load them into a model you rebuild yourself."
        )
    return {"type": entry.name, **config.model_dump(mode="json", exclude={"type"})}
