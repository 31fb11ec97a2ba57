"""genreg at two commits, trained in turns in one run: seconds per epoch of the speed benchmark's VAE.

    python benchmarks/compare_commits.py BEFORE [AFTER] [--rounds 4] [--epochs 3] [--out benchmarks/RESULTS.md]

Each commit is checked out (``git worktree``) in a temporary folder; the rounds alternate
BEFORE and AFTER (default: the working tree), each a fresh process that trains the VAE of
``bench_vae.py`` (784-400-(20,20) / 20-400-784, batch 128, the 4,000 bundled digits
repeated to 60,000) for ``--epochs`` epochs on the CPU. The first epoch of each process
is a warm-up and is left out; the table gives the median and the minimum of the others.
Alternating in one run is what makes a shared, noisy machine's numbers comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = """
import json, sys
import torch
import genreg

spec = {"type": "vae", "latent_dim": 20, "encoder": {"type": "mlp", "hidden": [400]},
        "decoder": {"type": "mlp", "hidden": [400]}}
data = genreg.load_data({"type": "mnist-sample"})
train = genreg.Split(data.train.images.repeat(15, 1, 1, 1), data.train.labels.repeat(15))
data = genreg.DataSplits(train, data.test, data.num_classes, data.binarize)
torch.manual_seed(0)
model = genreg.build_model(spec, data.info)
config = genreg.TrainConfig(epochs=int(sys.argv[1]), batch_size=128, lr=1e-3, device="cpu")
out = genreg.train(model, data, config, seed=0, progress=False)
history = out if isinstance(out, list) else out.history  # before the new layout, train returned the list
print(json.dumps([record["seconds"] for record in history]))
"""


def epoch_seconds(checkout: Path, epochs: int) -> list[float]:
    """One process training at ``checkout``: each epoch's seconds, warm-up left out."""
    env = {**os.environ, "PYTHONPATH": f"{checkout}{os.pathsep}{checkout / 'plugins'}"}
    out = subprocess.run(
        [sys.executable, "-c", TRAIN, str(epochs)], env=env, check=True, capture_output=True, text=True, cwd=checkout
    )
    return json.loads(out.stdout.strip().splitlines()[-1])[1:]


def machine() -> str:
    """``2 CPUs (AMD EPYC ...), torch 2.14.1``: what the numbers were measured on."""
    import torch

    model = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if "model name" in line
            ),
            "unknown CPU",
        )
        if Path("/proc/cpuinfo").exists()
        else "unknown CPU"
    )
    return f"{os.cpu_count()} CPUs ({model}), torch {torch.__version__}, CPU training"


def worktree(rev: str, folder: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(folder), rev], check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", help="a commit; default: the working tree")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"), help="'' for none")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkouts = {args.before: worktree(args.before, Path(tmp) / "before")}
        checkouts[args.after or "working tree"] = worktree(args.after, Path(tmp) / "after") if args.after else REPO
        try:
            seconds: dict[str, list[float]] = {name: [] for name in checkouts}
            for _ in range(args.rounds):
                for name, checkout in checkouts.items():
                    seconds[name] += epoch_seconds(checkout, args.epochs)
        finally:
            for checkout in checkouts.values():
                if checkout != REPO:
                    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(checkout)], check=True)
    rows = [
        f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {len(values)} |"
        for name, values in seconds.items()
    ]
    table = "\n".join(["| genreg at | median s/epoch | min s/epoch | epochs timed |", "|---|---|---|---|", *rows])
    print(table)
    if args.out:
        command = " ".join(["python", "benchmarks/compare_commits.py", *sys.argv[1:]])
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
        with open(args.out, "a") as fh:
            fh.write(f"\n## Two commits side by side: `{command}` ({stamp})\n\n- Machine: {machine()}\n\n{table}\n")


if __name__ == "__main__":
    main()
