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
