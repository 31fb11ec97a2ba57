"""Speed and memory on a table (issue 18): genreg against a plain DataLoader loop, 100,000 rows x 1,000 features.

    python benchmarks/bench_table.py [--rows 100000] [--features 1000] [--epochs 6] [--data PATH] [--out FILE]

The table: real-valued features of standardised scale (each feature mean 0, standard deviation 1), made from an
8-D latent point around one of 4 class centres, mapped through a fixed random tanh layer to the features, plus
Gaussian noise; written as an uncompressed ``.npz`` with ``x`` (N, F) float32 and ``labels`` (N,) int64 (the
arrays genreg's ``npz`` dataset reads as vectors). ``--data PATH`` keeps it there (and reuses it if it is
already there, of the asked size); otherwise it goes to a temporary folder.

The task: VAE, encoder F-512-(32, 32), decoder 32-512-F, ReLU, Gaussian likelihood (sigma 1, every constant) +
KLD, Adam lr 1e-3, batch 128, 80% of the rows for training and 20% held out, seed 0. Trainers:

- ``genreg``: the path of ``genreg run`` on a spec (dataset ``npz``, model ``vae`` with ``mlp`` parts,
  losses ``gaussian`` + ``kld``, every other setting at its default): ``validate_spec``, the runner's
  ``prepare`` (load the data, build the model, the loss terms' data checks), then ``genreg.train`` into a
  run folder (metrics and a checkpoint every epoch); only the model file and pictures at the end are left out.
- ``genreg-fp32``: the same with ``train.precision: fp32`` (the default, ``auto``, trains in bf16 on a CPU with
  bf16 instructions).
- ``plain``: ``np.load``, a seeded random 80/20 split, TensorDataset + DataLoader(shuffle=True), an nn.Module of
  the same layers, Gaussian NLL summed (0.5 (x - mean)^2 + 0.5 log 2 pi per feature) + KLD, Adam, the
  standard step.

As in ``bench_vae.py``, each trainer runs in its own spawned process and the parent lets them run one epoch
each in turn (the order rotating), so only one computes at a time. The first epoch is a warm-up; the time is
the median of the others, timed from the parent's 'go' to the end of the epoch, the test-set evaluation (20%
of the rows) included.

Memory: the peak resident set size of each process after training (``VmHWM``; not ``ru_maxrss``, which a
spawned process inherits from its parent), and its growth over the process's base, its peak after the imports
(and a throwaway Adam step, whose lazy imports are large), before any data is read. Before the
trainers start, a separate process runs genreg's path once more (one epoch) with a probe at each stage of
loading and training: resident memory before and after, and the peak during the stage (``VmHWM``, reset at
each stage through ``/proc/self/clear_refs``), so the table says which stage holds which copy of the data.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import math
import multiprocessing as mp
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib import format as npy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import genreg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_vae import Gate, cpu_times, machine, publish, steal_fraction  # noqa: E402

ROWS, FEATURES = 100_000, 1_000  # the table
CLASSES, TRUE_LATENT, SPREAD, NOISE = 4, 8, 64, 0.5  # the table's generator
BATCH, LR, HIDDEN, LATENT, SEED = 128, 1e-3, 512, 32, 0
TEST_FRACTION = 0.2  # genreg's npz default, and the plain loop's split
TRAINERS = ("genreg", "genreg-fp32", "plain")
MB = 1e6  # memory is reported in MB (10^6 bytes), the unit
WARM = 1  # warm-up epochs, left out of the medians


# ---------------------------------------------------------------- the table


def write_table(path: Path, rows: int, features: int, seed: int = SEED) -> None:
    """The synthetic table (see the module docstring) as an uncompressed ``.npz``, generated in chunks."""
    rng = np.random.default_rng(seed)
    labels = np.arange(rows, dtype=np.int64) % CLASSES
    centres = rng.normal(scale=2.0, size=(CLASSES, TRUE_LATENT))
    w1 = rng.normal(size=(TRUE_LATENT, SPREAD)) / math.sqrt(TRUE_LATENT)
    w2 = rng.normal(size=(SPREAD, features)) / math.sqrt(SPREAD)
    x = np.empty((rows, features), dtype=np.float32)
    sums, squares = np.zeros(features), np.zeros(features)
    chunk = 10_000
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        z = centres[labels[start:stop]] + rng.normal(size=(stop - start, TRUE_LATENT))
        block = np.tanh(z @ w1) @ w2 + NOISE * rng.normal(size=(stop - start, features))
        sums += block.sum(0)
        squares += (block**2).sum(0)
        x[start:stop] = block
    mean = sums / rows
    std = np.sqrt(np.maximum(squares / rows - mean**2, 1e-12))
    for start in range(0, rows, chunk):  # standardise every feature, in place
        x[start : start + chunk] -= mean.astype(np.float32)
        x[start : start + chunk] /= std.astype(np.float32)
    np.savez(path, x=x, labels=labels)


def table_shape(path: Path) -> tuple[int, ...] | None:
    """The shape of the ``x`` array of the ``.npz`` at ``path`` (from its header), or None if there is none."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("x.npy") as stream:
            version = npy.read_magic(stream)
            reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            return tuple(reader(stream)[0])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


# ---------------------------------------------------------------- memory


def vm(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process from /proc/self/status, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / MB
    return math.nan


def peak_mb() -> float:
    """``VmHWM``: the peak resident set size of this process's own memory so far, in MB.

    Not ``ru_maxrss``: a spawned process's ``ru_maxrss`` starts at its parent's peak (Linux carries it over the
    fork and the exec), so it would count the parent's copy of the table and its torch.
    """
    return vm("VmHWM")


def maxrss_mb() -> float:
    """``ru_maxrss`` in MB (Linux reports KiB), reported beside ``VmHWM`` to show what it inherits."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def reset_peak() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class Stages:
    """Probes wrapped around the functions of genreg's path: RSS before and after each, and its own peak.

    The peak of a stage is ``VmHWM`` after resetting it at the stage's start; a nested stage's reset first
    folds the peak so far into every enclosing stage, so each stage's peak covers its inner ones too.
    ``rows`` lists the stages in the order they began: (depth, label, rss before, peak, rss after), in MB.
    """

    def __init__(self) -> None:
        self.resets = reset_peak()
        self.stack: list[dict] = []
        self.rows: list[dict] = []
        self.missing: list[str] = []
        self.total = vm("VmHWM")  # the process's peak over all resets

    def fold(self) -> None:
        peak = vm("VmHWM")
        self.total = max(self.total, peak)
        for stage in self.stack:
            stage["peak"] = max(stage["peak"], peak)

    @contextlib.contextmanager
    def stage(self, label: str):
        self.fold()
        self.resets = reset_peak() and self.resets
        row = {"depth": len(self.stack), "label": label, "before": vm("VmRSS"), "peak": 0.0, "after": math.nan}
        self.rows.append(row)
        self.stack.append(row)
        began = time.perf_counter()
        try:
            yield
        finally:
            self.fold()
            self.stack.pop()
            row["after"], row["seconds"] = vm("VmRSS"), time.perf_counter() - began

    def wrap(self, owner: object, name: str, label: str) -> None:
        """Replace ``owner.name`` (a module's function or a class's method) by itself inside a stage; a name the
        code no longer has is listed in ``missing`` (the table then lacks that stage)."""
        original = getattr(owner, name, None)
        if original is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return

        @functools.wraps(original)
        def probed(*args, **kwargs):
            with self.stage(label):
                return original(*args, **kwargs)

        setattr(owner, name, probed)


def probe_genreg_path(stages: Stages) -> None:
    """Wrap the stages of loading and training that touch the data (see :class:`Stages`)."""
    import genreg.data.splits as splits
    import genreg.training.loop as loop
    import genreg.training.runner as runner
    import genreg_builtin.datasets as datasets

    stages.wrap(runner, "load_data", "load_data (the npz dataset, whole)")
    stages.wrap(datasets, "_arrays", "read the arrays from the .npz")
    stages.wrap(datasets, "as_split", "as_split: checks, float32 tensors")
    stages.wrap(datasets, "_stratified_split", "stratified split (train/test rows taken)")
    stages.wrap(datasets, "finish", "finish: class checks")
    stages.wrap(runner, "build_model", "build_model")
    stages.wrap(runner, "check_data", "the loss terms' check_data (gaussian: std_mean)")
    stages.wrap(splits.Split, "to", "Split.to(device)")
    stages.wrap(loop, "make_optimizer", "make_optimizer")
    stages.wrap(loop, "make_steps", "make_steps")
    stages.wrap(loop.Loop, "epoch", "one epoch (steps, test evaluation, checkpoint)")
    stages.wrap(loop, "average_losses", "test evaluation (average_losses)")
    stages.wrap(loop, "save_checkpoint", "save_checkpoint")


# ---------------------------------------------------------------- genreg


def genreg_spec(path: Path, epochs: int, precision: str = "auto") -> dict:
    """The spec a user writes for this task (``precision`` other than ``auto`` only for genreg-fp32)."""
    train = {"epochs": epochs, "batch_size": BATCH, "lr": LR}
    if precision != "auto":
        train["precision"] = precision
    return {
        "name": "bench-table",
        "seed": SEED,
        "model": {
            "type": "vae",
            "latent_dim": LATENT,
            "encoder": {"type": "mlp", "hidden": [HIDDEN]},
            "decoder": {"type": "mlp", "hidden": [HIDDEN]},
            "losses": [{"type": "gaussian"}, {"type": "kld"}],
        },
        "data": {"type": "npz", "path": str(path), "test_fraction": TEST_FRACTION},
        "train": train,
    }


def run_genreg(
    gate: Gate | None, path: Path, epochs: int, tmp: str, precision: str = "auto", stages: Stages | None = None
) -> dict:
    """``genreg run``'s path (validate, prepare, train into a run folder); reports each epoch through ``gate``."""
    from genreg.training.runner import prepare

    spec = genreg.validate_spec(genreg_spec(path, epochs, precision))
    torch.optim.Adam(nn.Linear(1, 1).parameters()).step()  # the optimizer's lazy imports, as for the plain loop
    base = peak_mb()
    if stages is not None:
        probe_genreg_path(stages)
    began = time.perf_counter()
    with stages.stage("prepare (runner: data, model, checks)") if stages else contextlib.nullcontext():
        ready = prepare(spec)
    loaded = {"load_seconds": time.perf_counter() - began, "rss_loaded": vm("VmRSS"), "peak_loaded": peak_mb()}
    folder = Path(tmp) / f"run-{precision}-{os.getpid()}"
    folder.mkdir()

    def on_epoch(record: dict) -> None:
        if gate is not None:
            gate.report(record["test"]["loss"], genreg_seconds=record["seconds"], train_loss=record["train"]["loss"])
            if record["epoch"] < epochs:
                gate.wait()

    if gate is not None:
        gate.wait()
    callbacks = [genreg.EveryEpoch(on_epoch)]
    with stages.stage("genreg.train") if stages else contextlib.nullcontext():
        result = genreg.train(
            ready.model,
            ready.data,
            spec.train,
            seed=spec.seed,
            run_dir=folder,
            spec=ready.resolved,
            progress=False,
            callbacks=callbacks,
        )
    return {"base": base, **loaded, "trained_in": result.precision, "rows_train": len(ready.data.train)}


# ---------------------------------------------------------------- the plain loop

LOG_2PI = math.log(2 * math.pi)


class TableVAE(nn.Module):
    """The same layers as genreg's: F-512-(32, 32) / 32-512-F, ReLU."""

    def __init__(self, features: int, hidden: int = HIDDEN, latent: int = LATENT) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x))
        mu, log_var = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        return self.fc4(F.relu(self.fc3(z))), mu, log_var


def loss_function(mean: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Gaussian NLL (sigma 1, every constant) + KLD, summed over features, latent dims and the batch."""
    nll = 0.5 * F.mse_loss(mean, x, reduction="sum") + 0.5 * LOG_2PI * x.numel()
    kld = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())
    return nll + kld


def run_plain(gate: Gate, path: Path, epochs: int, tmp: str) -> dict:
    torch.optim.Adam(nn.Linear(1, 1).parameters()).step()  # the optimizer's lazy imports (~140 MiB)
    base = peak_mb()
    began = time.perf_counter()
    with np.load(path) as archive:
        x = torch.from_numpy(archive["x"])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))
    n_test = round(len(x) * TEST_FRACTION)
    test_x, train_x = x[order[:n_test]], x[order[n_test:]]
    del x
    train_loader = DataLoader(TensorDataset(train_x), batch_size=BATCH, shuffle=True)
    test_loader = DataLoader(TensorDataset(test_x), batch_size=1000)
    loaded = {"load_seconds": time.perf_counter() - began, "rss_loaded": vm("VmRSS"), "peak_loaded": peak_mb()}
    model = TableVAE(train_x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(epochs):
        gate.wait()
        model.train()
        total = 0.0
        for (batch,) in train_loader:
            optimizer.zero_grad()
            mean, mu, log_var = model(batch)
            loss = loss_function(mean, batch, mu, log_var)
            loss.backward()
            total += loss.item()
            optimizer.step()
        model.eval()
        test = 0.0
        with torch.no_grad():
            for (batch,) in test_loader:
                mean, mu, log_var = model(batch)
                test += loss_function(mean, batch, mu, log_var).item()
        gate.report(test / len(test_x), train_loss=total / len(train_x))
    return {"base": base, **loaded, "trained_in": "fp32, as written", "rows_train": len(train_x)}


# ---------------------------------------------------------------- processes


def worker(name: str, conn, path: str, epochs: int, tmp: str) -> None:
    log = open(Path(tmp) / f"{name}.log", "w")  # noqa: SIM115 - the process's stdout/stderr from here on
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        torch.manual_seed(SEED)
        gate = Gate(conn)
        if name == "plain":
            result = run_plain(gate, Path(path), epochs, tmp)
        else:
            result = run_genreg(gate, Path(path), epochs, tmp, "fp32" if name == "genreg-fp32" else "auto")
        conn.send(("done", {**result, "peak": peak_mb(), "ru_maxrss": maxrss_mb(), "rss_end": vm("VmRSS")}))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


def stage_worker(conn, path: str, tmp: str) -> None:
    """genreg's path for one epoch with every stage probed; sends the stages' rows."""
    log = open(Path(tmp) / "stages.log", "w")  # noqa: SIM115
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        torch.manual_seed(SEED)
        stages = Stages()
        result = run_genreg(None, Path(path), 1, tmp, stages=stages)
        stages.fold()
        probes = {"rows": stages.rows, "total_peak": stages.total, "resets": stages.resets, "missing": stages.missing}
        conn.send(("done", {**result, **probes}))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


def receive(conn, name: str, kind: str, tmp: str, procs: list) -> dict:
    """The next message of ``kind`` from ``name``'s process; a worker's error kills every worker (SIGKILL: the
    others wait for a 'go' that will not come, and Lightning, in ``bench_scvi.py``, catches SIGTERM) and is raised
    with its traceback."""
    got, payload = conn.recv()
    if got == "error":
        for proc in procs:
            proc.kill()
        raise RuntimeError(f"{name} worker failed:\n{payload}\n(log: {Path(tmp) / (name + '.log')})")
    assert got == kind, (got, kind)
    return payload


def run_stages(path: Path, tmp: str) -> dict:
    context = mp.get_context("spawn")
    parent_end, child_end = context.Pipe()
    proc = context.Process(target=stage_worker, args=(child_end, str(path), tmp), name="bench-stages")
    proc.start()
    result = receive(parent_end, "stages", "done", tmp, [proc])
    proc.join()
    return result


def run_interleaved(trainers: list[str], path: Path, epochs: int, tmp: str) -> tuple[dict[str, dict], dict]:
    """Each trainer of this benchmark in its own process, one epoch each in turn (see :func:`take_turns`)."""
    context = mp.get_context("spawn")

    def start(name: str, child_end: Any) -> Any:
        proc = context.Process(target=worker, args=(name, child_end, str(path), epochs, tmp), name=f"bench-{name}")
        proc.start()
        return proc

    return take_turns(trainers, start, epochs, tmp)


def take_turns(
    trainers: list[str], start: Any, epochs: int, tmp: str, final: str | None = None
) -> tuple[dict[str, dict], dict]:
    """Each trainer in its own process (``start(name, pipe_end)`` starts it), set up one at a time (each loads the
    data alone), then one epoch each in turn (the order rotating every epoch), then, after ``final`` is sent to
    each (if given), its "done" results one at a time.

    Returns the trainers' results and the contention during the epochs: the share of the machine's CPU time
    that other processes used (``others``) and that the hypervisor stole (``steal``).
    """
    context = mp.get_context("spawn")
    pipes, procs = {}, {}
    results = {name: {"epochs": []} for name in trainers}
    for name in trainers:
        parent_end, child_end = context.Pipe()
        pipes[name], procs[name] = parent_end, start(name, child_end)
        results[name].update(receive(pipes[name], name, "ready", tmp, list(procs.values())))
        print(f"{name}: set up", flush=True)
    pids = [os.getpid(), *(proc.pid for proc in procs.values())]
    machine_before, ours_before = cpu_times(), process_ticks(pids)
    for epoch in range(epochs):
        shift = epoch % len(trainers)
        for name in trainers[shift:] + trainers[:shift]:
            pipes[name].send("go")
            results[name]["epochs"].append(receive(pipes[name], name, "epoch", tmp, list(procs.values())))
            print(f"epoch {epoch + 1}/{epochs} {name:11s} {results[name]['epochs'][-1]['seconds']:7.2f} s", flush=True)
    machine_after, ours_after = cpu_times(), process_ticks(pids)
    for name in trainers:
        if final is not None:
            pipes[name].send(final)
        results[name].update(receive(pipes[name], name, "done", tmp, list(procs.values())))
    for proc in procs.values():
        proc.join()
    contention = {"steal": steal_fraction(machine_before, machine_after), "others": math.nan}
    if len(machine_before) >= 8 and len(machine_after) >= 8:
        delta = [b - a for a, b in zip(machine_before[:8], machine_after[:8], strict=True)]
        busy = sum(delta) - delta[3] - delta[4] - delta[7]  # all but idle, iowait and steal
        contention["others"] = max(0, busy - (ours_after - ours_before)) / max(1, sum(delta))
    return results, contention


def process_ticks(pids: list[int]) -> int:
    """User + system CPU time of the processes ``pids``, in clock ticks (as /proc/stat counts)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


# ---------------------------------------------------------------- the report


def stage_section(stages: dict) -> str:
    """The table of genreg's stages (see :class:`Stages`), in MB over the probe process's base."""
    base = stages["base"]
    rows = []
    for row in stages["rows"]:
        indent = "&nbsp;&nbsp;" * row["depth"]
        rows.append(
            f"| {indent}{row['label']} | {row['seconds']:.2f} | {row['before'] - base:+.0f} "
            f"| {row['peak'] - base:+.0f} | {row['after'] - base:+.0f} |"
        )
    resets = "" if stages["resets"] else " (this kernel refused the reset: each peak is the peak so far)"
    if stages["missing"]:
        resets += f"; not probed, the code no longer has them: {', '.join(stages['missing'])}"
    return f"""Where genreg's memory goes: its path run once more (one epoch) in a separate process before the trainers,
each stage probed: resident memory before and after the stage and the peak during it (`VmHWM`, reset at the
stage's start through `/proc/self/clear_refs`{resets}), in MB over that process's base ({base:.0f} MB, its peak
after the imports); the process's peak: {stages["total_peak"]:.0f} MB ({stages["total_peak"] - base:+.0f}).

| stage (nested ones indented) | s | RSS before | peak during | RSS after |
|---|---|---|---|---|
{chr(10).join(rows)}
"""


def trainer_table(results: dict, data_mb: float) -> str:
    columns = [
        "trainer",
        "trained in",
        "s / epoch (median)",
        "timed epochs (s)",
        "training rows / s",
        "load (s)",
        "base RSS (MB)",
        "peak RSS (MB)",
        "peak over base (MB)",
        "over base / data",
        "peak / data",
        "last train loss",
        "last test loss",
    ]
    rows = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for name, result in results.items():
        timed = [e["seconds"] for e in result["epochs"][WARM:]]
        seconds = statistics.median(timed)
        over = result["peak"] - result["base"]
        rows.append(
            f"| {name} | {result['trained_in'].split(' (')[0]} | {seconds:.2f} "
            f"| {', '.join(f'{t:.2f}' for t in timed)} | {result['rows_train'] / seconds:,.0f} "
            f"| {result['load_seconds']:.1f} | {result['base']:.0f} "
            f"| {result['peak']:.0f} | {over:.0f} | {over / data_mb:.2f}x | {result['peak'] / data_mb:.2f}x "
            f"| {result['epochs'][-1]['train_loss']:.1f} | {result['epochs'][-1]['test_loss']:.1f} |"
        )
    return "\n".join(rows)


def verdicts(results: dict, data_mb: float) -> str:
    medians = {name: statistics.median(e["seconds"] for e in r["epochs"][WARM:]) for name, r in results.items()}
    lines = []
    if "genreg" in medians and "plain" in medians:
        ratio = medians["plain"] / medians["genreg"]
        fp32 = f" (genreg-fp32: {medians['plain'] / medians['genreg-fp32']:.2f}x)" if "genreg-fp32" in medians else ""
        lines.append(
            f"- Speed (genreg >= plain): **{'met' if ratio >= 1 else 'missed'}**: genreg's median epoch is "
            f"{ratio:.2f}x as fast as the plain loop's{fp32}."
        )
    if "genreg" in results:
        over = results["genreg"]["peak"] - results["genreg"]["base"]
        total = results["genreg"]["peak"]
        met = "met" if over <= 2 * data_mb else "missed"
        lines.append(
            f"- Memory (peak within 2x of the data's {data_mb:.0f} MB, i.e. <= {2 * data_mb:.0f} MB): genreg's peak "
            f"over its process's base {over:.0f} MB = {over / data_mb:.2f}x, **{met}**; its whole peak, torch's "
            f"libraries included, {total:.0f} MB = {total / data_mb:.2f}x "
            f"({'within' if total <= 2 * data_mb else 'over'} 2x)."
        )
    return "\n".join(lines)


def code_state() -> str:
    """``commit 460b67f`` and, when genreg's or its plugins' files differ from it, which of them."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "genreg", "plugins").splitlines()
    if not changed:
        return f"commit {commit}"
    return f"commit {commit} with {len(changed)} uncommitted changes under genreg/ and plugins/"


def report(args, results: dict, stages: dict, info: dict, contention: tuple, command: str, wall: float) -> str:
    data_mb = args.rows * args.features * 4 / MB
    maxrss = ", ".join(f"{name} {result['ru_maxrss']:.0f} MB" for name, result in results.items())
    trained = f"{stages['rows_train']:,} rows"
    trainers = (
        f"{trainer_table(results, data_mb)}\n\n{verdicts(results, data_mb)}\n\n" if results else "(no trainers run)\n\n"
    )
    return f"""
## Tables (issue 18): `benchmarks/bench_table.py`, genreg against a plain DataLoader loop

- Date: {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}
- Machine: {info["cores"]} CPU cores ({info["cpu"]}), no GPU; torch {info["torch"]} with {info["threads"]} threads
  (the default), Python {info["python"]}; genreg at {code_state()}
- Command: `{command}`
  (wall clock {wall / 60:.1f} min); load average before / after: {contention[0]:.2f} / {contention[1]:.2f};
  during the epochs, the share of the machine's CPU time used by other processes: **{contention[3]:.1%}**,
  stolen by the hypervisor: {contention[2]:.1%}
- Data: {args.rows:,} rows x {args.features:,} features float32 = **{data_mb:.0f} MB** (MB = 10^6 bytes),
  standardised features from an 8-D latent through a random tanh layer plus noise, 4 classes; an uncompressed
  `.npz` (`x`, `labels`). 80% trains ({trained}), 20% is the test set.
- Task: VAE, encoder {args.features}-512-(32, 32), decoder 32-512-{args.features}, ReLU, Gaussian NLL (sigma 1,
  every constant) + KLD, Adam lr 1e-3, batch 128, seed 0. `genreg`: `genreg run`'s path on a spec (`npz`,
  `vae`, `mlp` [512], `gaussian` + `kld`, every other setting at its default): `validate_spec`, the runner's
  `prepare`, `genreg.train` into a run folder (metrics and checkpoint each epoch); `genreg-fp32`: the same with
  `train.precision: fp32`; `plain`: `np.load`, a seeded random 80/20 split, TensorDataset +
  DataLoader(shuffle=True), the same layers as an nn.Module, the loss summed over the batch, Adam, the
  standard step.
- How: each trainer in its own spawned process; they take turns epoch by epoch (only one computes at a time;
  the order rotates). {args.epochs} epochs each, the first a warm-up, the time the median of the other
  {args.epochs - 1}, from the parent's 'go' to the end of the epoch, each trainer's test evaluation (batches of
  1,000) included. "load" is reading the table and splitting it (genreg: `prepare`, its checks and the model
  included).
- Memory: "peak RSS" is the process's peak resident set size after training, `VmHWM` of /proc/self/status
  (not `ru_maxrss`: a spawned process's starts at its parent's peak;
  here {maxrss or "-"});
  "base" is its peak after the imports and a throwaway Adam step (lazy imports), before any data is read;
  "over base" is the difference. Losses are nats per row (one draw of z), each trainer's own numbers (the test
  rows differ: genreg's split is stratified, the plain loop's a random permutation).

{trainers}{stage_section(stages)}"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="rows of the table (default: the issue's 100,000)")
    parser.add_argument("--features", type=int, default=FEATURES, help="features (default: the issue's 1,000)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per trainer, the first a warm-up (>= 2)")
    parser.add_argument("--data", default="", help="where to write (or find) the .npz; default: a temporary folder")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"), help="append the results here ('' for none)")
    parser.add_argument(
        "--trainers", default=",".join(TRAINERS), help="comma-separated subset of the default ('': the stages only)"
    )
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (one warm-up, one timed)")
    trainers = [t for t in args.trainers.split(",") if t]
    if unknown := set(trainers) - set(TRAINERS):
        parser.error(f"unknown trainers: {', '.join(sorted(unknown))}")
    command = "python benchmarks/bench_table.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    info = machine("cpu")
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_table_") as tmp:
        path = Path(args.data) if args.data else Path(tmp) / "table.npz"
        if table_shape(path) != (args.rows, args.features):
            print(f"writing {path}: {args.rows:,} x {args.features:,}", flush=True)
            write_table(path, args.rows, args.features)
        stages = run_stages(path, tmp)
        print(stage_section(stages), flush=True)
        results, during = run_interleaved(trainers, path, args.epochs, tmp) if trainers else ({}, {})
    contention = (load_before, os.getloadavg()[0], during.get("steal", math.nan), during.get("others", math.nan))
    text = report(args, results, stages, info, contention, command.strip(), time.perf_counter() - began)
    publish(text, args.out)


if __name__ == "__main__":
    main()
