"""Tests genreg/files/run_folder.py: a run folder that holds a run is not overwritten unless asked; a resumed
run may change only its length and its callbacks, and not end before the epochs it trained; a metrics line
cut short by a crash is dropped; an unwritable or too-full folder is refused before the data is loaded or any
training step runs; one process writes a folder at a time; an overwrite loses nothing before the new run is
under way, and clears what was computed from the old model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
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
from genreg.training.runner import resolve_spec
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


def test_a_metrics_line_that_is_not_an_epochs_record_is_left_out_like_one_cut_short(tmp_path: Path) -> None:
    """A line `{"epoch": "x"}` appended to metrics.jsonl ended `genreg run --resume` in a TypeError; such a line
    is left out when read and dropped on resume, as a line cut short by a crash is."""
    good = [{"epoch": e, "train": {"loss": 1.0}, "test": {"loss": 2.0}, "lr": 0.001} for e in (1, 2)]
    edited = ['{"epoch": "x"}', '{"epoch": 0, "train": {}, "test": {}}', '{"epoch": true, "train": {}, "test": {}}']
    edited += ['{"epoch": 2.5, "train": {}, "test": {}}', '{"epoch": 3}', "[1]", "[" * 100_000]
    lines = [json.dumps(good[0]), *edited, json.dumps(good[1]), *edited]
    (tmp_path / RunFolder.METRICS).write_text("\n".join(lines) + "\n")
    folder = RunFolder(tmp_path)
    assert folder.read_metrics() == good and folder.recorded_epochs() == 2
    folder.truncate_metrics(2)
    assert (tmp_path / RunFolder.METRICS).read_text() == "".join(json.dumps(r) + "\n" for r in good)


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


@posix_only
def test_a_run_refused_for_too_little_space_leaves_no_folder_it_made(tmp_path, monkeypatch):
    """`genreg run --out full/r` refused for too little free space left an empty full/r behind."""
    monkeypatch.setattr(runner, "train", lambda *args, **kwargs: pytest.fail("training started"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(RunFolderError, match="^not enough free space in"):
        genreg.run(small_spec(), tmp_path / "full" / "r", progress=False)
    assert os.listdir(tmp_path) == []  # neither folder genreg made is left


def test_a_folder_is_removed_only_if_genreg_made_it_and_it_is_still_empty(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    for path in (tmp_path / "mine", tmp_path / "new" / "run"):
        with pytest.raises(RunFolderError), RunFolder(path).locked():
            RunFolder(path).create([], needed=10**30)
    assert os.listdir(tmp_path) == ["mine"] and os.listdir(tmp_path / "mine") == []
    with RunFolder(tmp_path / "kept" / "run").locked():
        (tmp_path / "kept" / "run" / "spec.json").write_text("{}")
    assert os.listdir(tmp_path / "kept" / "run") == ["spec.json"]


# --------------------------------------------------------------------------- one writer; overwrites that lose nothing

TINY = ["--set", "model.encoder.hidden=[16]", "--set", "model.decoder.hidden=[16]", "--set", "train.batch_size=500"]


def finished_run(folder: Path) -> dict[str, bytes]:
    """A 1-epoch AE run in ``folder`` with its eval.json; every file's bytes."""
    run_cli("run", EXAMPLES / "ae.json", "--out", folder, "--set", "train.epochs=1", *TINY, "--quiet")
    (folder / "eval.json").write_text('{"model_checksum": "of this run"}')
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_an_overwrite_that_fails_its_checks_leaves_the_finished_run_whole(tmp_path: Path) -> None:
    """Case 1 of issue 15: --overwrite with a device the machine lacks used to delete the run, then fail."""
    before = finished_run(tmp_path / "run")
    device = "banana" if torch.cuda.is_available() else "cuda"
    args = ["run", EXAMPLES / "ae.json", "--out", tmp_path / "run", "--overwrite", "--set", f"train.device={device}"]
    result = CliRunner().invoke(cli, [str(arg) for arg in [*args, *TINY]])
    assert result.exit_code == 2 and "train.device" in result.output
    assert {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()} == before


def test_an_overwrite_that_fails_before_its_first_checkpoint_puts_the_old_run_back(tmp_path, monkeypatch) -> None:
    before = finished_run(tmp_path / "run")

    def fails(*args, **kwargs):
        raise RunFolderError("the device went away")

    monkeypatch.setattr(runner, "train", fails)
    result = CliRunner().invoke(
        cli, [str(a) for a in ["run", EXAMPLES / "ae.json", "--out", tmp_path / "run", "--overwrite", *TINY]]
    )
    assert result.exit_code == 2 and "the device went away" in result.output
    assert {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()} == before


def test_an_overwrite_clears_what_was_computed_from_the_old_model(tmp_path: Path) -> None:
    finished_run(tmp_path / "run")
    args = ["run", EXAMPLES / "ae.json", "--out", tmp_path / "run", "--overwrite", "--set", "train.epochs=1"]
    run_cli(*args, *TINY, "--set", "seed=1", "--quiet")
    names = sorted(path.name for path in (tmp_path / "run").iterdir())
    assert names == sorted(RunFolder.OUTPUTS)  # no eval.json of the old model, no lock, nothing set aside


@pytest.mark.slow
def test_two_runs_into_one_folder_at_once_the_second_is_refused(tmp_path: Path) -> None:
    """Case 2 of issue 15: two runs used to interleave their metrics lines and both exit 0."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "genreg", "run", str(EXAMPLES / "ae.json"), "--out", str(out), "--quiet", *TINY]
    first = subprocess.Popen([*command, "--set", "train.epochs=200"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / RunFolder.CHECKPOINT).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        second = subprocess.run([*command, "--resume", "--set", "train.epochs=200"], capture_output=True, text=True)
        assert second.returncode == 2, second.stderr
        assert f"is being written by another genreg process (pid {first.pid} on" in second.stderr
    finally:
        first.kill()
        first.wait()


def test_a_resume_may_not_end_before_the_epochs_already_trained(tmp_path: Path) -> None:
    """Case 6 of issue 15: --resume with fewer epochs rewrote the spec and model to say so, and exited 0."""
    run_cli("run", EXAMPLES / "ae.json", "--out", tmp_path, "--set", "train.epochs=2", *TINY, "--quiet")
    spec = (tmp_path / "spec.json").read_bytes()
    args = ["run", EXAMPLES / "ae.json", "--out", tmp_path, "--resume", "--set", "train.epochs=1", *TINY]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 2 and "it has trained 2 epochs already" in result.output
    assert (tmp_path / "spec.json").read_bytes() == spec


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_run_folder_whose_spec_is_damaged_is_refused_on_resume(tmp_path: Path, damage: str) -> None:
    """Case 18 of issue 15: a deleted or truncated spec.json, then --resume: a traceback."""
    run_cli("run", EXAMPLES / "ae.json", "--out", tmp_path, "--set", "train.epochs=1", *TINY, "--quiet")
    spec = tmp_path / "spec.json"
    if damage == "deleted":
        spec.unlink()
    else:
        spec.write_bytes(spec.read_bytes()[:40])
    args = ["run", EXAMPLES / "ae.json", "--out", tmp_path, "--resume", "--set", "train.epochs=2", *TINY]
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert ("it has no spec.json" if damage == "deleted" else "spec.json cannot be read back") in result.output


@posix_only
def test_a_dangling_symlink_as_the_run_folder_is_refused_naming_it_before_loading_data(tmp_path, nothing_loaded):
    """Case 19 of issue 15: --out a link to nothing said "File exists", after the data was loaded."""
    link, target = tmp_path / "run", tmp_path / "gone" / "run"
    link.symlink_to(target)
    expected = (
        f"cannot write the run folder {link / 'sub'}: {link} is a symbolic link to {target}, which does not exist; "
        "create that folder, remove the link, or choose another folder with --out."
    )
    with pytest.raises(RunFolderError) as caught:
        genreg.run(small_spec(), link / "sub", progress=False)
    assert str(caught.value) == expected
    result = CliRunner().invoke(cli, ["run", str(EXAMPLES / "vae.json"), "--out", str(link), "--quiet"])
    assert result.exit_code == 2 and result.stderr == f"Error: {expected.replace(str(link / 'sub'), str(link), 1)}\n"
    assert link.is_symlink() and not target.exists()


def test_a_folder_name_longer_than_file_systems_allow_is_refused_before_anything(tmp_path):
    """Issue 15, case 16: `--out` with a 5,000-character name ended in `OSError: File name too long`."""
    folder = RunFolder(tmp_path / "x" / ("a" * 5000) / "y")
    with pytest.raises(RunFolderError, match=r"it names a folder of 5,000 bytes, and file systems allow 255; choose"):
        folder.check(resume=False, overwrite=False)
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- a run folder of an earlier genreg

#: A 1-epoch cVAE run folder written by genreg at issue 16 (see the README there).
ISSUE_16 = Path(__file__).parents[1] / "fixtures" / "issue_16"


def without_defaults(spec: dict) -> dict:
    """``spec`` as a spec.json of an earlier genreg, which knew fewer defaults, wrote it: the defaulted fields left
    out (the case of issue 16: "the spec differs at model.conditioner, model.losses")."""
    model, train = spec["model"], spec["train"]
    del model["losses"]  # the recipe's default terms
    model["conditioner"] = [{"type": "onehot"}]  # its column and num_classes: defaults and the data's
    for part in ("encoder", "decoder"):
        del model[part]["activation"], model[part]["condition"]
    for field in ("pictures", "cuda_graph", "precision"):
        train.pop(field, None)
    return spec


def test_resume_compares_a_saved_spec_resolved_with_this_genreg(tmp_path: Path) -> None:
    """Issue 16, case 15: a spec.json lacking defaults the running genreg fills in was refused as differing."""
    folder = RunFolder(tmp_path)
    saved = json.loads((ISSUE_16 / "cvae_run_1_epoch" / "spec.json").read_text())
    folder.write_spec(without_defaults(json.loads(json.dumps(saved))))
    info = genreg.DataInfo((1, 28, 28), 10)
    with pytest.raises(RunFolderError, match=r"differs from the one it started with at model.conditioner, model"):
        folder.check_resumable(saved)  # compared as written: the defaults are missing
    saved = resolve_spec(saved, info, folder.spec_path)  # as this genreg resolves the spec it is given
    folder.check_resumable(saved, lambda spec: resolve_spec(spec, info, folder.spec_path))
    changed = {**saved, "train": {**saved["train"], "lr": 0.01}}
    with pytest.raises(RunFolderError, match=r"differs from the one it started with at train.lr;"):
        folder.check_resumable(changed, lambda spec: resolve_spec(spec, info, folder.spec_path))
    folder.write_spec({**saved, "train": {**saved["train"], "no_such_field": 1}})
    with pytest.raises(GenregError, match=r"spec.json is invalid \(1 problem\):\n  train.no_such_field: unknown"):
        folder.check_resumable(saved, lambda spec: resolve_spec(spec, info, folder.spec_path))


@pytest.mark.slow
def test_a_run_folder_resumes_to_the_weights_of_the_run_trained_at_once(tmp_path: Path, cpu_has) -> None:
    """Issue 16, case 15: resuming the fixture's 1-epoch run to 2 epochs gives the weights of 2 epochs at once,
    also when its spec.json lacks the defaults this genreg fills in (as an earlier genreg's does).

    The fixture's epoch was trained in fp32, the CPU's ``precision: auto`` of its day: a CPU without bf16
    matrix instructions keeps it so."""
    cpu_has(avx512_bf16=False)
    spec = ISSUE_16 / "cvae_spec.json"
    run_cli("run", spec, "--out", tmp_path / "at_once", "--quiet")
    at_once = genreg.load_model(tmp_path / "at_once").state_dict()
    for written in ("as_written", "without_defaults"):
        folder = tmp_path / written
        shutil.copytree(ISSUE_16 / "cvae_run_1_epoch", folder)
        if written == "without_defaults":
            spec_file = folder / "spec.json"
            spec_file.write_text(json.dumps(without_defaults(json.loads(spec_file.read_text()))))
        run_cli("run", spec, "--out", folder, "--resume", "--quiet")
        assert [record["epoch"] for record in RunFolder(folder).read_metrics()] == [1, 2]
        resumed = genreg.load_model(folder).state_dict()
        assert all(torch.equal(value, at_once[name]) for name, value in resumed.items()), written
