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


Norm = Literal["none", "batch", "layer"]
NORMS: dict[str, type[nn.Module]] = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


class MLPConfig(BaseModel):
    """What the fully connected encoder and decoder share: widths, activation, normalisation, dropout, condition."""

    model_config = ConfigDict(extra="forbid")

    activation: Activation = "relu"
    norm: Norm = Field(
        "none",
        description="normalisation after each hidden linear layer, before its activation: 'batch' (Ioffe & Szegedy "
        "2015; scVI's default), 'layer' (Ba et al. 2016) or 'none'",
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout probability after each hidden layer's activation (scVI: 0.1)"
    )
    condition: Injection = Field("input", description=INJECTION_HELP)


class MLPEncoderConfig(MLPConfig):
    """Fully connected encoder: the flattened sample, image or vector (+ condition), through hidden layers."""

    hidden: list[PositiveInt] = Field(
        default_factory=lambda: [512, 256], min_length=1, description="hidden layer widths, image side first"
    )
    input: Literal["raw", "log1p"] = Field(
        "raw",
        description="what the first layer reads: the sample as it is, or log(1 + x) (for counts, as scVI encodes "
        "them: the likelihood still models the raw counts)",
    )


class MLPDecoderConfig(MLPConfig):
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


def mlp(sizes: list[int], config: MLPConfig, last_hidden: bool, extra: list[int]) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` (layer i taking ``extra[i]`` more inputs); every hidden one (the
    last too if ``last_hidden``) followed by the config's norm, activation and dropout, in scVI's order."""
    layers: list[nn.Module] = []
    for i, (a, b, e) in enumerate(zip(sizes[:-1], sizes[1:], extra, strict=True)):
        layers.append(nn.Linear(a + e, b))
        if last_hidden or i < len(sizes) - 2:
            layers += [NORMS[config.norm](b)] if config.norm != "none" else []
            layers.append(ACTIVATIONS[config.activation]())
            layers += [nn.Dropout(config.dropout)] if config.dropout else []
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flatten the sample (an image (C, H, W) or a vector (F,)), then fully connected layers, with the condition
    appended per ``config.condition``."""

    def __init__(self, config: MLPEncoderConfig, *, input_shape: tuple[int, ...], condition_dim: int = 0) -> None:
        super().__init__()
        self.config = config
        self.out_features = config.hidden[-1]
        extra = injected(config.condition, condition_dim, len(config.hidden))
        self.net = mlp([math.prod(input_shape), *config.hidden], config, True, extra)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        x = x.flatten(1)
        return run_conditioned(
            self.net, x.log1p() if self.config.input == "log1p" else x, condition, self.config.condition
        )


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
        self.net = mlp(sizes, config, False, injected(config.condition, condition_dim, len(sizes) - 1))

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return run_conditioned(self.net, z, condition, self.config.condition).view(-1, *self.output_shape)
