"""Does genreg's cost grow linearly with the data? Seconds per epoch at 15k, 60k and 240k images.

    python benchmarks/bench_scaling.py [--epochs 3] [--out benchmarks/RESULTS.md]

Same task as ``bench_vae.py`` (PyTorch's classic MNIST VAE, batch 128) on the 4,000 bundled
training digits repeated to each size. Each size trains in one ``genreg.train`` call; the first
epoch is a warm-up and the median of the others is reported, with seconds per 10,000 images,
which is flat when the cost is linear (no per-epoch setup that dominates, nothing quadratic).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import torch

import genreg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_vae import GENREG_SPEC, machine  # noqa: E402

SIZES = (15_000, 60_000, 240_000)


def data_of_size(n: int) -> genreg.DataSplits:
    """The bundled training digits repeated (and cut) to ``n`` images; the bundled test split."""
    sample = genreg.load_data({"type": "mnist-sample"})
    repeats = -(-n // len(sample.train))
    images = sample.train.images.repeat(repeats, 1, 1, 1)[:n]
    labels = sample.train.labels.repeat(repeats)[:n]
    return genreg.DataSplits(genreg.Split(images, labels), sample.test, sample.num_classes)


def seconds_per_epoch(n: int, epochs: int) -> tuple[list[float], str]:
    """Each epoch's seconds at ``n`` images, and what the steps trained in (``train.precision`` auto)."""
    data = data_of_size(n)
    torch.manual_seed(0)
    model = genreg.build_model(GENREG_SPEC, data.info)
    config = genreg.TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, device="cpu")  # the rest: defaults
    result = genreg.train(model, data, config, progress=False)
    return [record["seconds"] for record in result.history], result.precision


def report(rows: dict[int, tuple[list[float], str]], epochs: int, command: str) -> str:
    info = machine("cpu")
    lines = [
        f"\n## Scaling: genreg seconds per epoch at 15k / 60k / 240k images ({datetime.date.today()})\n",
        f"- Machine: {info['cpu']}, {torch.get_num_threads()} threads, torch {torch.__version__}, CPU; every",
        f"  `train` setting at its default, which chose {', '.join(sorted({chosen for _, chosen in rows.values()}))}.",
        f"- Command: `{command}`; {epochs} epochs per size, first one a warm-up; each epoch includes its",
        "  test evaluation on the 1,000 bundled test digits (the same cost at every size).\n",
        "| images | s / epoch (median) | epochs (s) | s per 10,000 images |",
        "|---|---|---|---|",
    ]
    for n, (times, _) in rows.items():
        median = statistics.median(times[1:])
        listed = ", ".join(f"{t:.2f}" for t in times[1:])
        lines.append(f"| {n:,} | {median:.2f} | {listed} | {median / n * 10_000:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per size (>= 2; the first is a warm-up)")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"), help="append the results here ('' for none)")
    args = parser.parse_args(argv)
    rows = {n: seconds_per_epoch(n, args.epochs) for n in SIZES}
    text = report(rows, args.epochs, "python benchmarks/bench_scaling.py " + " ".join(argv or sys.argv[1:]))
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
