"""The reference classifier's networks: a small CNN for images (C, H, W), an MLP for vectors (F,).

:func:`reference_network` picks one by the sample's shape; :mod:`genreg.evaluation.classifier` trains,
caches and uses them.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

POOLED = (7, 7)
#: The MLP for vectors: hidden widths, dropout, and the fewest optimiser steps it trains for (small tables).
MLP = {"hidden": [128, 128], "dropout": 0.1, "min_steps": 500}


class ReferenceCNN(nn.Module):
    """A small CNN for (C, H, W) images in [0, 1] with H, W >= 8; ``forward`` gives logits.

    Two padded conv blocks (16 and 32 channels, batch norm, ReLU, 2x2 max pool)
    and a 128-unit head. Padding keeps 8x8 images alive through both poolings,
    and an adaptive pool fixes the flattened size at 7x7 (a no-op for 28x28
    images), so one architecture fits any dataset genreg can load. The widths
    and batch norm are chosen so that 8 epochs on the bundled 4,000 digits
    reach about 97% test accuracy in well under a minute on two CPU cores.
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = (int(v) for v in image_shape)
        if height < 8 or width < 8:
            raise ValueError(f"ReferenceCNN needs images of at least 8x8 pixels, got {height}x{width}.")
        if num_classes < 1:
            raise ValueError(f"ReferenceCNN needs at least one class, got {num_classes}.")
        self.image_shape = (channels, height, width)
        self.num_classes = int(num_classes)
        self.features = nn.Sequential(_conv_block(channels, 16), _conv_block(16, 32))
        self.pool = nn.AdaptiveAvgPool2d(POOLED)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(32 * POOLED[0] * POOLED[1], 128),
            nn.ReLU(),
            nn.Linear(128, self.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        if tuple(features.shape[-2:]) != POOLED:
            features = self.pool(features)
        return self.head(features)


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (padded) + batch norm + ReLU + 2x2 max pool: halves height and width."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class ReferenceMLP(nn.Module):
    """A small MLP for vectors (F,) of any finite real values; ``forward`` gives logits, (B, F) -> (B, classes).

    Layers: standardisation of each feature by the training split's mean and standard deviation (the buffers
    ``shift`` and ``scale``, set by :meth:`standardise_by` and saved with the weights, so a table's columns in
    any units weigh alike; a constant feature keeps scale 1), then Linear(F, 128), ReLU, Dropout(0.1),
    Linear(128, 128), ReLU, Linear(128, classes) (:data:`MLP`). Trained by :func:`train_classifier`: Adam,
    lr 1e-3, batches of 128, cross-entropy, for ``epochs`` epochs but at least 500 optimiser steps, so that a
    table of a few hundred rows is trained as far as a large one (a fraction of a second on a CPU).
    """

    def __init__(self, image_shape: tuple[int], num_classes: int) -> None:
        super().__init__()
        if len(image_shape) != 1 or int(image_shape[0]) < 1:
            raise ValueError(f"ReferenceMLP needs vectors of shape (F,) with F >= 1, got {tuple(image_shape)}.")
        if num_classes < 1:
            raise ValueError(f"ReferenceMLP needs at least one class, got {num_classes}.")
        features = int(image_shape[0])
        self.image_shape = (features,)
        self.num_classes = int(num_classes)
        self.register_buffer("shift", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        widths = [features, *MLP["hidden"]]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers += [nn.Linear(a, b), nn.ReLU()] + ([nn.Dropout(MLP["dropout"])] if i == 0 else [])
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], self.num_classes))

    @torch.no_grad()
    def standardise_by(self, vectors: torch.Tensor) -> None:
        """Set ``shift`` and ``scale`` to the per-feature mean and standard deviation of ``vectors`` (N, F)."""
        x = vectors.double()
        std = x.std(0) if len(x) > 1 else torch.zeros_like(x[0])
        self.shift.copy_(x.mean(0))
        self.scale.copy_(torch.where(std > 0, std, 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.shift) / self.scale)


#: Either reference network: a CNN for images, an MLP for vectors.
ReferenceClassifier = ReferenceCNN | ReferenceMLP


def reference_network(image_shape: tuple[int, ...], num_classes: int) -> ReferenceClassifier:
    """An untrained reference classifier for samples of ``image_shape``: :class:`ReferenceMLP` for vectors (F,),
    :class:`ReferenceCNN` for images (C, H, W)."""
    if len(image_shape) == 1:
        return ReferenceMLP(tuple(image_shape), num_classes)
    return ReferenceCNN(tuple(image_shape), num_classes)
