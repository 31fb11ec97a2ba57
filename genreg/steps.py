"""The optimiser steps of one epoch: one step body, run eagerly or replayed as a CUDA graph.

Everything a step reads lives in device tensors filled once per epoch (the
shuffled order and every step's loss weights) plus a step counter on the device,
so the body takes no Python arguments. On CUDA it is captured once as a graph and
replayed with one launch per step; on CPU the same body runs eagerly. Nothing in
it waits for the device: a non-finite loss is recorded on the device and read
once per epoch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from genreg import distributed
from genreg.data import Split
from genreg.errors import GenregError
from genreg.model import GenerativeModel
from genreg.spec import TrainConfig

WARMUP_STEPS = 3  # eager steps before capture: lazy initialisation (cuBLAS, compiled kernels) stays out of the graph


class NonFiniteLossError(GenregError):
    """A loss became NaN or infinite during training."""


def uses_bf16(config: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast when asked for, or on ``auto`` where CUDA supports bf16."""
    return config.precision == "bf16" or (
        config.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )


def autocast(config: TrainConfig, device: torch.device) -> torch.autocast:
    """The autocast context for ``config`` on ``device`` (disabled for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(config, device))


def wants(setting: str | bool, device: torch.device) -> bool:
    """``auto`` means on for CUDA (measured faster there) and off on CPU."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def make_optimizer(model: GenerativeModel, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW in the fastest form measured for ``device``.

    The fused kernel by default (~15% faster per epoch than the for-loop form on 2 CPU cores). On CUDA
    with ``train.compile`` the foreach form instead, which torch.compile turns into one kernel over every
    parameter: the fused CUDA kernel took 68 us per step on an H100 for this size of model, as it
    spreads the parameters over too few thread blocks. Capturable where steps are CUDA graphs.
    """
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer]
    form = {"foreach": True} if compiled_optimizer(config, device) else {"fused": True}
    if graphed(config, device):
        form["capturable"] = True
    return cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **form)


def compiled_optimizer(config: TrainConfig, device: torch.device) -> bool:
    return device.type == "cuda" and wants(config.compile, device)


class TermMeans(torch.nn.Module):
    """The model's loss-term means as a module's forward, which is what DistributedDataParallel wraps."""

    def __init__(self, model: GenerativeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model.term_means(x, labels)


class Steps:
    """Runs one epoch's optimiser steps over a device-resident split (this rank's share of it)."""

    def __init__(
        self,
        model: GenerativeModel,
        optimizer: torch.optim.Optimizer,
        split: Split,
        config: TrainConfig,
        binarize: str,
    ) -> None:
        device = split.images.device
        self.model, self.optimizer, self.split, self.config = model, optimizer, split, config
        self.device = device
        self.dynamic_binarization = binarize == "dynamic"
        self.batch = config.batch_size
        self.place = distributed.world()
        self.n = distributed.share_size(len(split), self.batch, self.place)  # this rank's images per epoch
        self.full, self.tail = divmod(self.n, self.batch)
        terms = len(model.losses)
        self.order = torch.zeros(self.n, dtype=torch.long, device=device)
        self.weights = torch.zeros(self.steps, terms, device=device)
        self.k = torch.zeros((), dtype=torch.long, device=device)
        self.sums = torch.zeros(terms + 1, device=device)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_values = torch.zeros(terms + 1, device=device)
        # decided once, outside the compiled code: a query traced inside it made torch.compile recompile every step
        self.bf16 = uses_bf16(config, device)
        self.term_means = model.term_means
        if self.place.distributed:  # DDP averages the gradients over ranks during backward
            ids = [device.index] if device.type == "cuda" else None
            self.term_means = torch.nn.parallel.DistributedDataParallel(TermMeans(model), device_ids=ids)
        compiled = wants(config.compile, device)
        self.batch_loss = torch.compile(self._batch_loss, dynamic=False) if compiled else self._batch_loss
        self.record = torch.compile(record, dynamic=False) if compiled else record
        step = optimizer.step
        self.optimizer_step = torch.compile(step) if compiled_optimizer(config, device) else step

    @property
    def steps(self) -> int:
        return self.full + (self.tail > 0)

    def epoch(self, order: torch.Tensor, weights: torch.Tensor, on_step: Callable[[int], None]) -> torch.Tensor:
        """Train on the split in ``order``; ``weights[s]`` weights the loss terms at step s.

        ``order`` is the same permutation on every rank; each takes its share.
        Returns this rank's per-image sums of the total and of each term (read them once).
        """
        self.order.copy_(distributed.shard(order, self.batch, self.place))
        self.weights.copy_(weights)
        self.k.zero_()
        self.sums.zero_()
        self.bad_step.fill_(-1)
        done = 0
        while done < self.full:
            for _ in range(self.advance(self.full - done)):
                on_step(done)
                done += 1
        if self.tail:
            self.tail_step()
            on_step(self.full)
        return self.sums

    def check_finite(self, names: list[str], epoch: int) -> None:
        """Raise naming the epoch, step and terms if any step of the last epoch was not finite."""
        step = int(distributed.max_over_ranks(self.bad_step))  # every rank stops, or none
        if step < 0:
            return
        values = dict(zip(names, self.bad_values.tolist(), strict=True))
        bad = [f"{name} = {value}" for name, value in values.items() if not math.isfinite(value)]
        raise NonFiniteLossError(
            f"the loss became non-finite at epoch {epoch + 1}, step {step + 1} ({', '.join(bad)}); training "
            "stopped and the run folder keeps the checkpoint of the last finished epoch. Lower train.lr, set "
            "train.grad_clip, or check the data for extreme values."
        )

    def advance(self, remaining: int) -> int:
        """Run at least one and at most ``remaining`` full-batch steps; returns how many ran."""
        self.full_step()
        return 1

    def full_step(self) -> None:
        rows = self.order[: self.full * self.batch].view(self.full, self.batch)
        self.step(rows.index_select(0, self.k.view(1)).view(-1), self.batch_loss, self.record)

    def tail_step(self) -> None:
        """The short last batch, eagerly (its shape would make torch.compile compile again)."""
        self.step(self.order[self.full * self.batch :], self._batch_loss, record)

    def step(self, index: torch.Tensor, batch_loss: Callable, record: Callable) -> None:
        """Forward, backward and update on the images at ``index``, then the bookkeeping."""
        total, values = batch_loss(index)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer_step()
        record(values, len(index), self.k, self.sums, self.bad_step, self.bad_values)

    def _batch_loss(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather the batch and return the weighted total and the values to record (total, then terms)."""
        x = self.split.images.index_select(0, index)
        y = self.split.labels.index_select(0, index)
        if self.dynamic_binarization:
            x = torch.bernoulli(x)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            means = self.term_means(x, y)
        total = (means * self.weights.index_select(0, self.k.view(1)).view(-1)).sum()
        return total, torch.cat([total.detach().view(1), means.detach()])


def record(
    values: torch.Tensor,
    n: int,
    k: torch.Tensor,
    sums: torch.Tensor,
    bad_step: torch.Tensor,
    bad_values: torch.Tensor,
) -> None:
    """Add a step's values to the epoch's sums, remember the first non-finite step, count the step."""
    sums.add_(values * n)
    first = (bad_step < 0) & ~torch.isfinite(values).all()
    bad_step.copy_(torch.where(first, k, bad_step))
    bad_values.copy_(torch.where(first, values, bad_values))
    k.add_(1)


class GraphedSteps(Steps):
    """Steps whose full batches replay captured CUDA graphs.

    The first few steps run eagerly on a side stream (they are real steps). Then
    two graphs are captured, of one step and of ``UNROLL`` steps in a row, and every
    later full batch replays one of them: with one launch per ``UNROLL`` steps the
    host stays ahead of the GPU. With ``config.cuda_graph == 'auto'`` a part that
    cannot be captured (one that reads a value back to the host, say) makes it warn
    and go on eagerly.
    """

    UNROLL = 8

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.eager_steps = 0
        self.failed = False

    def advance(self, remaining: int) -> int:
        if not self.graphs and not self.failed and self.eager_steps >= WARMUP_STEPS:
            self.graphs = self._capture()
        if not self.graphs:
            self._on_side_stream(self.full_step)
            self.eager_steps += 1
            return 1
        count = self.UNROLL if remaining >= self.UNROLL else 1
        self.graphs[count].replay()
        return count

    def _on_side_stream(self, fn: Callable[[], None]) -> None:
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            fn()
        torch.cuda.current_stream(self.device).wait_stream(stream)

    def _capture(self) -> dict[int, torch.cuda.CUDAGraph]:
        """Capture (nothing runs yet) the one-step and the unrolled graph; {} if that fails."""
        graphs = {}
        try:
            for count in (1, self.UNROLL):
                graphs[count] = torch.cuda.CUDAGraph()
                self.optimizer.zero_grad(set_to_none=True)
                with torch.cuda.graph(graphs[count]):
                    for _ in range(count):
                        self.full_step()
        except Exception as exc:  # noqa: BLE001 - any capture failure means: run eagerly
            if self.config.cuda_graph is True:
                raise GenregError(
                    f"train.cuda_graph is true but the training step cannot be captured as a CUDA graph ({exc}); "
                    "set train.cuda_graph to 'auto' or false."
                ) from exc
            warnings.warn(f"training step not captured as a CUDA graph ({exc}); running eagerly.", stacklevel=2)
            self.optimizer.zero_grad(set_to_none=True)
            self.failed = True
            return {}
        return graphs


def graphed(config: TrainConfig, device: torch.device) -> bool:
    """Whether training steps on ``device`` are captured as a CUDA graph (not yet with several processes)."""
    return device.type == "cuda" and wants(config.cuda_graph, device) and not distributed.world().distributed


def make_steps(
    model: GenerativeModel, optimizer: torch.optim.Optimizer, split: Split, config: TrainConfig, binarize: str
) -> Steps:
    """Graph-captured steps where :func:`graphed` says so (the optimiser must be capturable), else eager."""
    cls = GraphedSteps if graphed(config, split.images.device) else Steps
    return cls(model, optimizer, split, config, binarize)
