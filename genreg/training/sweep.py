"""``genreg sweep``: one spec trained over a grid of settings, a run folder each, then compared.

A sweep is a loop over ``genreg run`` that is safe to start again. Every combination is validated whole
(spec, data, model, callbacks, device) before the first one trains, so a bad value in the last combination
cannot surface hours in. Each run folder is named by its settings, so rerunning the same command skips the
finished runs, draws the pictures a run killed after its model file lacks, resumes an interrupted one from its
checkpoint and trains the rest; a folder holding a run of another spec is refused, never replaced. With
``--jobs N`` the runs go N at a time in ``genreg run`` subprocesses, each with its share of the CPU threads
and, when there are GPUs, one of them in turn; a signal is passed on to them, and the sweep waits for them.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreg.errors import GenregError, SweepError, TrainingInterruptedError
from genreg.files.run_folder import RunFolder, spec_differences
from genreg.spec.validate import load_spec
from genreg.training import signals
from genreg.training.grid import Axis, check_keys, folder_name, labels, parse_grid
from genreg.training.runner import draw_missing_pictures, prepare, run

IW_SAMPLES = 100  # per image for the IWAE bound: every run is evaluated, so fewer than `genreg compare`'s 1000
TRAIN, RESTART, RESUME, DRAW, FINISHED = "train", "restart", "resume", "draw", "finished"
DONE = {TRAIN: "trained", RESTART: "trained", RESUME: "resumed"}


@dataclass
class Combination:
    """One point of the grid: its ``KEY=VALUE`` settings, its run folder and what the sweep does with it."""

    name: str
    settings: tuple[str, ...]
    folder: Path
    spec: Any
    state: str


def plan(spec_file: str, sets: Sequence[str], axes: Sequence[Axis], out: Path, base: Any) -> list[Combination]:
    """Validate every combination whole and decide, from its folder, whether to train, resume or skip it.

    ``base`` is the spec with ``sets`` applied, whose fields the grid keys must
    name. Nothing is written: a bad value or a folder of another spec stops the
    sweep before any run starts.
    """
    check_keys(axes, base)
    names = labels([axis.key for axis in axes])
    combinations = []
    for values in itertools.product(*(axis.values for axis in axes)):
        settings = tuple(f"{axis.key}={value}" for axis, value in zip(axes, values, strict=True))
        name = folder_name(list(zip(names, values, strict=True)))
        try:
            spec = load_spec(spec_file, [*sets, *settings])
            resolved = json.loads(json.dumps(prepare(spec).resolved))
        except GenregError as exc:
            raise SweepError(f"combination {name} (--set {' --set '.join(settings)}) is invalid: {exc}") from None
        combinations.append(Combination(name, settings, out / name, spec, state_of(out / name, resolved)))
    return combinations


def state_of(folder: Path, resolved: dict) -> str:
    """FINISHED, DRAW (trained, pictures missing), RESUME (a checkpoint), RESTART (this spec's run that has no
    checkpoint yet) or TRAIN (empty).

    A folder holding a run of another spec, or run files without a spec, is
    refused: the sweep never replaces what it did not write.
    """
    run_folder = RunFolder(folder)
    if not run_folder.present((RunFolder.SPEC, RunFolder.MODEL, RunFolder.CHECKPOINT, RunFolder.METRICS)):
        return TRAIN
    saved = run_folder.read_spec(f"delete or move {folder} (the sweep then trains that combination again)")
    differences = [] if saved is None else spec_differences(saved, resolved)
    if saved is None or differences:
        what = "no spec.json" if saved is None else f"a run of another spec (differing at {', '.join(differences[:3])})"
        raise SweepError(
            f"{folder} holds {what}; the sweep does not replace it. Move or delete that folder, or choose another "
            "sweep folder with --out."
        )
    if run_folder.trained(resolved["train"]["epochs"]):
        return DRAW if run_folder.missing_pictures() else FINISHED
    return RESUME if run_folder.checkpoint_path.exists() else RESTART


def result_line(combination: Combination) -> str:
    """``test neg_elbo 123.45 nats/image after 3 epochs`` (the objective; ``loss`` where there is none)."""
    records = RunFolder(combination.folder).read_metrics()
    if not records:
        return "no epochs recorded"
    last, name = records[-1], next((k for k in ("neg_elbo", "nll") if k in records[-1]["test"]), "loss")
    unit, plural = " nats/image" if name != "loss" else "", "s" if last["epoch"] != 1 else ""
    return f"test {name} {last['test'][name]:.2f}{unit} after {last['epoch']} epoch{plural}"


Echo = Callable[[str], None]


def run_in_process(combinations: Sequence[Combination], progress: bool, echo: Echo) -> dict[str, str]:
    """Train the combinations one after another in this process; returns the failed ones' errors by name.

    A failing run (a diverging learning rate, say) does not stop the others; a signal
    stops the sweep (:class:`~genreg.training.signals.Stopped`), leaving the run under way resumable.
    """
    failures = {}
    for i, combination in enumerate(combinations, 1):
        where = f"[{i}/{len(combinations)}] {combination.name}"
        if skip(combination, where, echo):
            continue
        try:
            resume, overwrite = combination.state == RESUME, combination.state == RESTART
            run(combination.spec, combination.folder, resume=resume, overwrite=overwrite, progress=progress)
        except TrainingInterruptedError as exc:
            raise signals.Stopped(exc.exit_code - 128) from None
        except GenregError as exc:
            failures[combination.name] = str(exc)
            echo(f"{where}: FAILED: {exc}")
            continue
        echo(f"{where}: {DONE[combination.state]}, {result_line(combination)}")
    return failures


def skip(combination: Combination, where: str, echo: Echo) -> bool:
    """Whether ``combination`` is finished, or trained but lacks pictures (then drawn from its model file)."""
    if combination.state == DRAW:
        drawn = draw_missing_pictures(combination.spec, combination.folder)
        echo(f"{where}: finished; {', '.join(drawn) or 'its pictures'} drawn again from its model file")
    elif combination.state == FINISHED:
        echo(f"{where}: skipped (finished)")
    return combination.state in (DRAW, FINISHED)


def run_in_subprocesses(
    combinations: Sequence[Combination], spec_file: str, sets: Sequence[str], jobs: int, echo: Echo
) -> dict[str, str]:
    """Train ``jobs`` combinations at a time, each in a ``genreg run`` subprocess; returns the failed ones'
    stderr tails by name.

    Each job gets ``OMP_NUM_THREADS`` = the CPUs over ``jobs``, so the jobs do not
    fight over cores; with GPUs, job slot k gets GPU k mod (their number) through
    ``CUDA_VISIBLE_DEVICES``. SIGINT or SIGTERM (:class:`~genreg.training.signals.Stopped`)
    is passed on once to every job, which keeps its checkpoint; the sweep waits for them, then raises it on.
    """
    where = {c.name: f"[{i}/{len(combinations)}] {c.name}" for i, c in enumerate(combinations, 1)}
    todo = [c for c in combinations if not skip(c, where[c.name], echo)]
    cpus, gpus = _cpu_count(), _visible_gpus()
    running: dict[int, tuple[Combination, subprocess.Popen, Any]] = {}
    failures: dict[str, str] = {}
    try:
        while todo or running:
            for slot in [s for s in range(jobs) if s not in running][: len(todo)]:
                combination = todo.pop(0)
                env = {**os.environ, **job_env(slot, jobs, cpus, gpus)}
                with signals.deferred():  # a job started is a job known, to pass a signal on to
                    running[slot] = (combination, *_start(combination, spec_file, sets, env))
            time.sleep(0.1)
            for slot, (combination, process, stderr) in list(running.items()):
                if process.poll() is not None:
                    del running[slot]
                    _report(combination, process.returncode, stderr, where[combination.name], failures, echo)
    except signals.Stopped as stop:
        for _, process, _ in running.values():
            process.send_signal(stop.signum)
        for _, process, stderr in running.values():
            process.wait()
            stderr.close()
        raise
    return failures


def _report(combination: Combination, code: int, stderr: Any, where: str, failures: dict, echo: Echo) -> None:
    """Say how a finished job went; a failed one's stderr tail goes into ``failures``."""
    if code == 0:
        echo(f"{where}: {DONE[combination.state]}, {result_line(combination)}")
    else:
        stderr.seek(0)
        lines = stderr.read().decode(errors="replace").rstrip().splitlines()[-15:] or ["(nothing on stderr)"]
        failures[combination.name] = "\n".join("    " + line for line in lines)
        echo(f"{where}: FAILED (exit {code}):\n{failures[combination.name]}")
    stderr.close()


def job_env(slot: int, jobs: int, cpus: int, gpus: Sequence[str]) -> dict[str, str]:
    """The environment of the job in ``slot`` (0..jobs-1): its share of the CPU threads, and a GPU in turn."""
    env = {"OMP_NUM_THREADS": str(max(1, cpus // jobs))}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def _start(combination: Combination, spec_file: str, sets: Sequence[str], env: dict) -> tuple[subprocess.Popen, Any]:
    """Start ``genreg run`` for one combination, in its own session so that Ctrl-C reaches it only through us."""
    command = [sys.executable, "-m", "genreg", "run", spec_file, "--out", str(combination.folder), "--quiet"]
    for setting in [*sets, *combination.settings]:
        command += ["--set", setting]
    command += {RESUME: ["--resume"], RESTART: ["--overwrite"]}.get(combination.state, [])
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - outlives this call; closed when the job ends
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    return process, stderr


def _visible_gpus() -> list[str]:
    """The CUDA devices this process sees, as ``CUDA_VISIBLE_DEVICES`` entries; empty without CUDA."""
    import torch

    count = torch.cuda.device_count()
    given = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return given[:count] if given else [str(i) for i in range(count)]


def _cpu_count() -> int:
    """CPUs this process may use (its affinity, where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def sweep(
    spec_file: str,
    grids: Sequence[str],
    sets: Sequence[str] = (),
    out: str | Path | None = None,
    jobs: int = 1,
    iw_samples: int = IW_SAMPLES,
    progress: bool = True,
    echo: Echo = print,
) -> list[Path]:
    """Train ``spec_file`` at every combination of the ``grids`` values, one run folder each, then compare them.

    Every combination is validated before the first trains; finished runs are skipped and interrupted ones
    resumed. The table goes to ``echo`` and to ``OUT/compare.md``, the picture to ``OUT/compare.png``. Returns
    the run folders that trained. Raises :class:`SweepError` for a bad grid, an invalid combination, a folder of
    another spec, runs that failed (after the others finished), or a signal (exit code 128 + its number).
    """
    from genreg.evaluation.report import compare_runs

    combinations: list[Combination] = []  # filled in once planned, for the message of a signal
    with signals.raised():
        try:
            folder = _plan_into(combinations, spec_file, grids, sets, out)
            n, n_resume = len(combinations), sum(c.state == RESUME for c in combinations)
            n_finished = sum(c.state in (FINISHED, DRAW) for c in combinations)
            echo(
                f"sweep of {n} run{'s' if n != 1 else ''} in {folder}: {n_finished} finished, {n_resume} to resume, "
                f"{n - n_finished - n_resume} to train" + (f", {jobs} at a time in subprocesses" if jobs > 1 else "")
            )
            if jobs > 1:
                failures = run_in_subprocesses(combinations, spec_file, sets, jobs, echo)
            else:
                failures = run_in_process(combinations, progress, echo)
            done = [c.folder for c in combinations if c.name not in failures]
            if done:
                table, written = compare_runs(done, folder / "compare.png", folder / "compare.md", iw_samples)
                echo(table + "\nwrote " + ", ".join(map(str, written)))
        except signals.Stopped as stop:  # say which runs are finished, which resumable, and how to go on
            words = ["genreg", "sweep", spec_file, *(w for g in grids for w in ("--grid", g))]
            words += [*(w for s in sets for w in ("--set", s)), *(["--out", str(out)] if out else [])]
            command = shlex.join(words + (["--jobs", str(jobs)] if jobs > 1 else []))
            runs = [(c.name, RunFolder(c.folder), c.spec.train.epochs) for c in combinations]
            raise SweepError(signals.sweep_stopped(stop.signum, runs, command), 128 + stop.signum) from None
    if failures:
        raise SweepError(
            f"{len(failures)} of {n} runs failed: {', '.join(failures)} (see above). Fix the cause "
            "and run the same sweep again: finished runs are skipped."
        )
    return done


def _plan_into(
    combinations: list[Combination], spec_file: str, grids: Sequence[str], sets: Sequence[str], out: Any
) -> Path:
    """Plan the sweep (see :func:`plan`) into ``combinations``; returns the sweep folder."""
    axes = parse_grid(grids)
    with warnings.catch_warnings():  # each combination's validation warns about what still holds with its values
        warnings.simplefilter("ignore")
        base = load_spec(spec_file, sets)
    folder = Path(out or Path("runs") / f"{base.name or Path(spec_file).stem}-sweep")
    combinations.extend(plan(spec_file, sets, axes, folder, base))
    return folder
