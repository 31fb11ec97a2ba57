"""An example genreg plugin: the ``thermometer`` conditioner and the ``hook-log`` callback.

A thermometer (ordinal) code turns class ``k`` into a vector whose first ``k + 1``
entries are lit and the rest 0. Unlike one-hot, neighbouring classes share most
of their code, which suits labels with an order (ages, grades, sizes). It is
here to show the whole contract of a genreg plugin in one small file: a pydantic
config class, a factory called with the kind's context, and the one hook. The
``hook-log`` callback shows the other side of a plugin: code that watches a run
(and may stop it) rather than a part of the model. See docs/plugins.md for the guide.
"""

from __future__ import annotations

import json
from pathlib import Path

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
                f"conditioner 'thermometer': num_classes={config.num_classes}, but the dataset's column has "
                f"{num_classes} classes; set num_classes >= {num_classes} or null (the dataset's)."
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


class HookLogConfig(BaseModel):
    """Append one JSON line per callback hook to a file; optionally stop the run early."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field("hooks.jsonl", description="the log file; a relative path is inside the run folder")
    stop_after: int | None = Field(None, ge=1, description="ask the run to stop at the end of this epoch")
    steps: bool = Field(False, description="also log every optimiser step (on_step)")


class HookLog:
    """Writes ``{"hook", "epoch", ...}`` for each hook genreg calls, in the order it calls them.

    genreg calls ``HookLog(config)``; every hook gets the run's read-only view. A
    class-level ``on_step`` would make genreg call it after every optimiser step of
    every run, so it is set on the instance only when the config asks for it.
    """

    def __init__(self, config: HookLogConfig) -> None:
        self.config = config
        if config.steps:
            self.on_step = self._on_step

    def write(self, run: genreg.RunView, hook: str, **fields: object) -> None:
        folder = run.folder if run.folder is not None else Path.cwd()
        with open(folder / self.config.path, "a") as log:
            log.write(json.dumps({"hook": hook, "epoch": run.epoch, **fields}) + "\n")

    def on_run_start(self, run: genreg.RunView) -> None:
        self.write(run, "on_run_start", epochs=run.epochs, resumed_after=len(run.history))

    def on_epoch_start(self, run: genreg.RunView) -> None:
        self.write(run, "on_epoch_start")

    def _on_step(self, run: genreg.RunView) -> None:
        self.write(run, "on_step", step=run.step, lr=run.lr)

    def on_checkpoint(self, run: genreg.RunView, path: Path) -> None:
        self.write(run, "on_checkpoint", path=path.name)

    def on_epoch_end(self, run: genreg.RunView) -> None:
        self.write(run, "on_epoch_end", test_loss=run.metric("test.loss"))
        if run.epoch == self.config.stop_after:
            run.request_stop(f"hook-log: stop_after={self.config.stop_after}")

    def on_run_end(self, run: genreg.RunView) -> None:
        self.write(run, "on_run_end", stopped=run.stop_reason)


@genreg.hookimpl
def register_components(register):
    """genreg's one plugin hook: register each component with its config class."""
    register("conditioner", "thermometer", Thermometer, ThermometerConfig)
    register("callback", "hook-log", HookLog, HookLogConfig)
