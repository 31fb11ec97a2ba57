"""Conditioners: a class label becomes a vector fed to the encoder and the decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from genreg.errors import AssemblyError


class OneHotConfig(BaseModel):
    """One-hot label vectors: right for a few classes."""

    model_config = ConfigDict(extra="forbid")

    num_classes: int | None = Field(None, ge=1, description="number of classes; null: the dataset's")


class EmbeddingConfig(OneHotConfig):
    """A learned embedding per class: right for many classes."""

    dim: int = Field(16, ge=1, description="size of each class's learned vector")


def _resolve_classes(config: OneHotConfig, num_classes: int, name: str) -> int:
    if config.num_classes is None:
        return num_classes
    if config.num_classes < num_classes:
        raise AssemblyError(
            f"conditioner '{name}': num_classes={config.num_classes}, but the dataset has labels "
            f"up to {num_classes - 1}; set num_classes >= {num_classes} or null (the dataset's)."
        )
    return config.num_classes


class OneHot(nn.Module):
    """One-hot encoding of the class label (no parameters)."""

    def __init__(self, config: OneHotConfig, *, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.num_classes = self.dim = _resolve_classes(config, num_classes, "onehot")

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels.long(), self.num_classes).float()


class Embedding(nn.Module):
    """A learned nn.Embedding vector per class."""

    def __init__(self, config: EmbeddingConfig, *, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.num_classes = _resolve_classes(config, num_classes, "embedding")
        self.dim = config.dim
        self.table = nn.Embedding(self.num_classes, config.dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table(labels.long())
