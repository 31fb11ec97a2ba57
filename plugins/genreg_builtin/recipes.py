"""Model recipes: AE, VAE and cVAE are one composition with different default parts.

Every part can be swapped by name in a spec, e.g. a cVAE with a conv encoder and
an embedding conditioner. ``custom`` has no defaults: every part is named.
"""

from __future__ import annotations

from pydantic import Field

from genreg.model.assembly import ComposedModelConfig
from genreg.spec.parts import OneOrMore, Part


class AEConfig(ComposedModelConfig):
    """Autoencoder: deterministic latent, Bernoulli reconstruction only."""

    latent_dim: int = Field(16, ge=1, description="size of the latent code z")
    encoder: Part("encoder") = {"type": "mlp"}
    latent: Part("latent") = {"type": "deterministic"}
    decoder: Part("decoder") = {"type": "mlp"}
    losses: list[Part("loss")] = Field(default_factory=lambda: [{"type": "bce"}], min_length=1)


class VAEConfig(AEConfig):
    """Variational autoencoder: Gaussian latent, reconstruction + KL divergence."""

    latent: Part("latent") = {"type": "gaussian"}
    losses: list[Part("loss")] = Field(default_factory=lambda: [{"type": "bce"}, {"type": "kld"}], min_length=1)


class CVAEConfig(VAEConfig):
    """Conditional VAE: the class label goes to both encoder and decoder.

    q(z|x, c) and p(x|z, c), so the decoder can be asked for a chosen class (Sohn, Lee & Yan 2015,
    "Learning Structured Output Representation using Deep Conditional Generative Models").
    """

    conditioner: OneOrMore(Part("conditioner")) = Field(
        default_factory=lambda: [{"type": "onehot"}],
        description="one conditioner or a list, each reading its 'column' (default: label, one-hot encoded)",
    )
