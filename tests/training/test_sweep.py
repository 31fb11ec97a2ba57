"""Tests genreg/training/sweep.py, `genreg sweep`: every combination trained once into its own folder,
resumable, validated first, compared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

import genreg
from genreg.cli import cli
from genreg.errors import GenregError, SweepError
from genreg.files.atomic import process_alive
from genreg.files.run_folder import RunFolder
from genreg.training import sweep
from tests.helpers import EXAMPLES

AE, VAE = str(EXAMPLES / "ae.json"), str(EXAMPLES / "vae.json")
NAMES = ["lr=1e-3,latent_dim=2", "lr=1e-3,latent_dim=16", "lr=3e-3,latent_dim=2", "lr=3e-3,latent_dim=16"]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Options for tiny runs: 600 digits (480 train / 120 test), hidden layers of 32, one epoch, K=5 for the table."""
    data = genreg.load_data({"type": "mnist-sample"}).train
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, images=data.images[:600].numpy(), labels=data.labels[:600].numpy())
    sets = [
        f"data={json.dumps({'type': 'npz', 'path': str(path)})}",
        "model.encoder.hidden=[32]",
        "model.decoder.hidden=[32]",
        "train.batch_size=256",
        "train.epochs=1",
    ]
    return [*(arg for s in sets for arg in ("--set", s)), "--iw-samples", "5", "--quiet"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["sweep", *args], catch_exceptions=False)


def final_test_loss(folder: Path) -> float:
    return RunFolder(folder).read_metrics()[-1]["test"]["loss"]


def model_files(out: Path) -> dict[str, tuple[int, bytes]]:
    """Each run's model file: when it was written, and what it holds."""
    files = {name: out / name / "model.safetensors" for name in NAMES}
    return {name: (file.stat().st_mtime_ns, file.read_bytes()) for name, file in files.items()}


@pytest.fixture(scope="module")
def grid(small: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Result]:
    """A 2x2 sweep over the learning rate and the latent size: its folder, its arguments and its first output."""
    out = tmp_path_factory.mktemp("grid") / "sweep"
    args = [AE, "--grid", "train.lr=1e-3,3e-3", "--grid", "model.latent_dim=2,16", *small, "--out", str(out)]
    return out, args, invoke(*args)


@pytest.mark.slow
def test_grid_trains_every_combination_once_and_compares_them(grid: tuple[Path, list[str], Result]) -> None:
    out, args, first = grid
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(NAMES)
    assert all(f"{name}: trained" in first.output for name in NAMES)
    for name in NAMES:
        resolved = json.loads((out / name / "spec.json").read_text())
        lr, latent = (part.partition("=")[2] for part in name.split(","))
        assert resolved["train"]["lr"] == float(lr) and resolved["model"]["latent_dim"] == int(latent)

    rows = [line.strip().strip("|").split("|") for line in (out / "compare.md").open()]
    header, _, *body = [[cell.strip() for cell in row] for row in rows]
    assert header == ["metric", *NAMES] and (out / "compare.png").stat().st_size > 0
    bce = next(row for row in body if row[0].startswith("bce"))
    # eval measures in fp32, a run's test metrics in the precision it trained in (bf16 on a CPU with AVX512-BF16)
    assert [float(v) for v in bce[1:]] == pytest.approx([final_test_loss(out / n) for n in NAMES], abs=0.05)

    stamps = model_files(out)
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert again.output.count("skipped (finished)") == 4 and "trained" not in again.output
    assert any(line.startswith("metric") and all(n in line for n in NAMES) for line in again.output.splitlines())

    other = invoke(*args, "--set", "train.epochs=2")  # a folder of another spec is never replaced
    assert other.exit_code == 2 and "holds a run of another spec (differing at train.epochs)" in other.output
    assert model_files(out) == stamps


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_the_run_it_stopped_in(
    tmp_path: Path, small: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sweep"
    args = [AE, "--grid", "train.lr=1e-3,3e-3", *small, "--set", "train.epochs=2", "--out", str(out)]
    append = RunFolder.append_metrics

    def ctrl_c_after_first_epoch_of_second_run(folder: RunFolder, record: dict) -> None:
        append(folder, record)
        if folder.path.name == "lr=3e-3" and record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C during epoch 2 would

    monkeypatch.setattr(RunFolder, "append_metrics", ctrl_c_after_first_epoch_of_second_run)
    stopped = invoke(*args)
    assert stopped.exit_code == 130 and "Traceback" not in stopped.output
    assert "sweep stopped by SIGINT; finished: lr=1e-3; stopped with a resumable checkpoint: lr=3e-3." in stopped.output
    assert f"Continue it with `genreg sweep {AE} --grid train.lr=1e-3,3e-3" in stopped.output
    assert (out / "lr=1e-3" / "model.safetensors").exists() and not (out / "lr=3e-3" / "model.safetensors").exists()
    epoch_one = (out / "lr=3e-3" / "metrics.jsonl").read_text()
    monkeypatch.undo()

    resumed = invoke(*args)
    assert resumed.exit_code == 0, resumed.output
    assert "lr=1e-3: skipped (finished)" in resumed.output and "lr=3e-3: resumed" in resumed.output
    assert resumed.output.count("resumed") == 1 and "trained" not in resumed.output
    metrics = (out / "lr=3e-3" / "metrics.jsonl").read_text()
    assert metrics.startswith(epoch_one) and [r["epoch"] for r in RunFolder(out / "lr=3e-3").read_metrics()] == [1, 2]


@pytest.mark.parametrize(
    ("grids", "message"),
    [
        (["train.lr="], "--grid 'train.lr=': expected KEY=VALUE1,VALUE2,... with at least one value"),
        (["train.lr=1e-3,,3e-3"], "an empty value between commas"),
        (["train.lr=1e-3,1e-3"], "the value 1e-3 is listed twice"),
        (["train.lr=1e-3", "train.lr=3e-3"], "--grid train.lr is given twice"),
        (["train.lrr=1e-3"], "train has no field 'lrr'; its fields are epochs, batch_size, lr,"),
        (["model.encoder.hiden=[8]"], "model.encoder has no field 'hiden'"),
        (
            ["train.lr=1e-3,3e-3", "model.latent_dim=4,0"],
            "combination lr=1e-3,latent_dim=0 (--set train.lr=1e-3 --set model.latent_dim=0) is invalid: ",
        ),
    ],
)
def test_a_bad_grid_is_refused_before_anything_trains(
    tmp_path: Path, small: list[str], grids: list[str], message: str
) -> None:
    out = tmp_path / "sweep"
    result = invoke(AE, *(arg for g in grids for arg in ("--grid", g)), *small, "--out", str(out))
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    if "latent_dim=0" in message:
        assert "model.latent_dim: Input should be greater than or equal to 1" in result.output
    assert not out.exists()


def test_a_failing_run_is_reported(tmp_path: Path, small: list[str]) -> None:
    out = tmp_path / "sweep"
    result = invoke(AE, "--grid", "train.lr=1e8", *small, "--out", str(out))
    assert result.exit_code == 2
    assert "[1/1] lr=1e8: FAILED: the loss became non-finite" in result.output
    assert "1 of 1 runs failed: lr=1e8" in result.output and not (out / "compare.md").exists()


@pytest.mark.slow
def test_jobs_run_in_subprocesses_with_the_same_results(
    grid: tuple[Path, list[str], Result], small: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_here(*args: object, **kwargs: object) -> None:
        raise AssertionError("--jobs 2 trained in the sweep's own process")

    monkeypatch.setattr(sweep, "run", not_here)
    out = tmp_path / "sweep"
    args = [AE, "--grid", "train.lr=1e-3,1e8", "--grid", "model.latent_dim=2", *small, "--out", str(out)]
    result = invoke(*args, "--jobs", "2")
    assert result.exit_code == 2 and "2 at a time in subprocesses" in result.output
    assert "lr=1e-3,latent_dim=2: trained" in result.output
    assert "lr=1e8,latent_dim=2: FAILED (exit 2):" in result.output
    assert "\n    Error: the loss became non-finite at epoch 1" in result.output  # the job's stderr
    sequential = final_test_loss(grid[0] / "lr=1e-3,latent_dim=2")
    assert final_test_loss(out / "lr=1e-3,latent_dim=2") == pytest.approx(sequential, rel=1e-5)
    assert (out / "compare.md").read_text().splitlines()[0] == "| metric | lr=1e-3,latent_dim=2 |"


def test_job_environment_shares_the_cpus_and_deals_out_the_gpus() -> None:
    assert sweep.job_env(0, 2, 16, []) == {"OMP_NUM_THREADS": "8"}
    assert sweep.job_env(2, 3, 2, []) == {"OMP_NUM_THREADS": "1"}
    assert [sweep.job_env(s, 3, 12, ["4", "6"])["CUDA_VISIBLE_DEVICES"] for s in range(3)] == ["4", "6", "4"]


def test_a_run_stopped_early_counts_as_finished_and_a_stray_folder_is_refused(tmp_path: Path) -> None:
    folder, resolved = tmp_path / "run", {"train": {"epochs": 3}}
    folder.mkdir()
    (folder / "spec.json").write_text(json.dumps(resolved))
    assert sweep.state_of(folder, resolved) == sweep.RESTART  # started, nothing to resume from
    (folder / "metrics.jsonl").write_text(
        json.dumps({"epoch": 1, "train": {}, "test": {}}) + "\n" + '{"epoch": 2, "tr'
    )  # cut by a crash
    (folder / "checkpoint.safetensors").write_bytes(b"state after epoch 1")
    assert RunFolder(folder).recorded_epochs() == 1
    assert sweep.state_of(folder, resolved) == sweep.RESUME
    (folder / "model.safetensors").write_bytes(b"weights")
    os.utime(folder / "model.safetensors", ns=(10**18, 10**18))
    os.utime(folder / "checkpoint.safetensors", ns=(2 * 10**18, 2 * 10**18))
    assert sweep.state_of(folder, resolved) == sweep.RESUME  # an old model file, then more epochs under way
    os.utime(folder / "model.safetensors", ns=(3 * 10**18, 3 * 10**18))
    assert sweep.state_of(folder, resolved) == sweep.DRAW  # written after the last checkpoint: stopped early ...
    for picture in RunFolder.PICTURES:
        (folder / picture).write_bytes(b"png")
    assert sweep.state_of(folder, resolved) == sweep.FINISHED  # ... and finished once its pictures are there too

    (folder / "spec.json").unlink()
    with pytest.raises(SweepError, match="holds no spec.json; the sweep does not replace it"):
        sweep.state_of(folder, resolved)


@pytest.mark.parametrize("damage", ['{"train": {"epo', "[1, 2]"], ids=["cut short", "not an object"])
def test_a_member_whose_spec_is_damaged_says_what_a_sweep_can_do(tmp_path: Path, damage: str) -> None:
    """A member's spec.json cut short: the sweep said "start the run again with --overwrite", which `genreg sweep`
    does not have."""
    folder = tmp_path / "lr=1e-3"
    folder.mkdir()
    (folder / "spec.json").write_text(damage)
    with pytest.raises(GenregError) as caught:
        sweep.state_of(folder, {"train": {"epochs": 3}})
    assert f"delete or move {folder} (the sweep then trains that combination again)" in str(caught.value)
    assert "--overwrite" not in str(caught.value)


@pytest.mark.slow
def test_a_run_killed_after_its_model_file_gets_its_pictures_drawn_on_rerun(tmp_path: Path, small: list[str]) -> None:
    """Case 7 of issue 15: a run killed after its model file was written was later "skipped (finished)", though
    its pictures were never drawn."""
    out = tmp_path / "sweep"
    args = [AE, "--grid", "train.lr=1e-3", *small, "--out", str(out)]
    assert invoke(*args).exit_code == 0
    run = out / "lr=1e-3"
    pictures = {name: (run / name).read_bytes() for name in ("samples.png", "latent.png")}
    for name in pictures:
        (run / name).unlink()  # as a kill right after the model file was written leaves it
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "[1/1] lr=1e-3: finished; samples.png, latent.png drawn again from its model file" in again.output
    assert "skipped" not in again.output and "trained" not in again.output
    assert {name: (run / name).read_bytes() for name in pictures} == pictures


@pytest.mark.slow
def test_a_sweep_stopped_by_sigterm_stops_its_jobs_and_says_what_was_kept(tmp_path: Path, small: list[str]) -> None:
    """Case 8 of issue 15: `genreg sweep --jobs 2` stopped by SIGTERM exited with no message, its `genreg run`
    children training on as orphans."""
    out = tmp_path / "sweep"
    args = [AE, "--grid", "train.lr=1e-3,3e-3", *small, "--set", "train.epochs=500", "--out", str(out), "--jobs", "2"]
    command = [sys.executable, "-m", "genreg", "sweep", *args]
    sweep_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = [RunFolder(out / name) for name in ("lr=1e-3", "lr=3e-3")]
    children = []
    try:
        deadline = time.monotonic() + 120
        while not all(run.recorded_epochs() >= 1 for run in runs):
            assert sweep_process.poll() is None and time.monotonic() < deadline, "the jobs did not start training"
            time.sleep(0.1)
        children = [json.loads((run.path / RunFolder.LOCK).read_text())["pid"] for run in runs]
        sweep_process.send_signal(signal.SIGTERM)
        output, errors = sweep_process.communicate(timeout=120)
        assert sweep_process.returncode == 143, errors
        assert "Traceback" not in errors
        assert "sweep stopped by SIGTERM; stopped with a resumable checkpoint: lr=1e-3, lr=3e-3." in errors
        assert f"Continue it with `genreg sweep {AE} --grid train.lr=1e-3,3e-3" in errors
        assert not any(process_alive(pid) for pid in children)  # passed on, and waited for
        assert all(run.checkpoint_path.exists() and not (run.path / RunFolder.LOCK).exists() for run in runs)
    finally:
        for pid in children:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
        sweep_process.kill()
        sweep_process.wait()
