"""Where one genreg epoch of the ``bench_vae.py`` task spends its time (torch.profiler, CPU).

    python benchmarks/profile_genreg.py [--rows 25] [--precision auto|fp32|bf16]

Trains one warm-up epoch, then profiles the second (a separate ``genreg.train`` call with
``epochs=2``, profiling started from the ``on_epoch_end`` callback) and prints the operators
sorted by self CPU time, plus the share of the epoch spent in matmuls.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import genreg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_vae import BATCH, GENREG_SPEC, LR, SEED, load_data  # noqa: E402

MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="train.precision")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    data = load_data()
    model = genreg.build_model(GENREG_SPEC, data.info)
    config = genreg.TrainConfig(epochs=2, batch_size=BATCH, lr=LR, device="cpu", precision=args.precision)
    prof = profile(activities=[ProfilerActivity.CPU])
    marks = {}

    def on_epoch(record: dict) -> None:
        if record["epoch"] == 1:
            prof.__enter__()
            marks["began"] = time.perf_counter()
        else:
            marks["seconds"] = time.perf_counter() - marks["began"]
            prof.__exit__(None, None, None)

    genreg.train(model, data, config, seed=SEED, progress=False, callbacks=[genreg.EveryEpoch(on_epoch)])
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    total = sum(e.self_cpu_time_total for e in averages)
    matmul = sum(e.self_cpu_time_total for e in averages if e.key in MATMUL_OPS)
    print(f"profiled epoch: {marks['seconds']:.2f} s wall (with profiler overhead)")
    print(f"self CPU time in mm/addmm/bmm: {matmul / 1e6:.2f} s of {total / 1e6:.2f} s ({matmul / total:.0%})")


if __name__ == "__main__":
    main()
