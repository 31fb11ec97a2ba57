"""Tests genreg/cli/inspect.py: ``genreg list`` (sorted, by kind and pattern, with each component's plugin),
``genreg plugins`` (the installed plugins and their versions) and ``genreg schema``."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import genreg
from genreg.plugin.registry import KINDS
from tests.helpers import EXAMPLE_VERSION, fresh_env, invoke, needs_example_plugin

LIST_LINE = re.compile(r"^(?P<kind>\w+) (?P<name>\S+) +\[(?P<plugin>[^\]]+)\]  (?P<summary>.*)$")


# --------------------------------------------------------------------------- genreg list, plugins and schema


def parse_listing(stdout: str) -> list[dict]:
    rows = []
    for line in stdout.splitlines():
        match = LIST_LINE.match(line)
        assert match, line
        rows.append(match.groupdict())
    return rows


def test_list_everything_sorted_by_kind_then_name():
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


def test_list_one_kind():
    result = invoke("list", "encoder")
    assert result.exit_code == 0, result.output
    rows = parse_listing(result.stdout)
    assert {r["kind"] for r in rows} == {"encoder"}
    names = [r["name"] for r in rows]
    assert names == sorted(names) == genreg.get_registry().names("encoder")
    assert {"conv", "mlp"} <= set(names)
    assert all(r["plugin"] == "builtin" for r in rows if r["name"] in ("conv", "mlp"))


def test_list_with_pattern():
    result = invoke("list", "model", "*vae*")
    assert result.exit_code == 0, result.output
    rows = parse_listing(result.stdout)
    names = [r["name"] for r in rows]
    assert names == sorted(names) == genreg.get_registry().names("model", "*vae*")
    assert {"cvae", "vae"} <= set(names) and "ae" not in names and "custom" not in names
    cvae = next(r for r in rows if r["name"] == "cvae")
    assert cvae["plugin"] == "builtin" and cvae["summary"].startswith("Conditional VAE")


def test_list_no_match_and_bad_kind():
    result = invoke("list", "loss", "zzz*")
    assert result.exit_code == 0
    assert result.stdout == "no loss matches 'zzz*'.\n"
    result = invoke("list", "encoders")
    assert result.exit_code == 2 and "'encoders' is not one of" in result.stderr


@needs_example_plugin
def test_genreg_list_conditioner_shows_thermometer_with_its_plugin():
    result = invoke("list", "conditioner")
    assert result.exit_code == 0 and result.stderr == ""
    rows = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert list(rows) == genreg.get_registry().names("conditioner")
    assert {"embedding", "onehot", "thermometer"} <= set(rows)
    assert "[example]" in rows["thermometer"] and "Ordinal label vectors" in rows["thermometer"]
    assert "[builtin]" in rows["onehot"]


@pytest.mark.slow
@needs_example_plugin
def test_genreg_plugins_command_shows_the_example_plugin_and_its_version(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "genreg", "plugins"],
        env=fresh_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = f"example  (genreg-example-plugin {EXAMPLE_VERSION})  2 components"
    assert header in lines, proc.stdout
    assert lines[lines.index(header) + 1].strip() == "conditioner:thermometer, callback:hook-log"
    assert any(line.startswith("builtin  (genreg ") for line in lines)
    assert "FAILED" not in proc.stdout
    assert "warning:" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_schema_prints_the_json_schema():
    result = invoke("schema")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == genreg.json_schema()
