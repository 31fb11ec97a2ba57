"""The ``genreg`` command: right output on success, exit code 2 and one message (no traceback) on user errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from genreg.plugin.registry import KINDS

LIST_LINE = re.compile(r"^(?P<kind>\w+) (?P<name>\S+) +\[(?P<plugin>[^\]]+)\]  (?P<summary>.*)$")


@pytest.fixture
def invoke():
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(cli, [str(a) for a in args])

    return run


def assert_user_error(result, *fragments: str) -> None:
    """Exit code 2, one ``Error: ...`` message on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


# --------------------------------------------------------------------------- validate


def test_validate_ok(invoke, write_file, minimal_spec):
    path = write_file(minimal_spec)
    result = invoke("validate", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{path}: valid. cvae with ")
    assert "4,000 train / 1,000 test images of 1x28x28, 10 classes; 10 epochs." in result.stdout
    result = invoke("validate", path, "--set", "train.epochs=3", "--set", "model.type=vae")
    assert result.stdout.startswith(f"{path}: valid. vae with ") and result.stdout.endswith("; 3 epochs.\n")


def test_validate_print_shows_the_resolved_spec(invoke, write_file, minimal_spec):
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
def test_validate_user_errors_exit_2_without_traceback(invoke, write_file, minimal_spec, case, fragments):
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


def test_validate_non_utf8_file_is_a_user_error(invoke, write_file):
    path = write_file(b"\xff\xfe\x00\x01 binary", "binary.json")
    assert_user_error(invoke("validate", path), str(path))


# --------------------------------------------------------------------------- list and schema


def parse_listing(stdout: str) -> list[dict]:
    rows = []
    for line in stdout.splitlines():
        match = LIST_LINE.match(line)
        assert match, line
        rows.append(match.groupdict())
    return rows


def test_list_everything_sorted_by_kind_then_name(invoke):
    result = invoke("list")
    assert result.exit_code == 0, result.output
    rows = parse_listing(result.stdout)
    keys = [(KINDS.index(r["kind"]), r["name"]) for r in rows]
    assert keys == sorted(keys)
    registry = genreg.get_registry()
    assert [(r["kind"], r["name"]) for r in rows] == [(e.kind, e.name) for e in registry.entries()]
    builtin = {(r["kind"], r["name"]): r for r in rows if r["plugin"] == "builtin"}
    assert ("encoder", "mlp") in builtin and ("model", "cvae") in builtin and ("loss", "kld") in builtin
    assert builtin[("loss", "kld")]["summary"].startswith("KL(q(z|x) || N(0, I))")


def test_list_one_kind(invoke):
    result = invoke("list", "encoder")
    assert result.exit_code == 0, result.output
    rows = parse_listing(result.stdout)
    assert {r["kind"] for r in rows} == {"encoder"}
    names = [r["name"] for r in rows]
    assert names == sorted(names) == genreg.get_registry().names("encoder")
    assert {"conv", "mlp"} <= set(names)
    assert all(r["plugin"] == "builtin" for r in rows if r["name"] in ("conv", "mlp"))


def test_list_with_pattern(invoke):
    result = invoke("list", "model", "*vae*")
    assert result.exit_code == 0, result.output
    rows = parse_listing(result.stdout)
    names = [r["name"] for r in rows]
    assert names == sorted(names) == genreg.get_registry().names("model", "*vae*")
    assert {"cvae", "vae"} <= set(names) and "ae" not in names and "custom" not in names
    cvae = next(r for r in rows if r["name"] == "cvae")
    assert cvae["plugin"] == "builtin" and cvae["summary"].startswith("Conditional VAE")


def test_list_no_match_and_bad_kind(invoke):
    result = invoke("list", "loss", "zzz*")
    assert result.exit_code == 0
    assert result.stdout == "no loss matches 'zzz*'.\n"
    result = invoke("list", "encoders")
    assert result.exit_code == 2 and "'encoders' is not one of" in result.stderr


def test_schema_prints_the_json_schema(invoke):
    result = invoke("schema")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == genreg.json_schema()


def test_version(invoke):
    result = invoke("--version")
    assert result.exit_code == 0 and genreg.__version__ in result.stdout


# --------------------------------------------------------------------------- sample


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    small = {"latent_dim": 2, "encoder": {"type": "mlp", "hidden": [8]}, "decoder": {"type": "mlp", "hidden": [8]}}
    info = genreg.DataInfo((1, 6, 6), 3)
    cvae = genreg.save_model(genreg.build_model({"type": "cvae", **small}, info), folder / "cvae.safetensors")
    vae = genreg.save_model(genreg.build_model({"type": "vae", **small}, info), folder / "vae.safetensors")
    return {"cvae": cvae, "vae": vae, "folder": folder}


def test_sample_writes_a_png(invoke, model_files, tmp_path):
    out = tmp_path / "grid.png"
    result = invoke("sample", model_files["cvae"], "-n", "2", "--label", "1", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {out}\n"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "empty", "not genreg"])
def test_sample_bad_model_file_exits_2_naming_the_file(invoke, model_files, tmp_path, case):
    path = tmp_path / f"{case.replace(' ', '_')}.safetensors"
    good = model_files["cvae"].read_bytes()
    if case == "garbage":
        path.write_bytes(b"\x13\x37 this is not a safetensors file" * 4)
    elif case == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "not genreg":
        from safetensors.torch import save_file

        save_file({"weight": torch.zeros(2)}, str(path))
    out = tmp_path / "out.png"
    result = invoke("sample", path, "-o", out)
    expected = {
        "missing": "no such model file",
        "garbage": "is not a readable safetensors file",
        "truncated": "is not a readable safetensors file",
        "empty": "is not a readable safetensors file",
        "not genreg": "is a safetensors file but not a genreg one",
    }[case]
    assert_user_error(result, str(path), expected)
    assert not out.exists()


def test_sample_label_errors(invoke, model_files, tmp_path):
    out = tmp_path / "out.png"
    assert_user_error(
        invoke("sample", model_files["cvae"], "--label", "3", "-o", out), "--label 3: must be a class in 0..2"
    )
    assert_user_error(invoke("sample", model_files["vae"], "--label", "0", "-o", out), "this model is not conditional")
    assert not out.exists()


# --------------------------------------------------------------------------- a real process


def test_real_process_exits_2_without_traceback(tmp_path, write_file, minimal_spec):
    """``python -m genreg``: a spec error and a corrupt model file (both run at once to save time)."""
    minimal_spec["model"]["encoder"] = {"type": "mpl"}
    spec = write_file(minimal_spec)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 3 + b"garbage" * 20)
    commands = [
        ["validate", str(spec)],
        ["sample", str(corrupt), "-o", str(tmp_path / "out.png")],
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "genreg", *args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    results = [(p, *p.communicate(timeout=120)) for p in procs]
    for (proc, stdout, stderr), fragment in zip(
        results, [f"{spec} is invalid (1 problem):", f"{corrupt} is not a readable safetensors file"], strict=True
    ):
        assert proc.returncode == 2, (stdout, stderr)
        assert "Traceback" not in stderr and stdout == ""
        assert stderr.startswith("Error: ") and fragment in stderr
    assert "Did you mean 'mlp'?" in results[0][2]
