"""The optimiser steps of one epoch: one step body, run eagerly or replayed as a CUDA graph.

Everything a step reads lives in device tensors filled once per epoch (the
shuffled order and every step's loss weights) plus a step counter on the device,
so the body takes no Python arguments. On CUDA it is captured once as a graph and
replayed with one launch per step; on CPU the same body runs eagerly. Nothing in
it waits for the device: each step writes its loss values into a row of a device
table, read once per epoch (its sums are the epoch's metrics, its first
non-finite row the step to blame).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from genreg.data.sparse import RowStore
from genreg.data.splits import Split
from genreg.errors import GenregError, NonFiniteLossError
from genreg.model.generative import GenerativeModel
from genreg.spec.train import TrainConfig
from genreg.training import distributed
from genreg.training.optim import OptimizerStep, auto_on_cuda, uses_cuda_graphs
from genreg.training.precision import choose

WARMUP_STEPS = 3  # eager steps before capture: lazy initialisation (cuBLAS, compiled kernels) stays out of the graph


class TermMeans(torch.nn.Module):
    """The model's loss-term means as a module's forward, which is what DistributedDataParallel wraps."""

    def __init__(self, model: GenerativeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, condition: dict[str, torch.Tensor] | None) -> torch.Tensor:
        return self.model.term_means(x, condition)


class Steps:
    """Runs one epoch's optimiser steps over a device-resident split (this rank's share of it).

    The device tensors a step reads and writes, filled or cleared once per epoch:
    ``order`` (this rank's shuffled image indices), ``weights`` (count, terms: each
    step's loss weights), ``step_index`` (the step under way, a counter on the
    device) and ``loss_table`` (count, 1 + terms: each step's total and term
    means). ``batch_sizes`` (count,) holds each step's number of images.
    """

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
        self.batch_size = config.batch_size
        self.world = distributed.world()
        self.share = distributed.share_size(len(split), self.batch_size, self.world)  # this rank's images per epoch
        self.full_batches, self.tail = divmod(self.share, self.batch_size)
        self.count = self.full_batches + (self.tail > 0)  # steps per epoch
        terms = len(model.losses)
        self.order = torch.zeros(self.share, dtype=torch.long, device=device)
        self.weights = torch.zeros(self.count, terms, device=device)
        self.step_index = torch.zeros((), dtype=torch.long, device=device)
        self.loss_table = torch.zeros(self.count, terms + 1, device=device)  # each step's total, then its terms
        sizes = [self.batch_size] * self.full_batches + [self.tail] * (self.tail > 0)
        self.batch_sizes = torch.tensor(sizes, device=device).float()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.columns = model.condition_of(split) or {}  # the condition columns the model reads, whole
        # decided once, outside the compiled code: a query traced inside it made torch.compile recompile every step
        self.precision = choose(config.precision, device)
        self.bf16 = self.precision.bf16
        self.term_means = model.term_means
        if self.world.distributed:  # DDP averages the gradients over ranks during backward
            ids = [device.index] if device.type == "cuda" else None
            self.term_means = torch.nn.parallel.DistributedDataParallel(TermMeans(model), device_ids=ids)
        compiled = auto_on_cuda(config.compile, device)
        self.batch_loss = torch.compile(self._batch_loss, dynamic=False) if compiled else self._batch_loss
        self.write_row = torch.compile(write_row, dynamic=False) if compiled else write_row
        self.optimizer_step = OptimizerStep(optimizer, config, device)

    def epoch(
        self,
        order: torch.Tensor,
        weights: torch.Tensor,
        on_step: Callable[[int], None],
        lrs: list[float] | None = None,
    ) -> torch.Tensor:
        """Train on the split in ``order``; ``weights[s]`` weights the loss terms at step s, ``lrs[s]`` is its lr.

        ``order`` (N,) is the same permutation on every rank; each takes its share.
        ``on_step(s)`` is called after step s. Without ``lrs`` the optimiser's
        learning rate stays as it is. Returns this rank's per-image sums of the
        total and of each term, (1 + terms,) (read them once).
        """
        self.order.copy_(distributed.shard(order, self.batch_size, self.world))
        self.weights.copy_(weights)
        self.step_index.zero_()
        self.loss_table.zero_()
        done = 0
        while done < self.full_batches:
            self.set_lr(lrs, done)
            for _ in range(self.advance(self.full_batches - done)):
                on_step(done)
                done += 1
        if self.tail:
            self.set_lr(lrs, self.full_batches)
            self.tail_step()
            on_step(self.full_batches)
        return self.sums()

    def set_lr(self, lrs: list[float] | None, step: int) -> None:
        """Give the optimiser step ``step``'s scheduled learning rate (a float the eager step reads each time)."""
        if lrs is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lrs[step]

    def sums(self, steps: int | None = None) -> torch.Tensor:
        """Per-image sums of the total and of each term over the first ``steps`` steps (default: all)."""
        return self.batch_sizes[:steps] @ self.loss_table[:steps]

    def check_finite(self, names: list[str], epoch: int, spec_path: Path | None = None) -> None:
        """Raise naming the epoch, step and terms if any step of the last epoch was not finite, and how to train
        again (with ``spec_path``, the run folder's ``spec.json``, a ``genreg run`` command that works)."""
        bad_rows = (~torch.isfinite(self.loss_table).all(1)).nonzero()
        first = torch.tensor([int(bad_rows[0]) if len(bad_rows) else -1], device=self.device)
        step = int(distributed.max_over_ranks(first)[0])  # every rank stops, or none
        if step < 0:
            return
        values = dict(zip(names, self.loss_table[step].tolist(), strict=True))
        culprits = [f"{name} = {value}" for name, value in values.items() if not math.isfinite(value)]
        raise NonFiniteLossError(
            f"the loss became non-finite at epoch {epoch + 1}, step {step + 1} ({', '.join(culprits)}); training "
            f"stopped and the run folder keeps the checkpoint of the last finished epoch. {self.retry(spec_path)}"
        )

    def retry(self, spec_path: Path | None) -> str:
        """How to train again after a non-finite loss: a new run, since ``--resume`` keeps train.lr and grad_clip."""
        lower = f"{self.config.lr / 10:g}"
        if spec_path is None or not spec_path.is_file():
            return (
                f"Train again from the start with a lower train.lr (e.g. {lower}) or with train.grad_clip set "
                "(e.g. 1.0), or check the data for extreme values."
            )
        return (
            f"Train it again as a new run with a lower learning rate: genreg run {spec_path} --set "
            f"train.lr={lower} --out {spec_path.parent}-lr{lower} (add --set train.grad_clip=1.0 to clip "
            "gradients, or give --out this run's folder with --overwrite to replace it); --resume cannot change "
            "train.lr or train.grad_clip. Or check the data for extreme values."
        )

    def advance(self, remaining: int) -> int:
        """Run at least one and at most ``remaining`` full-batch steps; returns how many ran."""
        self.full_step()
        return 1

    def full_step(self) -> None:
        rows = self.order[: self.full_batches * self.batch_size].view(self.full_batches, self.batch_size)
        self.step(rows.index_select(0, self.step_index.view(1)).view(-1), self.batch_loss, self.write_row)

    def tail_step(self) -> None:
        """The short last batch, eagerly (its shape would make torch.compile compile again)."""
        self.step(self.order[self.full_batches * self.batch_size :], self._batch_loss, write_row)

    def step(self, index: torch.Tensor, batch_loss: Callable, write_row: Callable) -> None:
        """Forward, backward and update on the images at ``index``, then the bookkeeping."""
        total, values = batch_loss(index)
        for p in self.params:  # what zero_grad(set_to_none=True) does, without its per-call overhead
            p.grad = None
        total.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.optimizer_step()
        write_row(values, self.step_index, self.loss_table)

    def _batch_loss(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather the batch and return the weighted total and the values to record (total, then terms)."""
        x = self.split.images.index_select(0, index)
        condition = {column: values.index_select(0, index) for column, values in self.columns.items()}
        if self.dynamic_binarization:
            x = torch.bernoulli(x)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            means = self.term_means(x, condition or None)
        total = (means * self.weights.index_select(0, self.step_index.view(1)).view(-1)).sum()
        return total, torch.cat([total.detach().view(1), means.detach()])


def write_row(values: torch.Tensor, step_index: torch.Tensor, table: torch.Tensor) -> None:
    """Write the step's values (1 + terms,) into its row of the epoch's loss table and count the step."""
    table.index_copy_(0, step_index.view(1), values.view(1, -1))
    step_index.add_(1)


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


def make_steps(
    model: GenerativeModel, optimizer: torch.optim.Optimizer, split: Split, config: TrainConfig, binarize: str
) -> Steps:
    """Graph-captured steps where :func:`uses_cuda_graphs` says so (the optimiser must be capturable), else eager."""
    sparse = isinstance(split.images, RowStore)
    cls = GraphedSteps if uses_cuda_graphs(config, split.images.device, sparse) else Steps
    return cls(model, optimizer, split, config, binarize)
