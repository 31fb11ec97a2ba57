"""Single-cell counts (issue 19): genreg's count cVAE side by side with scvi-tools' SCVI on the same cells.

    python benchmarks/bench_scvi.py [--cells 100000] [--genes 2000] [--epochs 5] [--data DIR] [--out FILE]

The cells: ``simulated-counts``' process (:func:`genreg_builtin.simulation.simulate_counts`, Splatter's model:
8 cell types, 3 batches whose factors shift every gene, ~5% of the counts non-zero), written once as two ``.h5ad``
files, ``train.h5ad`` and ``test.h5ad`` (a stratified 20% of each cell type held out; ``X`` CSR float32 counts,
``.obs`` ``cell_type`` and ``batch`` categoricals). ``--data DIR`` keeps them there and reuses them when the
settings match; otherwise they go to a temporary folder. Both trainers read those files.

The task, scVI's defaults mirrored in genreg:

- ``scvi``: ``scvi.model.SCVI(n_hidden=128, n_latent=10, n_layers=1, gene_likelihood="nb")`` on ``train.h5ad``
  set up with ``batch_key="batch"``, every other setting at SCVI's default (dropout 0.1, batch norm in encoder and
  decoder, log(1 + x) encoder input, one inverse dispersion per gene, the observed library size, the batch given
  to the decoder only: ``encode_covariates=False``; Adam lr 1e-3, eps 0.01, weight decay 1e-6, the KL weight
  warmed up linearly over 400 epochs, ``n_epochs_kl_warmup``), trained by ``model.train(max_epochs=E,
  batch_size=128, train_size=1.0, accelerator="cpu")`` (all of ``train.h5ad``, no validation set).
- ``genreg``: the ``cvae`` of the same layers through genreg's Python API: the ``anndata`` dataset on the same
  two files (label ``cell_type``, column ``batch``; ``sparse: auto`` keeps the counts sparse, ``--genreg-sparse
  dense`` makes them dense), ``mlp`` encoder [128] reading log(1 + x) with batch norm and
  dropout 0.1, ``mlp`` decoder [128] with batch norm, latent 10, ``negative-binomial`` + ``kld`` with a
  ``linear`` 400-epoch warm-up, a one-hot ``batch`` conditioner fed to the decoder only
  (``condition_encoder: false``, as SCVI; ``--encode-batch`` feeds it to both encoders), Adam lr 1e-3, weight
  decay 1e-6, batch 128, every other ``train`` setting at its default (``precision: auto``: bf16 autocast on a
  CPU with bf16 instructions). ``genreg-fp32`` is the same with ``precision: fp32``, as SCVI trains.
  What is not mirrored: Adam's eps (genreg: torch's 1e-8; SCVI 0.01), batch norm's eps and momentum (genreg:
  torch's 1e-5 and 0.1; SCVI 1e-3 and 0.01), and SCVI's decoder also computes a dropout head it does not use
  with ``nb`` (one more 128 x genes product per step).

How: each trainer in its own spawned process, set up one at a time; then they take turns epoch by epoch (only one
computes at a time, the order rotating), the parent timing each epoch from its 'go' to the epoch's end hook (SCVI:
Lightning's ``on_train_epoch_start`` / ``on_train_epoch_end``; genreg: a callback's ``on_epoch_start`` /
``on_epoch_end``). Only training is timed: SCVI has no validation set, and genreg, which measures its test split
after every epoch, is given the first 128 test cells as that split during training (the full test split is
measured after). The first epoch is a warm-up; seconds per epoch is the median of the others (``--epochs`` >= 2).

Memory: each process's peak resident set size (``VmHWM``: ``ru_maxrss`` of a spawned process starts at its
parent's peak, see ``bench_table.py``), and its base, the peak after its imports (and a throwaway Adam step).

Quality, on the same held-out cells after training, one draw of z per cell, fp32, nats per cell:
``-ELBO`` = E_cells[-log p(x|z) + KL(q(z|x) || N(0, I))], and the reconstruction NLL, its first term (the negative
binomial's exact log-pmf, summed over genes; KL weight 1, whatever the warm-up reached). SCVI: ``-model.get_elbo(
adata=test)`` (``get_elbo`` returns the ELBO, mean over cells of -(reconstruction_loss + kl_local); a negative
number) and ``model.get_reconstruction_error(adata=test)["reconstruction_loss"]`` (mean over cells of -log
p(x|z); positive, whatever its docstring's "higher is better" says); genreg: ``average_losses`` on the test split
(``neg_elbo`` and the ``negative-binomial`` term). The latent: each test cell's posterior mean (SCVI's
``get_latent_representation``; genreg's ``posterior``), scored by ``genreg.evaluation.mixing.neighbourhood_scores``
(k = 15): k-NN accuracy of the cell type (high: the types stay apart) and of the batch (near chance: the batches
mix), and the batch-mixing entropy against what perfectly mixed neighbourhoods would show.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_table import code_state, maxrss_mb, peak_mb, take_turns, vm  # noqa: E402
from bench_vae import Gate, publish  # noqa: E402

CELLS, GENES, CELL_TYPES, BATCHES, DENSITY = 100_000, 2_000, 8, 3, 0.05  # the cells
BATCH, LR, HIDDEN, LATENT, SEED = 128, 1e-3, 128, 10, 0  # scVI's defaults (its batch size and lr too)
KL_WARMUP = 400  # SCVI's TrainingPlan n_epochs_kl_warmup
WEIGHT_DECAY = 1e-6  # SCVI's TrainingPlan weight_decay
TEST_FRACTION = 0.2
MONITOR = 128  # test cells genreg measures after each epoch while training (it always measures some)
K = 15  # neighbours of the latent scores
TRAINERS = ("scvi", "genreg", "genreg-fp32")
MB = 1e6


# ---------------------------------------------------------------- the cells


def simulation_settings(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``simulate_counts`` (the rest at their defaults) and the split, as recorded."""
    return {
        "cells": args.cells,
        "genes": args.genes,
        "cell_types": args.cell_types,
        "batches": args.batches,
        "density": args.density,
        "seed": SEED,
        "test_fraction": TEST_FRACTION,
    }


def stratified_test(cell_type: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of the held-out cells: ``fraction`` of each cell type (at least one left to train on)."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(cell_type), dtype=bool)
    for kind in np.unique(cell_type):
        members = rng.permutation(np.flatnonzero(cell_type == kind))
        test[members[: min(round(len(members) * fraction), len(members) - 1)]] = True
    return test


def write_cells(folder: Path, settings: dict) -> dict:
    """Simulate the cells and write ``train.h5ad`` and ``test.h5ad`` to ``folder`` (with ``simulation.json``
    recording ``settings``), unless the folder already holds them for the same settings; returns what was done."""
    from genreg_builtin import simulation

    record = folder / "simulation.json"
    paths = [folder / "train.h5ad", folder / "test.h5ad"]
    if record.is_file() and all(path.is_file() for path in paths):
        written = json.loads(record.read_text())
        if written.get("settings") == settings:
            return {**written, "reused": True}
    began = time.perf_counter()
    kwargs = {key: value for key, value in settings.items() if key != "test_fraction"}
    counts, cell_type, batch = simulation.simulate_counts(**kwargs)
    simulated = time.perf_counter() - began
    test = stratified_test(cell_type, settings["test_fraction"], settings["seed"])
    names = np.array([f"cell_{i:06d}" for i in range(len(cell_type))])
    for path, rows in zip(paths, (np.flatnonzero(~test), np.flatnonzero(test)), strict=True):
        adata = simulation.to_anndata(counts[rows], cell_type[rows], batch[rows])
        adata.obs_names = names[rows]
        adata.write_h5ad(path)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    written = {
        "settings": settings,
        "train_cells": int((~test).sum()),
        "test_cells": int(test.sum()),
        "density": counts.nnz / (counts.shape[0] * counts.shape[1]),
        "median_library_size": float(np.median(totals)),
        "simulate_seconds": simulated,
        "write_seconds": time.perf_counter() - began - simulated,
        "megabytes": sum(path.stat().st_size for path in paths) / MB,
    }
    record.write_text(json.dumps(written, indent=1))
    return {**written, "reused": False}


# ---------------------------------------------------------------- the trainers


def neighbourhood_scores(z: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``genreg.evaluation.mixing.neighbourhood_scores`` with this benchmark's k and seed."""
    from genreg.evaluation.mixing import neighbourhood_scores as scores

    return scores(z, labels, k=K, seed=SEED, max_cells=20_000)


def genreg_spec(data_dir: Path, encode_batch: bool, sparse: str) -> tuple[dict, dict]:
    """The dataset and model specs of the genreg trainer (see the module docstring); ``sparse`` is the ``anndata``
    dataset's setting of that name (``auto``: the counts kept sparse, batches made dense as they are gathered)."""
    data = {
        "type": "anndata",
        "path": str(data_dir / "train.h5ad"),
        "test_path": str(data_dir / "test.h5ad"),
        "label": "cell_type",
        "columns": ["batch"],
        "sparse": sparse,
    }
    model = {
        "type": "cvae",
        "latent_dim": LATENT,
        "encoder": {"type": "mlp", "hidden": [HIDDEN], "input": "log1p", "norm": "batch", "dropout": 0.1},
        "decoder": {"type": "mlp", "hidden": [HIDDEN], "norm": "batch"},
        "losses": [{"type": "negative-binomial"}, {"type": "kld", "schedule": {"type": "linear", "epochs": KL_WARMUP}}],
        "conditioner": {"type": "onehot", "column": "batch"},
        "condition_encoder": encode_batch,
    }
    return data, model


class EpochGate(Gate):
    """``bench_vae``'s gate, remembering when the first 'go' came: the end of the trainer's setup."""

    def wait(self) -> None:
        if not self.ready:
            self.setup_done = time.perf_counter()
        super().wait()


def lazy_imports() -> float:
    """A throwaway Adam step (its lazy imports are large), then this process's peak so far: its base, in MB."""
    torch.optim.Adam(torch.nn.Linear(1, 1).parameters()).step()
    return peak_mb()


def run_genreg(
    gate: EpochGate, conn, data_dir: Path, epochs: int, precision: str, encode_batch: bool, sparse: str
) -> dict:
    import genreg
    from genreg.evaluation.metrics import posterior
    from genreg.training.loop import average_losses
    from genreg.training.runner import check_data

    base = lazy_imports()
    began = time.perf_counter()
    data_spec, model_spec = genreg_spec(data_dir, encode_batch, sparse)
    data = genreg.load_data(data_spec)
    torch.manual_seed(SEED)
    model = genreg.build_model(model_spec, data.info)
    check_data(model, data)  # the counts' checks, and the median library size decoding uses
    watched = dataclasses.replace(data, test=data.test.take(slice(0, MONITOR)))
    config = genreg.TrainConfig(
        epochs=epochs, batch_size=BATCH, lr=LR, weight_decay=WEIGHT_DECAY, device="cpu", precision=precision
    )

    class Gated:
        def on_epoch_start(self, run) -> None:
            gate.wait()

        def on_epoch_end(self, run) -> None:
            gate.report(math.nan, genreg_seconds=run.record["seconds"])

    result = genreg.train(model, watched, config, seed=SEED, progress=False, callbacks=[Gated()])
    peak = peak_mb()
    assert conn.recv() == "eval"
    torch.manual_seed(SEED)
    losses = average_losses(model, data.test, config.model_copy(update={"precision": "fp32"}))
    mu = posterior(model, data.test).mu
    return {
        "base": base,
        "setup_seconds": gate.setup_done - began,
        "peak": peak,
        "trained_in": result.precision,
        "train_cells": len(data.train),
        "neg_elbo": losses["neg_elbo"],
        "reconstruction": losses["negative-binomial"],
        "mu": mu.numpy(),
        "cell_type": data.test.labels.numpy(),
        "batch": data.test.columns["batch"].numpy(),
    }


def run_scvi(gate: EpochGate, conn, data_dir: Path, epochs: int, encode_batch: bool) -> dict:
    import anndata
    import scvi
    from lightning.pytorch.callbacks import Callback

    base = lazy_imports()
    began = time.perf_counter()
    scvi.settings.seed = SEED
    train = anndata.read_h5ad(data_dir / "train.h5ad")
    scvi.model.SCVI.setup_anndata(train, batch_key="batch")
    model = scvi.model.SCVI(
        train,
        n_hidden=HIDDEN,
        n_latent=LATENT,
        n_layers=1,
        gene_likelihood="nb",
        encode_covariates=encode_batch,
    )

    class Gated(Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            gate.wait()

        def on_train_epoch_end(self, trainer, module) -> None:
            gate.report(math.nan)

    model.train(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        train_size=1.0,
        batch_size=BATCH,
        plan_kwargs={"lr": LR},
        callbacks=[Gated()],
        enable_progress_bar=False,
    )
    peak = peak_mb()
    assert conn.recv() == "eval"
    test = anndata.read_h5ad(data_dir / "test.h5ad")
    model.module.eval()
    # scvi-tools 1.4: get_elbo returns the ELBO, -mean(reconstruction_loss + kl_local) (model/base/_vaemixin.py,
    # `return -compute_elbo(...)`), <= 0 for counts; get_reconstruction_error the mean of reconstruction_loss,
    # -log p(x|z) summed over genes (module/_vae.py), >= 0. Counts make the sign certain, so the magnitudes are
    # taken: the same numbers under a version that returned the other sign.
    torch.manual_seed(SEED)
    neg_elbo = abs(float(model.get_elbo(adata=test, batch_size=1000)))
    torch.manual_seed(SEED)
    reconstruction = abs(float(model.get_reconstruction_error(adata=test, batch_size=1000)["reconstruction_loss"]))
    mu = model.get_latent_representation(test, batch_size=1000)  # posterior means (give_mean=True)
    return {
        "base": base,
        "setup_seconds": gate.setup_done - began,
        "peak": peak,
        "trained_in": "fp32",
        "train_cells": train.n_obs,
        "neg_elbo": neg_elbo,
        "reconstruction": reconstruction,
        "mu": np.asarray(mu, dtype=np.float32),
        "cell_type": test.obs["cell_type"].cat.codes.to_numpy().astype(np.int64),
        "batch": test.obs["batch"].cat.codes.to_numpy().astype(np.int64),
    }


def worker(name: str, conn, data_dir: str, epochs: int, tmp: str, encode_batch: bool, sparse: str) -> None:
    log = open(Path(tmp) / f"{name}.log", "w")  # noqa: SIM115 - the process's stdout/stderr from here on
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    warnings.simplefilter("ignore")  # a KL warm-up longer than the run, condition_encoder false, Lightning's notes
    try:
        torch.manual_seed(SEED)
        gate = EpochGate(conn)
        if name == "scvi":
            result = run_scvi(gate, conn, Path(data_dir), epochs, encode_batch)
        else:
            precision = "fp32" if name == "genreg-fp32" else "auto"
            result = run_genreg(gate, conn, Path(data_dir), epochs, precision, encode_batch, sparse)
        conn.send(("done", {**result, "ru_maxrss": maxrss_mb(), "rss_end": vm("VmRSS")}))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


def run_interleaved(
    trainers: list[str], data_dir: Path, epochs: int, tmp: str, encode_batch: bool, sparse: str
) -> tuple[dict[str, dict], dict]:
    """Each trainer in its own process, set up one at a time, then one epoch each in turn (the order rotating),
    then measured on the test cells one at a time (``bench_table.take_turns``); returns their results and the
    contention during the epochs."""
    context = mp.get_context("spawn")

    def start(name: str, child_end: Any) -> Any:
        args = (name, child_end, str(data_dir), epochs, tmp, encode_batch, sparse)
        proc = context.Process(target=worker, args=args, name=f"bench-{name}", daemon=True)
        proc.start()
        return proc

    return take_turns(trainers, start, epochs, tmp, final="eval")


# ---------------------------------------------------------------- the report


def scores_of(result: dict) -> dict[str, dict[str, float]]:
    z = torch.from_numpy(result["mu"])
    return {
        "cell_type": neighbourhood_scores(z, torch.from_numpy(result["cell_type"])),
        "batch": neighbourhood_scores(z, torch.from_numpy(result["batch"])),
    }


def trainer_table(results: dict) -> str:
    columns = [
        "trainer",
        "trained in",
        "s / epoch (median)",
        "timed epochs (s)",
        "cells / s",
        "setup (s)",
        "base RSS (MB)",
        "peak RSS (MB)",
        "test -ELBO",
        "test reconstruction NLL",
        f"k-NN cell type (k={K})",
        f"k-NN batch (k={K})",
        "batch-mixing entropy",
    ]
    rows = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for name, result in results.items():
        timed = [e["seconds"] for e in result["epochs"][1:]]
        seconds = statistics.median(timed)
        scores = result["scores"]
        kind, batch = scores["cell_type"], scores["batch"]
        rows.append(
            f"| {name} | {result['trained_in'].split(' (')[0]} | {seconds:.2f} "
            f"| {', '.join(f'{t:.2f}' for t in timed)} "
            f"| {result['train_cells'] / seconds:,.0f} | {result['setup_seconds']:.2f} | {result['base']:.0f} "
            f"| {result['peak']:.0f} | {result['neg_elbo']:.2f} | {result['reconstruction']:.2f} "
            f"| {kind['knn_accuracy']:.3f} (chance {kind['chance']:.3f}) "
            f"| {batch['knn_accuracy']:.3f} (chance {batch['chance']:.3f}) "
            f"| {batch['mixing_entropy']:.3f} (mixed: {batch['mixing_entropy_expected']:.3f}) |"
        )
    return "\n".join(rows)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("scvi-tools", "lightning", "anndata", "torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    found = versions()
    return (
        f"{os.cpu_count()} CPU cores ({model}), no GPU used; torch {found['torch']} with {torch.get_num_threads()} "
        f"threads (the default), scvi-tools {found['scvi-tools']} (lightning {found['lightning']}), anndata "
        f"{found['anndata']}, Python {platform.python_version()}; genreg at {code_state()}"
    )


def report(args, cells: dict, results: dict, contention: tuple, command: str, wall: float, label: str) -> str:
    """The section for RESULTS.md: one line per bullet (markdown joins nothing, so nothing breaks mid-number)."""
    warmup = min(args.epochs, KL_WARMUP) / KL_WARMUP
    if args.encode_batch:
        encoders = "the batch one-hot to both encoders and the decoder (SCVI `encode_covariates=True`, genreg "
        encoders += "`condition_encoder: true`)"
    else:
        encoders = "the batch one-hot to the decoder only (SCVI's default `encode_covariates=False`, genreg "
        encoders += "`condition_encoder: false`)"
    maxrss = ", ".join(f"{name} {result['ru_maxrss']:.0f} MB" for name, result in results.items())
    reused = " (reused from --data)" if cells["reused"] else ""
    bullets = [
        f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"Machine: {machine()}",
        f"Command: `{command}` (wall clock {wall / 60:.1f} min); load average before / after: {contention[0]:.2f} / "
        f"{contention[1]:.2f}; during the epochs, the share of the machine's CPU time used by other processes: "
        f"**{contention[3]:.1%}**, stolen by the hypervisor: {contention[2]:.1%}",
        f"Cells: `simulate_counts` ({args.cells:,} cells x {args.genes:,} genes, {args.cell_types} cell types, "
        f"{args.batches} batches, seed {SEED}): {cells['density']:.2%} of the counts non-zero, median library size "
        f"{cells['median_library_size']:.0f}; {cells['train_cells']:,} cells train, {cells['test_cells']:,} (20% of "
        f"each type) are the test cells; `train.h5ad` + `test.h5ad`, {cells['megabytes']:.0f} MB{reused}.",
        f"Task: latent 10, one hidden layer of 128 in encoder and decoder (batch norm; dropout 0.1 in the encoder), "
        f"log(1 + x) into the encoder, negative binomial with one inverse dispersion per gene and the observed "
        f"library size, {encoders}; Adam lr 1e-3, weight decay 1e-6, batch 128, the KL weight warmed up linearly "
        f"over 400 epochs (after {args.epochs} epochs: {warmup:.4f}). SCVI at its defaults otherwise (Adam eps 0.01 "
        "where genreg's is torch's 1e-8; batch norm eps 1e-3 and momentum 0.01 where genreg's are torch's 1e-5 and "
        "0.1). genreg through its Python API (`anndata` dataset with "
        f"`sparse: {args.genreg_sparse}`, `cvae`, `genreg.train`): `genreg` at `precision: auto`, `genreg-fp32` "
        "at fp32.",
        f"How: each trainer in its own spawned process, taking turns epoch by epoch; {args.epochs} epochs each, the "
        f"first a warm-up, the time the median of the other {args.epochs - 1}: training only (SCVI has no "
        'validation set; genreg\'s per-epoch test measurement is on 128 cells). "setup" is reading the file and '
        "building the model and trainer. Memory: the process's peak resident set size (`VmHWM`), and its base, its "
        "peak after the imports; `ru_maxrss`, which a spawned process inherits from its parent, reads "
        f"{maxrss}.",
        f"Quality on the {cells['test_cells']:,} test cells, nats per cell, one draw of z per cell, fp32, KL weight "
        "1: -ELBO = reconstruction NLL + KL(q(z|x) || N(0, I)); SCVI `-get_elbo(adata=test)` and "
        "`get_reconstruction_error(adata=test)`, genreg `average_losses` (`neg_elbo`, `negative-binomial`). The "
        "latent: the test cells' posterior means, scored by `genreg.evaluation.mixing.neighbourhood_scores` "
        f"(k = {K}): k-NN accuracy (5-fold) of the cell type and of the batch, and the batch-mixing entropy "
        '(normalised; "mixed" is its value for perfectly mixed neighbourhoods).',
    ]
    title = f"## Single-cell counts (issue 19): `benchmarks/bench_scvi.py`, genreg against scvi-tools' SCVI{label}"
    lines = "\n".join(f"- {bullet}" for bullet in bullets)
    return f"\n{title}\n\n{lines}\n\n{trainer_table(results)}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=CELLS, help="cells (default: the issue's 100,000)")
    parser.add_argument("--genes", type=int, default=GENES, help="genes (default: the issue's 2,000)")
    parser.add_argument("--cell-types", type=int, default=CELL_TYPES, help="cell types (default 8)")
    parser.add_argument("--batches", type=int, default=BATCHES, help="batches (default 3)")
    parser.add_argument("--density", type=float, default=DENSITY, help="share of non-zero counts (default 0.05)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trainer, the first a warm-up (>= 2)")
    parser.add_argument("--encode-batch", action="store_true", help="give the batch to the encoders too")
    parser.add_argument(
        "--genreg-sparse",
        choices=["auto", "keep", "dense"],
        default="auto",
        help="the anndata dataset's `sparse` for genreg (default auto: the counts stay sparse)",
    )
    parser.add_argument("--data", default="", help="where to write (or find) the .h5ad files; default: a temp folder")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"), help="append the results here ('' for none)")
    parser.add_argument("--label", default="", help="words added to the section's title (e.g. ', a small run')")
    parser.add_argument("--trainers", default=",".join(TRAINERS), help="comma-separated subset of the default trainers")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (one warm-up, one timed)")
    trainers = [t for t in args.trainers.split(",") if t]
    if not trainers or set(trainers) - set(TRAINERS):
        parser.error(f"--trainers: a comma-separated subset of {', '.join(TRAINERS)}")
    command = "python benchmarks/bench_scvi.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_scvi_") as tmp:
        folder = Path(args.data) if args.data else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"cells: {args.cells:,} x {args.genes:,} in {folder}", flush=True)
        cells = write_cells(folder, simulation_settings(args))
        print(json.dumps({k: v for k, v in cells.items() if k != "settings"}), flush=True)
        results, during = run_interleaved(trainers, folder, args.epochs, tmp, args.encode_batch, args.genreg_sparse)
    for result in results.values():
        result["scores"] = scores_of(result)
    contention = (load_before, os.getloadavg()[0], during.get("steal", math.nan), during.get("others", math.nan))
    text = report(args, cells, results, contention, command.strip(), time.perf_counter() - began, args.label)
    publish(text, args.out)


if __name__ == "__main__":
    main()
