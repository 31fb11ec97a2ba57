"""Process-wide CPU settings, each measured against its absence inside one genreg training run.

    python benchmarks/cpu_levers.py flush-denormal|gc-off|one-thread [--epochs 13]
    python benchmarks/cpu_levers.py casts
    python benchmarks/cpu_levers.py matmuls

A lever run trains the ``bench_vae.py`` task (60,000 images, every ``train`` setting at its
default) and switches the setting on for odd epochs and off for even ones from the
``on_epoch_end`` callback, so both halves see the same minutes of this shared machine. The first
two epochs are warm-up; it prints each half's epochs and medians.

``casts`` times, inside a training loop of the same model under bf16 autocast, a cast of the two
large weights (313,600 values) to bf16 right after the optimiser step (the state the forward pass
finds them in), and the same cast again with the weight already in cache.

``matmuls`` gives the rate of the step's three large bf16 products (forward, weight gradient,
input gradient of a 784-400 layer at batch 128) through oneDNN and with oneDNN switched off, and
the fp32 forward product.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import genreg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_vae import BATCH, GENREG_SPEC, LR, SEED, load_data  # noqa: E402

LEVERS: dict[str, Callable[[bool], None]] = {
    "flush-denormal": lambda on: torch.set_flush_denormal(on),
    "gc-off": lambda on: gc.disable() if on else gc.enable(),
    "one-thread": lambda on: torch.set_num_threads(1 if on else 2),
}


def lever_run(name: str, epochs: int) -> None:
    """Train with ``name`` on in odd epochs and off in even ones; print both halves' seconds per epoch."""
    torch.manual_seed(SEED)
    data = load_data()
    model = genreg.build_model(GENREG_SPEC, data.info)
    config = genreg.TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, device="cpu")
    seconds: dict[bool, list[float]] = {True: [], False: []}
    state: dict = {}

    def on_epoch(record: dict) -> None:
        now = time.perf_counter()
        if record["epoch"] > 1:
            seconds[state["on"]].append(now - state["began"])
        state["on"] = record["epoch"] % 2 == 1
        LEVERS[name](state["on"])
        state["began"] = time.perf_counter()

    genreg.train(model, data, config, seed=SEED, progress=False, callbacks=[genreg.EveryEpoch(on_epoch)])
    for on in (True, False):
        epochs_text = ", ".join(f"{s:.2f}" for s in seconds[on])
        print(f"{name} {'on ' if on else 'off'}: median {statistics.median(seconds[on]):.3f} s ({epochs_text})")


def casts(steps: int = 400) -> None:
    """Time the bf16 casts of the two large weights inside a training loop (medians over the steps)."""
    torch.manual_seed(SEED)
    data = load_data()
    images = data.train.images  # (60000, 1, 28, 28)
    model = genreg.build_model(GENREG_SPEC, data.info)
    large = [p for p in model.parameters() if p.numel() == 784 * 400]
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    timings: dict[str, list[int]] = {"first, after the optimiser step": [], "second weight": [], "again, in cache": []}
    for step in range(steps):
        x = images[step * BATCH : (step + 1) * BATCH]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            total = model.term_means(x, None).sum()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        marks = [time.perf_counter_ns()]
        for weight in (large[0], large[1], large[0]):
            weight.to(torch.bfloat16)
            marks.append(time.perf_counter_ns())
        for name, began, ended in zip(timings, marks, marks[1:], strict=False):
            timings[name].append(ended - began)
    for name, values in timings.items():
        print(f"cast of a (400, 784) weight to bf16, {name}: {statistics.median(values[50:]) / 1e3:.0f} us")


def matmuls(repeats: int = 400) -> None:
    """Print GFLOP/s of the step's large products in bf16 with oneDNN on and off, and in fp32."""
    x, weight, grad = torch.randn(BATCH, 784), torch.randn(784, 400), torch.randn(BATCH, 400)
    gflop = 2 * BATCH * 784 * 400 / 1e9
    products = {"forward": lambda a, w, g: a @ w, "weight gradient": lambda a, w, g: a.t() @ g}
    products["input gradient"] = lambda a, w, g: g @ w.t()
    for onednn in (True, False):
        torch.backends.mkldnn.enabled = onednn
        args = (x.bfloat16(), weight.bfloat16(), grad.bfloat16())
        rates = {name: gflop / seconds_per_call(lambda f=f, a=args: f(*a), repeats) for name, f in products.items()}
        print(f"bf16, oneDNN {'on ' if onednn else 'off'}: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    torch.backends.mkldnn.enabled = True
    print(f"fp32 forward: {gflop / seconds_per_call(lambda: x @ weight, repeats):.0f} GFLOP/s")


def seconds_per_call(call: Callable[[], object], repeats: int) -> float:
    for _ in range(20):
        call()
    began = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - began) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=[*LEVERS, "casts", "matmuls"])
    parser.add_argument("--epochs", type=int, default=13)
    args = parser.parse_args()
    if args.what == "casts":
        casts()
    elif args.what == "matmuls":
        matmuls()
    else:
        lever_run(args.what, args.epochs)


if __name__ == "__main__":
    main()
