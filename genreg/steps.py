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
    params = [p for p in model.parameters() if p.requires_grad]  # frozen parts (see genreg extend) stay as they are
    return cls(params, lr=config.lr, weight_decay=config.weight_decay, **form)


def compiled_optimizer(config: TrainConfig, device: torch.device) -> bool:
    """torch.compile the optimiser step: on CUDA, unless the learning rate changes (it would recompile each step)."""
    return device.type == "cuda" and wants(config.compile, device) and config.lr_schedule is None


def optimizer_step(optimizer: torch.optim.Optimizer, config: TrainConfig, device: torch.device) -> Callable[[], None]:
    """The update to run after each backward pass.

    Compiled on CUDA with ``train.compile``; on CPU the fused kernel called directly
    (:class:`FusedAdamStep`), elsewhere ``optimizer.step``.
    """
    if compiled_optimizer(config, device):
        return torch.compile(optimizer.step)
    if device.type == "cpu" and FusedAdamStep.applies(optimizer):
        return FusedAdamStep(optimizer)
    return optimizer.step


class FusedAdamStep:
    """``optimizer.step()`` of a fused CPU Adam/AdamW, without its per-call Python.

    ``Optimizer.step`` regroups the parameters and their state by device and dtype
    on every call; for a small model on a CPU that costs about as much as the
    update itself (0.47 -> 0.29 ms per step measured for the speed benchmark's
    VAE). The first call goes through ``optimizer.step`` (which creates the state);
    later calls run the same kernel on the same state tensors, reading the
    learning rate and the other settings from the param group each time, so the
    optimizer's state_dict stays the one checkpoints save.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.state: tuple[list[torch.Tensor], ...] | None = None

    @staticmethod
    def applies(optimizer: torch.optim.Optimizer) -> bool:
        groups = optimizer.param_groups
        return (
            isinstance(optimizer, torch.optim.Adam)
            and len(groups) == 1
            and groups[0]["fused"]
            and not (groups[0]["amsgrad"] or groups[0]["maximize"] or groups[0]["capturable"])
        )

    def __call__(self) -> None:
        group = self.optimizer.param_groups[0]
        grads = [p.grad for p in group["params"]]
        if self.state is None or any(g is None for g in grads):
            self.optimizer.step()  # creates the state; skips parameters without a gradient
            self.state = None if any(g is None for g in grads) else self._state(group)
            return
        params, exp_avgs, exp_avg_sqs, steps = self.state
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if group.get("decoupled_weight_decay", False) else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel(
            params, grads, exp_avgs, exp_avg_sqs, [], steps,
            amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
            eps=group["eps"], maximize=False, grad_scale=None, found_inf=None,
        )  # fmt: skip

    def _state(self, group: dict) -> tuple[list[torch.Tensor], ...]:
        states = [self.optimizer.state[p] for p in group["params"]]
        return (
            list(group["params"]),
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["step"] for s in states],
        )


class TermMeans(torch.nn.Module):
    """The model's loss-term means as a module's forward, which is what DistributedDataParallel wraps."""

    def __init__(self, model: GenerativeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, condition: dict[str, torch.Tensor] | None) -> torch.Tensor:
        return self.model.term_means(x, condition)


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
        self.values = torch.zeros(self.steps, terms + 1, device=device)  # each step's total, then its terms
        self.images = torch.tensor([self.batch] * self.full + [self.tail] * (self.tail > 0), device=device).float()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.columns = model.condition_of(split) or {}  # the condition columns the model reads, whole
        # decided once, outside the compiled code: a query traced inside it made torch.compile recompile every step
        self.bf16 = uses_bf16(config, device)
        self.term_means = model.term_means
        if self.place.distributed:  # DDP averages the gradients over ranks during backward
            ids = [device.index] if device.type == "cuda" else None
            self.term_means = torch.nn.parallel.DistributedDataParallel(TermMeans(model), device_ids=ids)
        compiled = wants(config.compile, device)
        self.batch_loss = torch.compile(self._batch_loss, dynamic=False) if compiled else self._batch_loss
        self.record = torch.compile(record, dynamic=False) if compiled else record
        self.optimizer_step = optimizer_step(optimizer, config, device)

    @property
    def steps(self) -> int:
        return self.full + (self.tail > 0)

    def epoch(
        self,
        order: torch.Tensor,
        weights: torch.Tensor,
        on_step: Callable[[int], None],
        lrs: list[float] | None = None,
    ) -> torch.Tensor:
        """Train on the split in ``order``; ``weights[s]`` weights the loss terms at step s, ``lrs[s]`` is its lr.

        ``order`` is the same permutation on every rank; each takes its share.
        Without ``lrs`` the optimiser's learning rate stays as it is.
        Returns this rank's per-image sums of the total and of each term (read them once).
        """
        self.order.copy_(distributed.shard(order, self.batch, self.place))
        self.weights.copy_(weights)
        self.k.zero_()
        self.values.zero_()
        done = 0
        while done < self.full:
            self.set_lr(lrs, done)
            for _ in range(self.advance(self.full - done)):
                on_step(done)
                done += 1
        if self.tail:
            self.set_lr(lrs, self.full)
            self.tail_step()
            on_step(self.full)
        return self.sums()

    def set_lr(self, lrs: list[float] | None, step: int) -> None:
        """Give the optimiser step ``step``'s scheduled learning rate (a float the eager step reads each time)."""
        if lrs is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lrs[step]

    def sums(self, steps: int | None = None) -> torch.Tensor:
        """Per-image sums of the total and of each term over the first ``steps`` steps (default: all)."""
        return self.images[:steps] @ self.values[:steps]

    def check_finite(self, names: list[str], epoch: int) -> None:
        """Raise naming the epoch, step and terms if any step of the last epoch was not finite."""
        bad = (~torch.isfinite(self.values).all(1)).nonzero()
        first = torch.tensor([int(bad[0]) if len(bad) else -1], device=self.device)
        step = int(distributed.max_over_ranks(first)[0])  # every rank stops, or none
        if step < 0:
            return
        values = dict(zip(names, self.values[step].tolist(), strict=True))
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
        for p in self.params:  # what zero_grad(set_to_none=True) does, without its per-call overhead
            p.grad = None
        total.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.optimizer_step()
        record(values, self.k, self.values)

    def _batch_loss(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather the batch and return the weighted total and the values to record (total, then terms)."""
        x = self.split.images.index_select(0, index)
        condition = {column: values.index_select(0, index) for column, values in self.columns.items()}
        if self.dynamic_binarization:
            x = torch.bernoulli(x)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            means = self.term_means(x, condition or None)
        total = (means * self.weights.index_select(0, self.k.view(1)).view(-1)).sum()
        return total, torch.cat([total.detach().view(1), means.detach()])


def record(values: torch.Tensor, k: torch.Tensor, table: torch.Tensor) -> None:
    """Write step ``k``'s values into row ``k`` of the epoch's table and count the step."""
    table.index_copy_(0, k.view(1), values.view(1, -1))
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
    """Whether training steps on ``device`` are captured as a CUDA graph.

    Not yet with several processes, nor with a learning-rate schedule: a captured
    step would replay the learning rate it was captured with.
    """
    return (
        device.type == "cuda"
        and wants(config.cuda_graph, device)
        and not distributed.world().distributed
        and config.lr_schedule is None
    )


def make_steps(
    model: GenerativeModel, optimizer: torch.optim.Optimizer, split: Split, config: TrainConfig, binarize: str
) -> Steps:
    """Graph-captured steps where :func:`graphed` says so (the optimiser must be capturable), else eager."""
    cls = GraphedSteps if graphed(config, split.images.device) else Steps
    return cls(model, optimizer, split, config, binarize)
