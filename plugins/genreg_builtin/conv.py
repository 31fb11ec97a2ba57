"""Small strided convolutional encoder and decoder for images of any size.

Each encoder layer halves height and width (kernel 4, stride 2, padding 1); the
decoder mirrors it with transposed convolutions, adding one row/column where a
size was odd, so any (C, H, W) comes back at exactly its shape. The condition
enters the encoder as constant extra input channels and the decoder next to z;
with ``condition: every-layer`` also every later layer's input (channels for
convolutions, entries for the dense layer).
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import nn

from genreg.errors import AssemblyError
from genreg_builtin.mlp import ACTIVATIONS, INJECTION_HELP, Activation, Injection, injected, run_conditioned


class ConvEncoderConfig(BaseModel):
    """Strided conv encoder (kernel 4, stride 2) for any image size; condition as channels."""

    model_config = ConfigDict(extra="forbid")

    channels: list[PositiveInt] = Field(
        default_factory=lambda: [32, 64], min_length=1, description="channels per layer"
    )
    features: int = Field(256, ge=1, description="width of the dense layer after the convolutions")
    activation: Activation = "relu"
    condition: Injection = Field("input", description=INJECTION_HELP)


class ConvDecoderConfig(BaseModel):
    """Transposed-conv decoder mirroring the conv encoder, back to the exact image shape."""

    model_config = ConfigDict(extra="forbid")

    channels: list[PositiveInt] = Field(
        default_factory=lambda: [64, 32], min_length=1, description="channels per layer"
    )
    activation: Activation = "relu"
    condition: Injection = Field("input", description=INJECTION_HELP)


def image_sides(shape: tuple[int, ...], slot: str) -> tuple[int, int, int]:
    """(C, H, W) of the encoder's input or the decoder's output; vectors are an :class:`AssemblyError` pointing to
    the mlp parts."""
    if len(shape) != 3:
        # the decoder's output holds the likelihood's parameter maps, (maps * F,): not always the samples' shape
        shape_of = "of shape" if slot == "encoder" else "for which it would emit the shape"
        raise AssemblyError(
            f"{slot} 'conv' convolves images (C, H, W), but the data's samples are vectors (a table's rows, say), "
            f"{shape_of} {tuple(shape)}: use the 'mlp' {slot} for vectors."
        )
    return tuple(shape)


def spatial_sizes(size: int, layers: int) -> list[int]:
    """Sizes after each halving: ``[size, size // 2, ...]`` (``layers + 1`` entries)."""
    sizes = [size]
    for _ in range(layers):
        sizes.append(sizes[-1] // 2)
    if sizes[-1] < 1:
        raise AssemblyError(
            f"conv: {layers} stride-2 layers are too many for an image side of {size} pixels; "
            f"use at most {max(size.bit_length() - 1, 0)} channels entries or the mlp encoder/decoder."
        )
    return sizes


class ConvEncoder(nn.Module):
    """Strided convolutions, then a dense layer; condition as extra channels (and dense inputs if every-layer)."""

    def __init__(self, config: ConvEncoderConfig, *, input_shape: tuple[int, int, int], condition_dim: int = 0) -> None:
        super().__init__()
        self.config = config
        c, h, w = image_sides(input_shape, "encoder")
        act = ACTIVATIONS[config.activation]
        n = len(config.channels)
        extra = injected(config.condition, condition_dim, n + 1)
        layers: list[nn.Module] = []
        for c_in, c_out, e in zip([c, *config.channels[:-1]], config.channels, extra[:-1], strict=True):
            layers += [nn.Conv2d(c_in + e, c_out, 4, stride=2, padding=1), act()]
        self.convs = nn.Sequential(*layers)
        flat = config.channels[-1] * spatial_sizes(h, n)[-1] * spatial_sizes(w, n)[-1]
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(flat + extra[-1], config.features), act())
        self.out_features = config.features

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return run_conditioned([*self.convs, *self.dense], x, condition, self.config.condition)


class ConvDecoder(nn.Module):
    """A dense layer on z and the condition to a small feature map, then transposed convolutions to logits.

    ``output_shape`` is (maps * C, H, W): the last convolution emits as many channels as the likelihood's
    parameter maps hold (C for Bernoulli logits, 2C for a Gaussian's per-pixel mean and scale).
    """

    def __init__(
        self, config: ConvDecoderConfig, *, latent_dim: int, condition_dim: int = 0, output_shape: tuple[int, int, int]
    ) -> None:
        super().__init__()
        self.config = config
        c, h, w = image_sides(output_shape, "decoder")
        n = len(config.channels)
        hs, ws = spatial_sizes(h, n), spatial_sizes(w, n)
        self.start = (config.channels[0], hs[-1], ws[-1])
        act = ACTIVATIONS[config.activation]
        extra = injected(config.condition, condition_dim, n + 1)
        self.dense = nn.Sequential(nn.Linear(latent_dim + extra[0], math.prod(self.start)), act())
        self.unflatten = nn.Unflatten(1, self.start)
        layers: list[nn.Module] = []
        outs = [*config.channels[1:], c]
        for i, (c_in, c_out, e) in enumerate(zip(config.channels, outs, extra[1:], strict=True)):
            pad = (hs[n - 1 - i] % 2, ws[n - 1 - i] % 2)
            layers.append(nn.ConvTranspose2d(c_in + e, c_out, 4, stride=2, padding=1, output_padding=pad))
            if i < n - 1:
                layers.append(act())
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        layers = [*self.dense, self.unflatten, *self.deconvs]
        return run_conditioned(layers, z, condition, self.config.condition)
