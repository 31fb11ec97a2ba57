"""Tests genreg/files/run_folder.py: a run folder that holds a run is not overwritten unless asked; a resumed
run may change only its length and its callbacks; a metrics line cut short by a crash is dropped; an
unwritable or too-full folder is refused before the data is loaded or any training step runs."""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from genreg.errors import GenregError, RunFolderError
from genreg.files import run_folder
from genreg.files.run_folder import RunFolder
from genreg.spec import TrainConfig
from genreg.training import runner
from tests.helpers import EXAMPLES, SMALL_RUN, posix_only, run_cli, small_data

FAST = ["--set", "model.encoder.hidden=[128]", "--set", "model.decoder.hidden=[128]", "--quiet"]


@pytest.mark.slow
def test_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    spec = str(EXAMPLES / "ae.json")
    run_cli("run", spec, "--out", str(tmp_path), "--set", "train.epochs=1", *FAST)
    before = (tmp_path / "model.safetensors").read_bytes()
    result = CliRunner().invoke(cli, ["run", spec, "--out", str(tmp_path), "--set", "train.epochs=1", *FAST])
    assert result.exit_code == 2
    assert "already holds a run" in result.output and "--overwrite" in result.output
    assert (tmp_path / "model.safetensors").read_bytes() == before
    run_cli("run", spec, "--out", str(tmp_path), "--set", "train.epochs=1", "--set", "seed=1", "--overwrite", *FAST)
    assert (tmp_path / "model.safetensors").read_bytes() != before


def test_resume_refuses_a_changed_spec(tmp_path: Path) -> None:
    spec = str(EXAMPLES / "ae.json")
    run_cli("run", spec, "--out", str(tmp_path), "--set", "train.epochs=1", *FAST)
    result = CliRunner().invoke(
        cli,
        ["run", spec, "--out", str(tmp_path), "--resume", "--set", "train.lr=0.01", "--set", "train.epochs=2", *FAST],
    )
    assert result.exit_code == 2 and "train.lr" in result.output


SMALL = ["train.epochs=2", "train.batch_size=256", "model.encoder.hidden=[32]", "model.decoder.hidden=[32]"]


@pytest.mark.slow
def test_a_resumed_run_may_change_its_callbacks_but_nothing_else(tmp_path: Path) -> None:
    spec = genreg.load_spec(EXAMPLES / "vae.json", [*SMALL, "train.epochs=1"])
    genreg.run(spec, tmp_path, progress=False)
    more = genreg.load_spec(
        EXAMPLES / "vae.json", [*SMALL, 'train.callbacks=[{"type": "early-stopping", "patience": 5}]']
    )
    result = genreg.run(more, tmp_path, resume=True, progress=False)
    assert [r["epoch"] for r in result.history] == [2]
    changed = genreg.load_spec(EXAMPLES / "vae.json", [*SMALL, "train.lr=0.01"])
    with pytest.raises(GenregError, match=r"train.lr; only train.epochs and train.callbacks may change"):
        genreg.run(changed, tmp_path, resume=True, progress=False)


MLP = {"type": "mlp", "hidden": [16]}
AE = {"type": "ae", "latent_dim": 3, "encoder": MLP, "decoder": MLP}


def test_resume_drops_a_metrics_line_cut_short_by_a_crash(tmp_path) -> None:
    data = small_data(256)
    torch.manual_seed(0)
    model = genreg.build_model(AE, data.info)
    config = TrainConfig(epochs=1, batch_size=64, device="cpu")
    genreg.train(model, data, config, progress=False, run_dir=tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 2, "train": {"lo')  # killed while appending epoch 2's line
    longer = config.model_copy(update={"epochs": 2})
    genreg.train(model, data, longer, progress=False, run_dir=tmp_path, resume=True)
    assert [r["epoch"] for r in RunFolder(tmp_path).read_metrics()] == [1, 2]


INFO = genreg.DataInfo((1, 28, 28), 10)


# --------------------------------------------------------------------------- refused before any work


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Loading data or training is a test failure: these errors must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("data was loaded or training started")

    monkeypatch.setattr(runner, "load_data", forbidden)
    monkeypatch.setattr(runner, "train", forbidden)


def small_spec():
    spec = EXAMPLES / "vae.json"
    return genreg.load_spec(spec, ["train.epochs=1", *SMALL_RUN[1::2]])


@pytest.fixture
def locked(tmp_path):
    """A folder with mode 0o500; skipped where the user ignores permissions (root, unless it dropped
    CAP_DAC_OVERRIDE)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    yield folder
    folder.chmod(0o700)


@posix_only
@pytest.mark.parametrize("where", ["parent", "folder"])
def test_an_unwritable_folder_fails_before_loading_data(locked, nothing_loaded, where):
    if os.access(locked, os.W_OK):
        pytest.skip(f"this user (uid {os.geteuid()}) may write into read-only folders")
    out = locked / "run" if where == "parent" else locked
    with pytest.raises(RunFolderError) as caught:
        genreg.run(small_spec(), out, progress=False)
    assert str(caught.value) == (
        f"cannot write the run folder {out}: {locked} is not writable (no permission, or a read-only file system); "
        "choose another folder with --out."
    )
    assert os.listdir(locked) == []


@posix_only
def test_a_file_in_the_way_fails_before_loading_data(tmp_path, nothing_loaded):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    with pytest.raises(RunFolderError, match=f"^cannot write the run folder {blocker / 'x'}: {blocker} is a file,"):
        genreg.run(small_spec(), blocker / "x", progress=False)
    spec = EXAMPLES / "vae.json"
    result = CliRunner().invoke(cli, ["run", str(spec), "--out", str(blocker / "x" / "y"), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr == (
        f"Error: cannot write the run folder {blocker / 'x' / 'y'}: {blocker} is a file, not a folder; "
        "choose another folder with --out.\n"
    )
    assert blocker.read_text() == "not a folder"


@posix_only
def test_too_little_free_space_fails_before_training_and_keeps_the_old_run(tmp_path, monkeypatch):
    def train(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(runner, "train", train)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"the old run")
    spec = small_spec()
    with pytest.raises(RunFolderError) as caught:
        genreg.run(spec, out, overwrite=True, progress=False)
    needed = runner.space_needed(genreg.build_model(spec.model, INFO))
    assert str(caught.value) == (
        f"not enough free space in {out}: the run's checkpoint and model files need about {needed / 1e6:.1f} MB "
        "and 0.0 MB is free; free some space or choose another folder with --out."
    )
    assert (out / "model.safetensors").read_bytes() == b"the old run"
