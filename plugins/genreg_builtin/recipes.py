"""Model recipes: AE, VAE and cVAE are one composition with different default parts.

Every part can be swapped by name in a spec, e.g. a cVAE with a conv encoder and
an embedding conditioner. ``custom`` has no defaults: every part is named.
"""

from __future__ import annotations

from pydantic import Field

from genreg.model.assembly import ComposedModelConfig
from genreg.spec.parts import Part


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
    """Conditional VAE: the class label goes to both encoder and decoder."""

    conditioner: list[Part("conditioner")] = Field(
        default_factory=lambda: [{"type": "onehot"}],
        description="one conditioner or a list, each reading its 'column' (default: label, one-hot encoded)",
    )
