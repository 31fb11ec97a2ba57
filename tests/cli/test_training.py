"""Tests genreg/cli/training.py: ``genreg validate`` (right output on success, exit code 2 and one message,
no traceback, on user errors) and ``genreg extend`` (writes the extended, fine-tuned model; refuses bad input).

``genreg run`` is tested with the runner (tests/training/test_runner.py) and ``genreg sweep`` with the sweep
(tests/training/test_sweep.py): those commands only hand their options over."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import genreg
from genreg.cli import Group
from genreg.cli.training import extend as extend_command
from tests.helpers import EXAMPLE_SPEC, assert_user_error, invoke, needs_example_plugin

# --------------------------------------------------------------------------- genreg validate


def test_validate_ok(write_file, minimal_spec):
    path = write_file(minimal_spec)
    result = invoke("validate", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{path}: valid. cvae with ")
    assert "4,000 train / 1,000 test images of 1x28x28, 10 classes; 10 epochs." in result.stdout
    result = invoke("validate", path, "--set", "train.epochs=3", "--set", "model.type=vae")
    assert result.stdout.startswith(f"{path}: valid. vae with ") and result.stdout.endswith("; 3 epochs.\n")


def test_validate_print_shows_the_resolved_spec(write_file, minimal_spec):
    minimal_spec["model"]["encoder"] = {"type": "mlp"}
    path = write_file(minimal_spec)
    result = invoke("validate", path, "--print", "--set", "model.encoder.hidden=[64,32]")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    expected = genreg.validate_spec(genreg.spec.apply_overrides(minimal_spec, ["model.encoder.hidden=[64,32]"]))
    resolved = expected.model_dump(mode="json")
    resolved["model"]["conditioner"][0]["num_classes"] = 10  # filled in from the data
    assert printed == resolved
    assert printed["model"]["encoder"]["hidden"] == [64, 32]
    assert printed["train"]["epochs"] == 10 and printed["model"]["losses"][1]["type"] == "kld"


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("bad json", ["is not valid JSON: ", "at line 2, column"]),
        ("missing file", ["cannot read spec file ", "missing.json: No such file or directory."]),
        ("unknown component", ["is invalid (1 problem):", "model.encoder: unknown encoder 'mpl'. Did you mean 'mlp'?"]),
        (
            "extra field",
            ["train.epoch: unknown field; allowed here: batch_size, callbacks, compile, cuda_graph, device, epochs"],
        ),
        ("bad value", ["train.epochs: Input should be greater than or equal to 1"]),
        ("bad --set", ["--set 'train.epochs': expected KEY=VALUE"]),
        ("bad --set index", ["--set model.losses.3.weight: 'model.losses.3' needs a list index below 2."]),
        ("bad --set value", ["model.latent_dim: Input should be a valid integer"]),
    ],
)
def test_validate_user_errors_exit_2_without_traceback(write_file, minimal_spec, case, fragments):
    args: list[str] = []
    spec = minimal_spec
    if case == "bad json":
        path = write_file('{"model": {"type": "cvae"}\n "data": {}}')
    elif case == "missing file":
        path = write_file(spec).with_name("missing.json")
    else:
        if case == "unknown component":
            spec["model"]["encoder"] = {"type": "mpl"}
        elif case == "extra field":
            spec["train"] = {"epoch": 3}
        elif case == "bad value":
            spec["train"] = {"epochs": 0}
        elif case == "bad --set":
            args = ["--set", "train.epochs"]
        elif case == "bad --set index":
            args = ["--set", "model.losses.3.weight=1"]
        elif case == "bad --set value":
            args = ["--set", "model.latent_dim=big"]
        if case.startswith("bad --set"):
            spec["model"]["losses"] = [{"type": "bce"}, {"type": "kld"}]
        path = write_file(spec)
    result = invoke("validate", path, *args)
    assert_user_error(result, *fragments)
    if case != "bad --set" and case != "bad --set index":
        assert str(path) in result.stderr


def test_validate_non_utf8_file_is_a_user_error(write_file):
    path = write_file(b"\xff\xfe\x00\x01 binary", "binary.json")
    assert_user_error(invoke("validate", path), str(path))


@needs_example_plugin
def test_validate_catches_assembly_errors_and_run_leaves_no_folder(tmp_path):
    spec = str(EXAMPLE_SPEC)
    too_few = ["--set", "model.conditioner.num_classes=3"]
    result = invoke("validate", spec, *too_few)
    assert result.exit_code == 2 and "num_classes=3" in result.output
    result = invoke("run", spec, *too_few, "--out", str(tmp_path / "run"), "--quiet")
    assert result.exit_code == 2 and "num_classes=3" in result.output
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- genreg extend


@pytest.fixture
def files(eight_class_cvae, new_digits, tmp_path: Path) -> dict[str, Path]:
    """The trained model's file and an npz of 8s and 9s to fine-tune on."""
    npz = tmp_path / "new.npz"
    split = new_digits.train
    np.savez(npz, images=split.images.numpy(), labels=split.labels.numpy())
    return {"model": genreg.save_model(eight_class_cvae, tmp_path / "model.safetensors"), "npz": npz}


def invoke_extend(*args: object):
    """The command as the ``genreg`` group runs it (GenregError -> exit 2 with one message)."""
    return CliRunner().invoke(Group(name="genreg", commands=[extend_command]), ["extend", *map(str, args)])


def test_extend_writes_the_extended_and_fine_tuned_model(files, tmp_path: Path) -> None:
    spec = {"type": "npz", "path": str(files["npz"])}
    spec_file = tmp_path / "data.json"
    spec_file.write_text(json.dumps(spec))
    out = tmp_path / "ten.safetensors"
    result = invoke_extend(files["model"], "--add", 2, "--data", spec_file, "--epochs", 1, "--quiet", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out} (column 'label' has 10 classes: 8 known and 2 new")
    assert genreg.load_model(out).conditioner.num_classes == 10
    extension = genreg.read_extension(out)
    assert (extension.classes_before, extension.classes_after) == (8, 10)
    assert extension.fine_tuning["data"]["path"] == str(files["npz"]) and extension.fine_tuning["epochs"] == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--add", 0], "cannot add 0 classes to column 'label'"),
        (["--add", 2, "--column", "dose"], "column 'dose': no conditioner of the model reads it"),
        (["--add", 2, "--epochs", 3], "--epochs sets how long to fine-tune on --data"),
        (["--add", 2, "--data", "{not json"], "--data: not valid JSON"),
        (["--add", 2, "--data", "missing.json"], "--data missing.json: neither a JSON object nor an existing file"),
        (["--add", 2, "--data", '{"type": "npz"}'], "path: required field is missing"),
        (["--add", 2, "--data", '{"type": "npz", "path": "nowhere.npz"}'], "nowhere.npz: file not found"),
    ],
)
def test_extend_bad_input_exits_2_with_one_message(files, tmp_path: Path, args: list, says: str) -> None:
    result = invoke_extend(files["model"], *args, "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert result.stderr.startswith("Error: ") and says in result.stderr, result.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_extend_refuses_to_overwrite_its_input(files) -> None:
    before = files["model"].read_bytes()
    result = invoke_extend(
        files["model"].parent, "--add", 1, "-o", files["model"]
    )  # the run folder means its model file
    assert result.exit_code == 2 and "is the model being extended" in result.stderr
    assert files["model"].read_bytes() == before


def test_extend_refuses_to_write_into_another_runs_folder(files, tmp_path: Path) -> None:
    """Issue 15, case 4: the run's spec says one model; an extended model written beside it would contradict it."""
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "spec.json").write_text('{"model": {"type": "vae"}}')
    (other / "model.safetensors").write_bytes(b"the other run's model")
    result = invoke_extend(files["model"], "--add", 1, "-o", other / "model.safetensors")
    assert result.exit_code == 2 and "is the folder of a run (spec.json, model.safetensors)" in result.stderr
    assert "pass --overwrite" in result.stderr
    assert (other / "model.safetensors").read_bytes() == b"the other run's model"


def test_extend_refuses_an_existing_file_without_overwrite_and_replaces_it_with(files, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "ten.safetensors"
    out.parent.mkdir()
    out.write_bytes(b"keep me")
    result = invoke_extend(files["model"], "--add", 1, "-o", out)
    assert result.exit_code == 2 and f"-o {out} exists already" in result.stderr
    assert out.read_bytes() == b"keep me"
    result = invoke_extend(files["model"], "--add", 1, "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert genreg.load_model(out).conditioner.num_classes == 9


def test_extend_overwrite_into_a_run_folder_takes_its_lock(files, tmp_path: Path) -> None:
    """With --overwrite the run folder is written like a run writes it: never while another process does."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.json").write_text("{}")
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "command": "genreg run spec.json", "since": "now"}
    (run / ".genreg.lock").write_text(json.dumps(lock))
    result = invoke_extend(files["model"], "--add", 1, "-o", run / "model.safetensors", "--overwrite")
    assert result.exit_code == 2 and "is being written by another genreg process" in result.stderr
    assert not (run / "model.safetensors").exists()
    (run / ".genreg.lock").unlink()
    result = invoke_extend(files["model"], "--add", 1, "-o", run / "model.safetensors", "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (run / ".genreg.lock").exists()


def test_extend_checks_its_output_folder_before_any_work(files, tmp_path: Path, monkeypatch) -> None:
    """Issue 15, case 14: a folder that cannot be written is refused first, naming the cause."""
    import genreg.model.extend as extend_module

    monkeypatch.setattr(extend_module, "extend_classes", lambda *a, **k: pytest.fail("work started"))
    result = invoke_extend(files["model"], "--add", 1, "-o", tmp_path / "missing" / "out.safetensors")
    assert result.exit_code == 2 and "the folder" in result.stderr and "does not exist" in result.stderr


def test_extend_refuses_more_classes_than_memory_holds(files, tmp_path: Path) -> None:
    """Issue 15, case 17: --add 10**12 is refused naming the limit, before an embedding table is allocated."""
    result = invoke_extend(files["model"], "--add", 10**12, "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "adding 1,000,000,000,000 classes to column 'label' needs about" in result.stderr
    assert "add fewer classes at a time" in result.stderr


def test_extend_refuses_data_without_rows_of_the_new_classes(files, old_digits, tmp_path: Path) -> None:
    """Issue 16, case 9: data of the old classes only trained nothing new, yet was reported as "fine-tuned"."""
    npz = tmp_path / "old.npz"
    np.savez(npz, images=old_digits.train.images.numpy(), labels=old_digits.train.labels.numpy())
    out = tmp_path / "ten.safetensors"
    data = json.dumps({"type": "npz", "path": str(npz)})
    result = invoke_extend(files["model"], "--add", 2, "--data", data, "--epochs", 1, "--quiet", "-o", out)
    assert_user_error(result, "holds no training rows of classes 8, 9 of column 'label'", "classes 0, 1, 2")
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("spec.json", "a model file is a .safetensors file"),
        ("metrics.jsonl", "a model file is a .safetensors file"),
        ("ext.png", "a model file is a .safetensors file"),
        ("ext", "a model file is a .safetensors file"),
        ("checkpoint.safetensors", "a run folder's checkpoint, never a model file"),
    ],
)
def test_extend_overwrite_replaces_only_a_model_file(files, tmp_path: Path, name: str, says: str) -> None:
    """Found by the hostile-user tryout: `extend -o RUN/spec.json --overwrite` wrote a model over a run's spec."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.json").write_text("{}")
    if name != "spec.json":
        (run / name).write_text("keep me")
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    result = invoke_extend(files["model"], "--add", 1, "-o", run / name, "--overwrite")
    assert result.exit_code == 2 and says in result.stderr, result.output
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_empty_out_is_refused_not_taken_for_the_default(tmp_path: Path, command: str, monkeypatch) -> None:
    """Found by the hostile-user tryout: `genreg run spec.json --out ""` trained into runs/<name> silently."""
    monkeypatch.chdir(tmp_path)
    grid = ["--grid", "train.lr=1e-3"] if command == "sweep" else []
    result = invoke(command, EXAMPLE_SPEC, *grid, "--out", "")
    assert result.exit_code == 2 and "Invalid value for '--out': names no folder" in result.output
    assert not (tmp_path / "runs").exists()
