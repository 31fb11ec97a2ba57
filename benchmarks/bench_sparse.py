"""Memory of a sparse count matrix (issue 19): `genreg run` on a 200,000 x 2,000 .h5ad with 5% non-zeros.

    python benchmarks/bench_sparse.py [--cells 200000] [--genes 2000] [--density 0.05] [--epochs 1] [--out FILE]

The data: counts (integers 1..20 at ``density`` of the positions, every cell with at least one count), 3 batches
and 8 cell types in ``.obs``, written once as an ``.h5ad`` with ``X`` in CSR (about 160 MB held as CSR: float32
values and int32 column indices; 1.6 GB as a dense float32 matrix). The task: ``genreg run`` of a cVAE conditioned
on the batch (one-hot), encoder reading log1p(counts), MLP 2,000-128-10 and 10-128-2,000, negative-binomial
likelihood + KLD, batch 128, ``epochs`` epochs, pictures included, exactly as a user runs it, in its own process.

Three runs, one after the other: the dataset's default (``sparse: auto``, which keeps this matrix sparse in
memory), ``sparse: dense`` (the matrix made dense on loading) and ``sparse: backed`` (read from disk as batches
need it, anndata's backed mode: what ``auto`` does when even the sparse matrix does not fit). For each: the
process's peak resident set size (``VmHWM`` read at exit, so no parent's memory is counted), its wall time, and the
test -ELBO of the last epoch. Target: peak RSS under 1.5 GB with the matrix kept sparse.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Run in a child: genreg's CLI, then its peak resident set size (VmHWM, MB) printed at exit.
CHILD = """
import atexit, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            print("PEAK_MB", int(line.split()[1]) / 1024, flush=True)
atexit.register(peak)
from genreg.cli import main
sys.argv = ["genreg", *sys.argv[1:]]
main()
"""

WRITER = """
import sys
import anndata, numpy as np, pandas as pd
from scipy import sparse
cells, genes, density, path = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(0)
nnz_per_row = rng.binomial(genes, density, cells).clip(1)
indptr = np.concatenate([[0], np.cumsum(nnz_per_row)]).astype(np.int64)
indices = np.concatenate([np.sort(rng.choice(genes, k, replace=False)) for k in nnz_per_row]).astype(np.int32)
values = rng.integers(1, 21, len(indices)).astype(np.float32)
matrix = sparse.csr_matrix((values, indices, indptr), shape=(cells, genes))
obs = pd.DataFrame({
    "cell_type": pd.Categorical([f"type {k}" for k in rng.integers(0, 8, cells)]),
    "batch": pd.Categorical([f"batch {k}" for k in rng.integers(0, 3, cells)]),
}, index=[f"cell{i}" for i in range(cells)])
anndata.AnnData(matrix, obs=obs, var=pd.DataFrame(index=[f"gene{j}" for j in range(genes)])).write_h5ad(path)
print(matrix.nnz)
"""


def spec(path: str, epochs: int, sparse: str) -> dict:
    """The benchmark's run: a cVAE of counts conditioned on the batch, the matrix kept or made dense."""
    return {
        "name": f"sparse-{sparse}",
        "model": {
            "type": "cvae",
            "latent_dim": 10,
            "encoder": {"type": "mlp", "hidden": [128], "input": "log1p"},
            "decoder": {"type": "mlp", "hidden": [128]},
            "losses": [{"type": "negative-binomial"}, {"type": "kld"}],
            "conditioner": {"type": "onehot", "column": "batch"},
        },
        "data": {"type": "anndata", "path": path, "label": "cell_type", "columns": ["batch"], "sparse": sparse},
        "train": {"epochs": epochs, "batch_size": 128},
    }


def run(folder: Path, data: str, epochs: int, sparse: str) -> dict:
    """``genreg run`` of :func:`spec` in its own process: its peak RSS (MB), wall time (s) and last test -ELBO."""
    spec_path = folder / f"{sparse}.json"
    spec_path.write_text(json.dumps(spec(data, epochs, sparse)))
    out = folder / f"run-{sparse}"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "run", str(spec_path), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"genreg run failed ({sparse}):\n{done.stdout}\n{done.stderr}")
    peak = next(float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK_MB"))
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {"peak_mb": peak, "wall_s": wall, "neg_elbo": last["test"]["neg_elbo"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default="", help="append the results table to this file ('' for none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = str(folder / "cells.h5ad")
        written = subprocess.run(
            [sys.executable, "-c", WRITER, str(args.cells), str(args.genes), str(args.density), data],
            capture_output=True,
            text=True,
            check=True,
        )
        nnz = int(written.stdout.split()[-1])
        results = {sparse: run(folder, data, args.epochs, sparse) for sparse in ("auto", "dense", "backed")}
    dense_mb = args.cells * args.genes * 4 / 2**20
    csr_mb = (nnz * 8 + (args.cells + 1) * 8) / 2**20
    lines = [
        f"### Sparse counts: {args.cells:,} x {args.genes:,}, {nnz / (args.cells * args.genes):.1%} non-zero "
        f"({datetime.date.today()})",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"`python benchmarks/bench_sparse.py --cells {args.cells} --genes {args.genes} --density {args.density} "
        f"--epochs {args.epochs}`. The matrix: {csr_mb:.0f} MB as CSR, {dense_mb:.0f} MB dense (float32).",
        "",
        "| `data.sparse` | peak RSS (MB) | wall (s) | test -ELBO (nats/vector) |",
        "|---|---|---|---|",
        *(f"| {name} | {r['peak_mb']:.0f} | {r['wall_s']:.1f} | {r['neg_elbo']:.2f} |" for name, r in results.items()),
        "",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write(table + "\n")


if __name__ == "__main__":
    main()
