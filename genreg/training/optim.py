"""The optimiser and the form of a step: Adam in the fastest form for the device, and whether steps are
compiled or captured as CUDA graphs (the precision of a step: :mod:`genreg.training.precision`).

Each choice is made once, before training, from ``train.*`` and the device, so the
step itself asks nothing: ``auto`` means what was measured faster there.
"""

from __future__ import annotations

import warnings

import torch

from genreg.model.generative import GenerativeModel
from genreg.spec.train import TrainConfig
from genreg.training import distributed


def auto_on_cuda(setting: str | bool, device: torch.device) -> bool:
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
    form = {"foreach": True} if compiles_optimizer_step(config, device) else {"fused": True}
    if uses_cuda_graphs(config, device):
        form["capturable"] = True
    params = [p for p in model.parameters() if p.requires_grad]  # frozen parts (see genreg extend) stay as they are
    return cls(params, lr=config.lr, weight_decay=config.weight_decay, **form)


def compiles_optimizer_step(config: TrainConfig, device: torch.device) -> bool:
    """torch.compile the optimiser step: on CUDA, unless the learning rate changes (it would recompile each step)."""
    return device.type == "cuda" and auto_on_cuda(config.compile, device) and config.lr_schedule is None


class OptimizerStep:
    """The update run after each backward pass: ``optimizer.step()`` in the form measured fastest on the device.

    ``form`` says which: ``compiled`` (CUDA with ``train.compile``: torch.compile of the
    step, one kernel over every parameter), ``direct`` (CPU, fused Adam/AdamW: the fused
    kernel called without the optimiser's per-call Python, see :class:`FusedAdamStep`) or
    ``plain`` (``optimizer.step`` itself). Every form computes the same update.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, device: torch.device) -> None:
        if compiles_optimizer_step(config, device):
            self.form, self.update = "compiled", torch.compile(optimizer.step)
        elif device.type == "cpu" and FusedAdamStep.applies(optimizer):
            self.form, self.update = "direct", FusedAdamStep(optimizer)
        else:
            self.form, self.update = "plain", optimizer.step

    def __call__(self) -> None:
        self.update()


class FusedAdamStep:
    """``optimizer.step()`` of a fused CPU Adam/AdamW, without its per-call Python.

    ``Optimizer.step`` regroups the parameters and their state by device and dtype
    on every call; for a small model on a CPU that costs about as much as the
    update itself (0.47 -> 0.29 ms per step measured for the speed benchmark's
    VAE). The first call goes through ``optimizer.step`` (which creates the state);
    later calls run the same kernel on the same state tensors, reading the
    learning rate and the other settings from the param group each time, so the
    optimizer's state_dict stays the one checkpoints save.

    The kernel (``torch._fused_adam_``/``torch._fused_adamw_``) is private to
    PyTorch, so it is guarded: the first direct call is checked against
    ``optimizer.step`` on the same state, and if it fails or differs by a single
    bit, a warning says so and every later step is ``optimizer.step``.
    """

    KERNELS = ("_fused_adam_", "_fused_adamw_")

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.state: tuple[list[torch.Tensor], ...] | None = None
        self.direct: bool | None = None  # whether the kernel may be called directly; None: not checked yet

    @classmethod
    def applies(cls, optimizer: torch.optim.Optimizer) -> bool:
        """A single-group fused Adam or AdamW without amsgrad, maximize or capturable, and a torch with the kernel."""
        groups = optimizer.param_groups
        return (
            isinstance(optimizer, torch.optim.Adam)
            and len(groups) == 1
            and groups[0]["fused"]
            and not (groups[0]["amsgrad"] or groups[0]["maximize"] or groups[0]["capturable"])
            and all(hasattr(torch, kernel) for kernel in cls.KERNELS)
        )

    def __call__(self) -> None:
        group = self.optimizer.param_groups[0]
        grads = [p.grad for p in group["params"]]
        if self.direct is False or self.state is None or any(g is None for g in grads):
            self.optimizer.step()  # creates the state; skips parameters without a gradient
            self.state = None if any(g is None for g in grads) else self._state(group)
        elif self.direct is None:
            self.direct = self._check(group, grads)
        else:
            self._kernel(group, grads)

    def _kernel(self, group: dict, grads: list[torch.Tensor]) -> None:
        params, exp_avgs, exp_avg_sqs, steps = self.state
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if group.get("decoupled_weight_decay", False) else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel(
            params, grads, exp_avgs, exp_avg_sqs, [], steps,
            amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
            eps=group["eps"], maximize=False, grad_scale=None, found_inf=None,
        )  # fmt: skip

    @torch.no_grad()
    def _check(self, group: dict, grads: list[torch.Tensor]) -> bool:
        """One step by the kernel, compared bit for bit with ``optimizer.step`` from the same state, whose result
        is kept; whether the kernel may be used from now on (if not, a warning says why)."""
        tensors = [t for ts in self.state for t in ts]
        before = [t.clone() for t in tensors]
        try:
            self._kernel(group, grads)
            direct, problem = [t.clone() for t in tensors], ""
        except (RuntimeError, TypeError) as exc:
            direct, problem = None, f"{type(exc).__name__}: {exc}"
        for tensor, value in zip(tensors, before, strict=True):
            tensor.copy_(value)
        self.optimizer.step()
        if direct is not None and not all(_same(a, b) for a, b in zip(direct, tensors, strict=True)):
            problem = "its update differs from optimizer.step()"
        if problem:
            warnings.warn(
                f"the fused CPU Adam kernel of torch {torch.__version__} cannot be called directly ({problem}); "
                "training goes on with optimizer.step(), about 15% slower per epoch.",
                stacklevel=2,
            )
        return not problem

    def _state(self, group: dict) -> tuple[list[torch.Tensor], ...]:
        states = [self.optimizer.state[p] for p in group["params"]]
        return (
            list(group["params"]),
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["step"] for s in states],
        )


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal value for value, NaN where the other is NaN (weights that already diverged agree too)."""
    return torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True)


def uses_cuda_graphs(config: TrainConfig, device: torch.device, sparse: bool = False) -> bool:
    """Whether training steps on ``device`` are captured as a CUDA graph.

    Not yet with several processes, nor with a learning-rate schedule: a captured
    step would replay the learning rate it was captured with; nor for sparse rows
    (``sparse``), whose batches hold a different number of values each step.
    """
    return (
        not sparse
        and device.type == "cuda"
        and auto_on_cuda(config.cuda_graph, device)
        and not distributed.world().distributed
        and config.lr_schedule is None
    )
