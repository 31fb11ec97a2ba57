"""The ``train`` section of a spec: how to train, the same settings for every recipe."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool

from genreg.spec.parts import Part, StrictModel

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _device_name(name: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``: the devices genreg trains on (torch knows more, such as ``mps``
    or ``meta``, that genreg's training does not support, so they are refused here rather than mid-run)."""
    if not _DEVICE.fullmatch(name):
        raise ValueError("must be 'auto', 'cpu', 'cuda' or 'cuda:N' (the devices genreg trains on)")
    return name


DeviceName = Annotated[str, AfterValidator(_device_name)]


class TrainConfig(StrictModel):
    """How to train: the same settings for every recipe."""

    epochs: int = Field(10, ge=1, description="passes over the training split")
    batch_size: int = Field(128, ge=1, description="images per optimiser step")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="learning rate")
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    grad_clip: float | None = Field(None, gt=0, allow_inf_nan=False, description="clip the gradient norm to this value")
    device: DeviceName = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="'auto': bf16 autocast where the device multiplies bf16 matrices natively (CUDA with bf16 "
        "support; a CPU with AVX512-BF16 or AMX-BF16), fp32 elsewhere; 'bf16' or 'fp32' whatever the device",
    )
    compile: Literal["auto"] | StrictBool = Field(
        "auto", description="torch.compile the loss and Adam (fused kernels); 'auto': on CUDA, off on CPU"
    )
    cuda_graph: Literal["auto"] | StrictBool = Field(
        "auto",
        description="replay training steps as CUDA graphs; 'auto': on CUDA in a single process, falling back "
        "to eager steps if a part cannot be captured",
    )
    lr_schedule: Part("schedule") | None = Field(
        None, description="how the learning rate changes over the run (a factor of lr per step); null: constant"
    )
    pictures: StrictBool = Field(
        True, description="draw samples.png and latent.png of the final model; false: the run ends without them"
    )
    callbacks: list[Part("callback")] = Field(
        default_factory=list, description="what watches the run (trackers, early stopping, best checkpoint), in order"
    )
