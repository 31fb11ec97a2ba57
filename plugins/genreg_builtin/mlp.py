"""Fully connected encoder and decoder; the condition is concatenated to the input."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

Activation = Literal["relu", "gelu", "silu", "tanh", "leaky_relu"]
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


class MLPEncoderConfig(BaseModel):
    """Fully connected encoder: flattened image (+ condition) through hidden layers."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[int] = Field(
        default_factory=lambda: [512, 256], min_length=1, description="hidden layer widths, image side first"
    )
    activation: Activation = "relu"


class MLPDecoderConfig(MLPEncoderConfig):
    """Fully connected decoder: z (+ condition) through hidden layers to pixel logits."""

    hidden: list[int] = Field(
        default_factory=lambda: [256, 512], min_length=1, description="hidden layer widths, latent side first"
    )


def mlp(sizes: list[int], activation: str, last_activation: bool) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` with activations between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def with_condition(h: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """Concatenate the condition vector (if any) to flat features."""
    return h if condition is None else torch.cat([h, condition.to(h.dtype)], dim=1)


class MLPEncoder(nn.Module):
    """Flatten the image, append the condition, then fully connected layers."""

    def __init__(self, config: MLPEncoderConfig, *, input_shape: tuple[int, ...], condition_dim: int = 0) -> None:
        super().__init__()
        self.config = config
        self.out_features = config.hidden[-1]
        self.net = mlp([math.prod(input_shape) + condition_dim, *config.hidden], config.activation, True)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return self.net(with_condition(x.flatten(1), condition))


class MLPDecoder(nn.Module):
    """z and the condition through fully connected layers to one logit per pixel."""

    def __init__(
        self, config: MLPDecoderConfig, *, latent_dim: int, condition_dim: int = 0, output_shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.config = config
        self.output_shape = tuple(output_shape)
        sizes = [latent_dim + condition_dim, *config.hidden, math.prod(output_shape)]
        self.net = mlp(sizes, config.activation, False)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return self.net(with_condition(z, condition)).view(-1, *self.output_shape)
