"""genreg's seconds per epoch on CUDA for each fast-path setting (bench_vae.py's task).

    python benchmarks/gpu_modes.py [--epochs 4]

One process, settings one after another: eager, CUDA graph, graph + torch.compile, and each with
bf16. Prints the first epoch (capture and compilation included) and the median of the others.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import genreg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_vae import BATCH, GENREG_SPEC, LR, SEED, load_data  # noqa: E402

MODES = {
    "eager fp32": {"cuda_graph": False, "compile": False, "precision": "fp32"},
    "graph fp32": {"cuda_graph": True, "compile": False, "precision": "fp32"},
    "graph+compile fp32": {"cuda_graph": True, "compile": True, "precision": "fp32"},
    "eager bf16": {"cuda_graph": False, "compile": False, "precision": "bf16"},
    "graph bf16": {"cuda_graph": True, "compile": False, "precision": "bf16"},
    "graph+compile bf16": {"cuda_graph": True, "compile": True, "precision": "bf16"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--profile", action="store_true", help="print the CUDA kernels of each mode's last epoch")
    args = parser.parse_args()
    data = load_data()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {len(data.train):,} images, batch {BATCH}")
    for name in args.modes.split(","):
        torch.manual_seed(SEED)
        model = genreg.build_model(GENREG_SPEC, data.info)
        config = genreg.TrainConfig(epochs=args.epochs, batch_size=BATCH, lr=LR, device="cuda", **MODES[name])
        prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])

        def on_epoch(record: dict, prof=prof) -> None:
            if args.profile and record["epoch"] == args.epochs - 1:
                prof.__enter__()

        history = genreg.train(
            model, data, config, seed=SEED, progress=False, callbacks=[genreg.EveryEpoch(on_epoch)]
        ).history
        if args.profile:
            prof.__exit__(None, None, None)
            print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=25))
        first, *rest = [r["seconds"] for r in history]
        median = statistics.median(rest) * 1000
        timed = ", ".join(f"{s * 1000:.1f}" for s in rest)
        loss = history[-1]["test"]["loss"]
        print(f"{name:20s} first {first:7.3f} s  median {median:7.1f} ms/epoch ({timed})  loss {loss:.2f}", flush=True)


if __name__ == "__main__":
    main()
