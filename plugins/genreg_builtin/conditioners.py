"""Conditioners: a class label or a continuous value becomes a vector fed to the encoder and the decoder."""

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
            f"conditioner '{name}': num_classes={config.num_classes}, but the dataset's column has {num_classes} "
            f"classes; set num_classes >= {num_classes} or null (the dataset's)."
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

    @torch.no_grad()
    def extend(self, count: int) -> None:
        """Add ``count`` classes, each starting at the mean of the existing vectors (see ``genreg.model.extend``).

        The vectors keep their size, so the encoder and decoder need no change. The
        mean is the centre of the vectors the decoder was trained on, so before any
        fine-tuning a new class decodes to a blend of the known ones rather than to
        whatever a random vector happens to give.
        """
        old = self.table.weight
        rows = torch.cat([old, old.mean(dim=0, keepdim=True).expand(count, -1)])
        self.table = nn.Embedding.from_pretrained(rows, freeze=not old.requires_grad)
        self.num_classes += count
        self.config = self.config.model_copy(update={"num_classes": self.num_classes})

    def class_parameters(self) -> list[nn.Parameter]:
        """The parameters whose row k belongs to class k: what fine-tuning new classes may train."""
        return [self.table.weight]


class ContinuousConfig(BaseModel):
    """A continuous quantity (a dose, a temperature, the ink of a digit), standardised.

    The column's mean and standard deviation over the training split are taken
    before training and stored with the weights, so a saved model standardises
    new values exactly as in training.
    """

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(0, ge=0, description="0: feed the standardised value itself; N: a small MLP 1-N-N (ReLU)")


class Continuous(nn.Module):
    """A float column -> its standardised value (B, 1), or a learned projection of it (B, hidden)."""

    continuous = True  # genreg feeds it float values, not class indices

    def __init__(self, config: ContinuousConfig, *, num_classes: int = 0) -> None:
        super().__init__()
        self.config = config
        self.dim = config.hidden or 1
        self.project = (
            nn.Sequential(nn.Linear(1, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.hidden))
            if config.hidden
            else nn.Identity()
        )
        # statistics of the training split, saved with the weights; `fitted` says they were taken
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))
        self.register_buffer("low", torch.zeros(()))  # 5th and 95th percentiles: the range pictures span
        self.register_buffer("high", torch.ones(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, values: torch.Tensor) -> None:
        """Take the statistics from the training split's column, once (a resumed or loaded model keeps its own)."""
        if self.fitted:
            return
        values = values.float().to(self.mean.device)
        self.mean.copy_(values.mean())
        self.std.copy_(values.std(correction=0).clamp_min(1e-8))
        self.low.copy_(values.quantile(0.05))
        self.high.copy_(values.quantile(0.95))
        self.fitted.fill_(True)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        standardised = (values.float() - self.mean) / self.std
        return self.project(standardised.unsqueeze(1))
