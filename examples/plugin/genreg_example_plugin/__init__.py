"""An example genreg plugin: the ``thermometer`` conditioner.

A thermometer (ordinal) code turns class ``k`` into a vector whose first ``k + 1``
entries are lit and the rest 0. Unlike one-hot, neighbouring classes share most
of their code, which suits labels with an order (ages, grades, sizes). It is
here to show the whole contract of a genreg plugin in one small file: a pydantic
config class, a factory called with the kind's context, and the one hook. See
docs/plugins.md for the guide.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

import genreg
from genreg.errors import AssemblyError

__version__ = "0.1.0"


class ThermometerConfig(BaseModel):
    """Ordinal label vectors: class k lights the first k+1 entries (for ordered classes)."""

    # No `type` field: genreg adds it (the registered name) when it builds the spec.
    model_config = ConfigDict(extra="forbid")

    num_classes: int | None = Field(None, ge=1, description="length of the code; null: the dataset's classes")
    scale: float = Field(1.0, gt=0, description="value of a lit entry")


class Thermometer(nn.Module):
    """Class ``k`` -> ``scale`` times ``[1] * (k + 1) + [0] * (num_classes - k - 1)``.

    genreg calls ``Thermometer(config, num_classes=...)`` with the dataset's number
    of classes; ``dim`` tells the encoder and decoder how wide the condition is, and
    ``config`` is what a saved model records to rebuild this conditioner.
    """

    def __init__(self, config: ThermometerConfig, *, num_classes: int) -> None:
        super().__init__()
        if config.num_classes is not None and config.num_classes < num_classes:
            # Fail while assembling, not with an index error in the middle of training.
            raise AssemblyError(
                f"conditioner 'thermometer': num_classes={config.num_classes}, but the dataset has labels "
                f"up to {num_classes - 1}; set num_classes >= {num_classes} or null (the dataset's)."
            )
        self.config = config
        self.num_classes = self.dim = num_classes if config.num_classes is None else config.num_classes
        # Row k of a lower-triangular matrix is exactly the code of class k. A buffer
        # follows the model to its device; non-persistent because the config rebuilds
        # it, so saved files hold no extra tensors and stay loadable if it changes.
        codes = torch.tril(torch.ones(self.num_classes, self.num_classes)) * config.scale
        self.register_buffer("codes", codes, persistent=False)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels (B,) of class indices -> codes (B, num_classes) float."""
        return self.codes[labels.long()]


@genreg.hookimpl
def register_components(register):
    """genreg's one plugin hook: register each component with its config class."""
    register("conditioner", "thermometer", Thermometer, ThermometerConfig)
