"""Model assembly: from validated part configs to a :class:`GenerativeModel`, and back.

Recipes (``ae``, ``vae``, ``cvae`` in the built-in plugin) are subclasses of
:class:`ComposedModelConfig` that only change defaults; :func:`compose_model`
builds every one of them.
"""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import Field

from genreg.data import DataInfo
from genreg.errors import AssemblyError, ModelFileError
from genreg.model import GenerativeModel
from genreg.registry import Registry
from genreg.spec import Part, StrictModel


class ComposedModelConfig(StrictModel):
    """Custom composition: every part named explicitly (recipes subclass this with defaults)."""

    latent_dim: int = Field(ge=1, description="size of the latent code z")
    encoder: Part("encoder")
    latent: Part("latent")
    decoder: Part("decoder")
    conditioner: Part("conditioner") | None = Field(
        None,
        description="encodes the class label; fed to the decoder, and to the encoder unless condition_encoder is false",
    )
    condition_encoder: bool = Field(
        True,
        description="feed the condition to the encoder as well as the decoder (a cVAE's q(z|x,c)); false gives q(z|x)",
    )
    losses: list[Part("loss")] = Field(min_length=1, description="loss terms, summed with their weights")


UNCONDITIONED_ENCODER = (
    "model.condition_encoder is false: the encoder ignores the class label and only the decoder gets it, "
    "so the posterior is q(z|x) instead of the textbook cVAE's q(z|x,c). The latent code must then carry "
    "the class information itself, and changing the label at decode time no longer separates class from "
    "style as cleanly. Leave condition_encoder true (the default) for a standard cVAE."
)


def _registry() -> Registry:
    from genreg.plugins import get_registry

    return get_registry()


def compose_model(config: ComposedModelConfig, *, data: DataInfo) -> GenerativeModel:
    """Build the parts a composed config names, with the data's shape and classes."""
    registry = _registry()
    conditioner = None
    condition_dim = 0
    if config.conditioner is not None:
        conditioner = registry.build("conditioner", config.conditioner, num_classes=data.num_classes)
        condition_dim = conditioner.dim
        if not config.condition_encoder:
            warnings.warn(UNCONDITIONED_ENCODER, stacklevel=2)
    encoder_condition_dim = condition_dim if config.condition_encoder else 0
    encoder = registry.build(
        "encoder", config.encoder, input_shape=data.image_shape, condition_dim=encoder_condition_dim
    )
    latent = registry.build("latent", config.latent, in_features=encoder.out_features, dim=config.latent_dim)
    decoder = registry.build(
        "decoder",
        config.decoder,
        latent_dim=config.latent_dim,
        condition_dim=condition_dim,
        output_shape=data.image_shape,
    )
    losses = [registry.build("loss", term) for term in config.losses]
    spec = config.model_dump(mode="json")
    if conditioner is not None and spec["conditioner"].get("num_classes", 0) is None:
        spec["conditioner"]["num_classes"] = conditioner.num_classes  # resolve "from the data"
    return GenerativeModel(
        encoder=encoder,
        latent=latent,
        decoder=decoder,
        losses=losses,
        data=data,
        conditioner=conditioner,
        condition_encoder=config.condition_encoder,
        spec=spec,
    )


def build_model(model_spec: dict | Any, data: DataInfo) -> GenerativeModel:
    """Build a model from a (validated or raw) model spec and the data's description."""
    registry = _registry()
    if isinstance(model_spec, dict):
        from genreg.spec import validate_part

        model_spec = validate_part("model", model_spec, registry)
    model = registry.build("model", model_spec, data=data)
    if not isinstance(model, GenerativeModel):
        raise AssemblyError(f"model recipe '{model_spec.type}' returned {type(model).__name__}, not a GenerativeModel.")
    if model.spec is None:
        model.spec = model_spec.model_dump(mode="json")
    return model


def derive_spec(model: GenerativeModel) -> dict:
    """The ``custom`` recipe spec of a model composed by hand from registered parts."""
    if model.spec is not None:
        return model.spec
    registry = _registry()
    parts = {"encoder": model.encoder, "latent": model.latent, "decoder": model.decoder}
    if model.conditioner is not None:
        parts["conditioner"] = model.conditioner
    spec: dict[str, Any] = {
        "type": "custom",
        "latent_dim": model.latent.dim,
        "condition_encoder": model.condition_encoder,
    }
    for slot, part in parts.items():
        spec[slot] = _part_spec(registry, part, slot)
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
