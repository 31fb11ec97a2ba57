"""Tests genreg/training/signals.py: Ctrl-C or SIGTERM during a real `genreg run` gives a clear exit, a
resumable checkpoint and the same final weights."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genreg.files.run_folder import RunFolder

pytestmark = pytest.mark.slow

SPEC = {
    "model": {"type": "vae", "latent_dim": 4, "encoder": {"hidden": [32]}, "decoder": {"hidden": [32]}},
    "data": {"type": "mnist-sample"},
    "train": {"epochs": 30, "batch_size": 256, "device": "cpu"},
    "seed": 3,
}


def genreg_run(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "genreg", "run", *args, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def epochs_written(folder: Path) -> int:
    metrics = folder / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "spec.json"
    path.write_text(json.dumps(SPEC))
    return path


@pytest.fixture(scope="module")
def uninterrupted(spec_file: Path, tmp_path_factory) -> dict[str, torch.Tensor]:
    folder = tmp_path_factory.mktemp("straight")
    run = genreg_run(str(spec_file), "--out", str(folder))
    assert run.wait(timeout=300) == 0, run.stderr.read()
    return load_file(folder / "model.safetensors")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_and_resume_ends_with_the_same_weights(
    signum: int, spec_file: Path, uninterrupted: dict, tmp_path: Path
) -> None:
    run = genreg_run(str(spec_file), "--out", str(tmp_path))
    deadline = time.monotonic() + 120
    while epochs_written(tmp_path) < 2:
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read() if run.poll() else "timeout"
        time.sleep(0.02)
    run.send_signal(signum)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signum, err
    assert f"training stopped by {signal.Signals(signum).name} during epoch" in err
    assert "--resume" in err and "Traceback" not in err
    stopped_at = epochs_written(tmp_path)
    assert 2 <= stopped_at < SPEC["train"]["epochs"]
    assert not (tmp_path / "model.safetensors").exists()  # the run did not pretend to finish

    resumed = genreg_run(str(spec_file), "--out", str(tmp_path), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert epochs_written(tmp_path) == SPEC["train"]["epochs"]
    weights = load_file(tmp_path / "model.safetensors")
    assert weights.keys() == uninterrupted.keys()
    assert all(torch.equal(weights[k], uninterrupted[k]) for k in weights)


# --------------------------------------------------------------------------- a signal outside the epochs

DRIVER = """
import os, signal, sys
from genreg.files.run_folder import RunFolder
from genreg.training import runner

owner, name, when = {"load_data": runner, "write_spec": RunFolder, "save_figure": runner}[sys.argv[1]], *sys.argv[1:3]
real = getattr(owner, name)

def signalled(*args, **kwargs):  # one signal, at the first call
    setattr(owner, name, real)
    if when == "before":
        os.kill(os.getpid(), signal.SIGTERM)
    result = real(*args, **kwargs)
    if when == "after":
        os.kill(os.getpid(), signal.SIGTERM)
    return result

setattr(owner, name, signalled)
from genreg.cli import main
sys.argv = ["genreg", *sys.argv[3:]]
main()
"""


def run_signalled(tmp_path: Path, spec_file: Path, where: str, when: str, *args: str) -> subprocess.CompletedProcess:
    """`genreg run` that sends itself SIGTERM ``when`` ("before" or "after") it calls ``where``."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    command = [sys.executable, str(driver), where, when, "run", str(spec_file), *args, "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def short_spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("short") / "spec.json"
    path.write_text(json.dumps({**SPEC, "train": {**SPEC["train"], "epochs": 1}}))
    return path


def test_a_signal_before_training_says_nothing_was_kept_and_a_rerun_starts_afresh(
    short_spec: Path, tmp_path: Path
) -> None:
    """Case 9 of issue 15: SIGTERM before training (data loading) exited 143 with no message."""
    out = tmp_path / "run"
    stopped = run_signalled(tmp_path, short_spec, "load_data", "before", "--out", str(out))
    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr == (
        "Error: stopped by SIGTERM before training started; nothing was kept: rerun the same command.\n"
    )
    assert not out.exists() or RunFolder(out).present() == []


def test_a_signal_after_the_spec_is_written_leaves_a_folder_a_rerun_accepts(short_spec: Path, tmp_path: Path) -> None:
    """Case 9 of issue 15: a folder holding only spec.json refused both a rerun and --resume."""
    out = tmp_path / "run"
    stopped = run_signalled(tmp_path, short_spec, "write_spec", "after", "--out", str(out))
    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr.startswith(
        f"Error: stopped by SIGTERM before training started; {out} holds only spec.json: rerun the same command"
    )
    assert RunFolder(out).present() == ["spec.json"]
    rerun = genreg_run(str(short_spec), "--out", str(out))
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    assert [r["epoch"] for r in RunFolder(out).read_metrics()] == [1]


def test_a_signal_during_the_final_writes_lets_them_finish_and_says_so(short_spec: Path, tmp_path: Path) -> None:
    """Case 9 of issue 15: SIGTERM while the model file and pictures were written exited 143 with no message."""
    out = tmp_path / "run"
    stopped = run_signalled(tmp_path, short_spec, "save_figure", "before", "--out", str(out))
    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr == (
        f"Error: stopped by SIGTERM after the run's files were written; the run in {out} is finished.\n"
    )
    assert RunFolder(out).missing_pictures() == [] and RunFolder(out).finished(1)
