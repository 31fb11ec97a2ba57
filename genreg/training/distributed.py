"""Training in several processes with PyTorch's own engine: torchrun starts them, DDP syncs them.

``torchrun --nproc_per_node N -m genreg run SPEC`` sets RANK, WORLD_SIZE and
LOCAL_RANK; genreg then joins the process group (NCCL on CUDA, gloo on CPU),
wraps the model in DistributedDataParallel, gives each rank its share of every
batch, sums the metrics over ranks, and lets rank 0 alone write the run folder.
``train.batch_size`` is the batch of one rank: the global batch is
``batch_size x WORLD_SIZE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from genreg.errors import SpecError


@dataclass(frozen=True)
class World:
    """Which process this is among how many (a single process is rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place, from the variables torchrun sets (none: a single process)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str) -> torch.device:
    """The device ``train.device`` names: ``auto`` is CUDA when available, else CPU; under torchrun each rank
    takes the GPU of its local rank. Raises :class:`SpecError` for CUDA where there is none."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"train.device is '{name}' but CUDA is not available here; use 'auto' or 'cpu'.")
    if device.type == "cuda" and device.index is None and world().distributed:
        device = torch.device("cuda", world().local_rank)
    return device


def join(device: torch.device) -> None:
    """Join the process group once (NCCL for CUDA, gloo for CPU) when started by torchrun."""
    if world().distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shard(order: torch.Tensor, batch: int, world: World) -> torch.Tensor:
    """This rank's share of an epoch's ``order``, so that step k of all ranks together is global batch k.

    With global batch G = batch x size, the order is cut into G-sized batches and
    rank r takes images [r*batch, (r+1)*batch) of each; the short last batch is
    split evenly and its remainder (fewer than ``size`` images) is left out of
    this epoch, because every rank must take the same number of steps.
    """
    if not world.distributed:
        return order
    width = batch * world.size
    full = len(order) // width
    head = order[: full * width].view(full, world.size, batch)[:, world.rank].reshape(-1)
    tail = order[full * width :]
    share = len(tail) // world.size
    return torch.cat([head, tail[world.rank * share : (world.rank + 1) * share]])


def share_size(n: int, batch: int, world: World) -> int:
    """How many images :func:`shard` gives each rank per epoch."""
    width = batch * world.size
    return (n // width) * batch + (n % width) // world.size


def sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over every rank (itself in a single process)."""
    return _all_reduce(value, "SUM")


def max_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """``value``'s elementwise maximum over every rank (itself in a single process)."""
    return _all_reduce(value, "MAX")


def _all_reduce(value: torch.Tensor, op: str) -> torch.Tensor:
    if not dist.is_initialized():
        return value
    nccl = dist.get_backend() == "nccl"  # NCCL reduces GPU tensors only
    work = value.to(f"cuda:{torch.cuda.current_device()}") if nccl else value.clone()
    dist.all_reduce(work, op=getattr(dist.ReduceOp, op))
    return work.to(value.device)


def leave() -> None:
    """Leave the process group at the end of a distributed run (nothing otherwise)."""
    if dist.is_initialized():
        dist.destroy_process_group()
