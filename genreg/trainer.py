"""One training loop for every recipe, readable top to bottom.

The data is moved to the device once; each epoch shuffles indices there and
slices batches out of the resident tensors. Every epoch reseeds the RNGs from
(seed, epoch), so a run resumed from its last checkpoint ends with exactly the
weights of a run that was never stopped (on CPU).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from genreg import checkpoint
from genreg.data import DataSplits, Split, fixed_binarization
from genreg.errors import SpecError
from genreg.model import GenerativeModel
from genreg.spec import TrainConfig

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"train.device is '{name}' but CUDA is not available here; use 'auto' or 'cpu'.")
    return device


def autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for, or on ``auto`` where CUDA supports bf16."""
    bf16 = config.precision == "bf16" or (
        config.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def make_optimizer(model: GenerativeModel, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW, fused into one kernel per step (measured ~15% faster per epoch on 2 CPU cores)."""
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer]
    return cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed every RNG from (seed, epoch) so any epoch can be replayed alone."""
    torch.manual_seed(seed * 1_000_003 + epoch)


@torch.no_grad()
def evaluate(
    model: GenerativeModel, split: Split, config: TrainConfig, progress: float = math.inf, batch_size: int = 1000
) -> dict[str, float]:
    """Weighted total and each loss term, averaged per image over ``split``."""
    device = model.device
    sums = None
    with model.evaluating():
        for start in range(0, len(split), batch_size):
            x = split.images[start : start + batch_size].to(device)
            y = split.labels[start : start + batch_size].to(device)
            with autocast(config, device):
                total, terms = model.loss(x, y, progress)
            row = torch.stack([total.detach().float(), *terms.values()]) * x.shape[0]
            sums = row if sums is None else sums + row
    return dict(zip(["loss", *model.loss_names], (sums / len(split)).tolist(), strict=True))


def train(
    model: GenerativeModel,
    data: DataSplits,
    config: TrainConfig,
    *,
    seed: int = 0,
    run_dir: str | Path | None = None,
    resume: bool = False,
    spec: dict | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` on ``data``; returns one metrics record per epoch.

    With ``run_dir``, each epoch appends to ``metrics.jsonl`` and replaces
    ``checkpoint.safetensors``; ``resume`` continues from that checkpoint.
    """
    device = resolve_device(config.device)
    model.to(device)
    train_split = data.train.to(device)
    test_split = fixed_binarization(data.test, data.binarize, seed).to(device)
    optimizer = make_optimizer(model, config)
    run_dir = Path(run_dir) if run_dir is not None else None
    start = 0
    if resume and run_dir is not None:
        start = checkpoint.load_checkpoint(run_dir / CHECKPOINT, model, optimizer)
        truncate_metrics(run_dir / METRICS, start)
    n, batch = len(train_split), config.batch_size
    steps = math.ceil(n / batch)
    names = ["loss", *model.loss_names]
    history: list[dict] = []
    bar = tqdm(total=(config.epochs - start) * steps, disable=not progress, unit="step", dynamic_ncols=True)
    last_test = ""
    for epoch in range(start, config.epochs):
        bar.set_description(f"epoch {epoch + 1}/{config.epochs}{last_test}")
        seed_epoch(seed, epoch)
        model.train()
        began = time.perf_counter()
        order = torch.randperm(n, device=device)
        sums = torch.zeros(len(names), device=device)
        for step in range(steps):
            index = order[step * batch : (step + 1) * batch]
            x, y = train_split.images[index], train_split.labels[index]
            if data.binarize == "dynamic":
                x = torch.bernoulli(x)
            with autocast(config, device):
                total, terms = model.loss(x, y, progress=epoch + step / steps)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            sums += torch.stack([total.detach().float(), *terms.values()]).detach() * x.shape[0]
            bar.update(1)
            if progress and (step % 20 == 0 or step == steps - 1):
                bar.set_postfix(
                    {k: f"{v:.2f}" for k, v in zip(names, (sums / ((step * batch) + x.shape[0])).tolist(), strict=True)}
                )
        record = {
            "epoch": epoch + 1,
            "train": dict(zip(names, (sums / n).tolist(), strict=True)),
            "test": evaluate(model, test_split, config, progress=epoch + 1),
            "seconds": round(time.perf_counter() - began, 4),
        }
        history.append(record)
        last_test = f" (test loss {record['test']['loss']:.2f})"
        bar.set_description(f"epoch {epoch + 1}/{config.epochs}{last_test}")
        if run_dir is not None:
            checkpoint.save_checkpoint(run_dir / CHECKPOINT, model, optimizer, epoch + 1, spec)
            with open(run_dir / METRICS, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        if on_epoch is not None:
            on_epoch(record)
    bar.close()
    return history


def truncate_metrics(path: Path, epochs: int) -> None:
    """Drop metric lines past the checkpoint (written after it, before a crash)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= epochs]
    if len(kept) != len(lines):
        checkpoint.atomic_write(path, lambda tmp: tmp.write_text("".join(k + "\n" for k in kept)))


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
