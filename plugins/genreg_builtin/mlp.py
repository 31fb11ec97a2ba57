"""Fully connected encoder and decoder; the condition enters at the input or at every layer."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import nn

Activation = Literal["relu", "gelu", "silu", "tanh", "leaky_relu"]
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}

Injection = Literal["input", "every-layer"]
INJECTION_HELP = (
    "where the condition enters: 'input' concatenates it to the network's input only; 'every-layer' "
    "concatenates it to the input of every layer (for conv layers as constant extra channels), so every "
    "layer sees it"
)
WEIGHTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


class MLPEncoderConfig(BaseModel):
    """Fully connected encoder: the flattened sample, image or vector (+ condition), through hidden layers."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[PositiveInt] = Field(
        default_factory=lambda: [512, 256], min_length=1, description="hidden layer widths, image side first"
    )
    activation: Activation = "relu"
    condition: Injection = Field("input", description=INJECTION_HELP)


class MLPDecoderConfig(MLPEncoderConfig):
    """Fully connected decoder: z (+ condition) through hidden layers to the likelihood's parameters per value."""

    hidden: list[PositiveInt] = Field(
        default_factory=lambda: [256, 512], min_length=1, description="hidden layer widths, latent side first"
    )


def injected(mode: Injection, condition_dim: int, layers: int) -> list[int]:
    """How wide the condition is at the input of each of ``layers`` weighted layers in ``mode``."""
    return [condition_dim, *[condition_dim if mode == "every-layer" else 0] * (layers - 1)]


def with_condition(h: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """Append the condition (if any) to flat (B, F) features, or as constant channels to (B, C, H, W) maps."""
    if condition is None:
        return h
    c = condition.to(h.dtype)
    if h.dim() == 4:
        c = c[:, :, None, None].expand(-1, -1, *h.shape[2:])
    return torch.cat([h, c], dim=1)


def run_conditioned(
    layers: Iterable[nn.Module], h: torch.Tensor, condition: torch.Tensor | None, mode: Injection
) -> torch.Tensor:
    """Run ``layers`` in order, appending the condition before the first weighted layer or before each."""
    first = True
    for layer in layers:
        if isinstance(layer, WEIGHTED) and (first or mode == "every-layer"):
            h = with_condition(h, condition)
            first = False
        h = layer(h)
    return h


def mlp(sizes: list[int], activation: str, last_activation: bool, extra: list[int]) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` (layer i taking ``extra[i]`` more inputs), activations between."""
    layers: list[nn.Module] = []
    for i, (a, b, e) in enumerate(zip(sizes[:-1], sizes[1:], extra, strict=True)):
        layers.append(nn.Linear(a + e, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flatten the sample (an image (C, H, W) or a vector (F,)), then fully connected layers, with the condition
    appended per ``config.condition``."""

    def __init__(self, config: MLPEncoderConfig, *, input_shape: tuple[int, ...], condition_dim: int = 0) -> None:
        super().__init__()
        self.config = config
        self.out_features = config.hidden[-1]
        extra = injected(config.condition, condition_dim, len(config.hidden))
        self.net = mlp([math.prod(input_shape), *config.hidden], config.activation, True, extra)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return run_conditioned(self.net, x.flatten(1), condition, self.config.condition)


class MLPDecoder(nn.Module):
    """z through fully connected layers to the likelihood's parameters, shaped as ``output_shape``, with the
    condition per ``config.condition``: one per value of the sample (a pixel's logit, a feature's Gaussian mean),
    or as many parameter maps as the likelihood reads, stacked along the first axis ((2F,) for a Gaussian's
    per-sample mean and scale)."""

    def __init__(
        self, config: MLPDecoderConfig, *, latent_dim: int, condition_dim: int = 0, output_shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.config = config
        self.output_shape = tuple(output_shape)
        sizes = [latent_dim, *config.hidden, math.prod(output_shape)]
        self.net = mlp(sizes, config.activation, False, injected(config.condition, condition_dim, len(sizes) - 1))

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return run_conditioned(self.net, z, condition, self.config.condition).view(-1, *self.output_shape)
