"""Tests genreg/cli/__init__.py, the ``genreg`` click group: ``--version``, and a real ``python -m genreg`` process
that exits with code 2 and one message, no traceback, on a user error."""

from __future__ import annotations

import subprocess
import sys

import pytest

import genreg
from tests.helpers import invoke


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and genreg.__version__ in result.stdout


# --------------------------------------------------------------------------- a real process


@pytest.mark.slow
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
