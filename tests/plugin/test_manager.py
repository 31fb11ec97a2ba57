"""Tests genreg/plugin/manager.py: the installed example plugin is found through its entry point;
``GENREG_PLUGINS`` filters plugins; clashing, broken and half-registered plugins give clear messages, also
through the commands that show them (``genreg list``, ``genreg plugins``, ``genreg validate``).

Most checks run in this process. A fresh interpreter is used only where plugin discovery itself is
under test (``GENREG_PLUGINS``, fake distributions on ``PYTHONPATH``): genreg loads entry points
once per process. Each fresh interpreter costs seconds (it imports torch), so each environment gets
one, which runs every command it needs and returns their exit codes and output as JSON.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import genreg
from genreg.plugin.manager import plugin_infos
from genreg_builtin.conditioners import OneHot, OneHotConfig
from tests.helpers import CVAE_SPEC, EXAMPLE_SPEC, EXAMPLE_VERSION, fresh_env, needs_example_plugin, thermometer_cvae

pytestmark = needs_example_plugin
thermometer = pytest.importorskip("genreg_example_plugin")


# Runs in a fresh interpreter: each command of argv[1] through the real click group, in order.
DRIVER = """
import json, sys, traceback
from click.testing import CliRunner
from genreg.cli import cli

results = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(cli, args, prog_name="genreg")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    results.append({"code": result.exit_code, "stdout": result.stdout, "stderr": stderr})
print("RESULTS " + json.dumps(results))
"""


def fresh_cli(commands: list[list[str]], env: dict[str, str], cwd: Path) -> list[dict]:
    """Run ``genreg`` commands in one new interpreter; each gives code, stdout and stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(commands)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line.removeprefix("RESULTS "))


def assert_user_error(result: dict, *fragments: str) -> None:
    """Exit code 2, an ``Error:`` paragraph containing every fragment, and no traceback."""
    assert result["code"] == 2, result
    assert "Traceback" not in result["stderr"], result["stderr"]
    assert result["stderr"].startswith("Error: "), result["stderr"]
    for fragment in fragments:
        assert fragment in result["stderr"], (fragment, result["stderr"])


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("saved") / "thermo.safetensors"
    genreg.save_model(thermometer_cvae(), path)
    return path


# --------------------------------------------------------------------------- discovery


def test_registry_finds_thermometer_through_the_installed_entry_point():
    entry = genreg.get_registry().get("conditioner", "thermometer")
    assert entry.plugin == "example"
    assert entry.factory is thermometer.Thermometer
    assert entry.config_class is thermometer.ThermometerConfig
    info = next(i for i in plugin_infos() if i.name == "example")
    assert (info.distribution, info.version, info.error) == ("genreg-example-plugin", EXAMPLE_VERSION, None)
    assert info.components == ["conditioner:thermometer", "callback:hook-log"]
    assert "conditioner:thermometer" in genreg.list_components("conditioner")


# --------------------------------------------------------------------------- GENREG_PLUGINS


@pytest.fixture(scope="module")
def builtin_only(saved_model, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("builtin-only")
    commands = [
        ["sample", str(saved_model), "-o", str(out / "samples.png")],
        ["list", "conditioner"],
        ["plugins"],
    ]
    return fresh_cli(commands, fresh_env(plugins="builtin"), out)


@pytest.mark.slow
def test_genreg_plugins_builtin_hides_the_example_plugin(builtin_only):
    listing, plugins = builtin_only[1], builtin_only[2]
    assert listing["code"] == 0 and plugins["code"] == 0
    assert "onehot" in listing["stdout"] and "thermometer" not in listing["stdout"]
    assert plugins["stdout"].startswith("builtin  (genreg ") and "example" not in plugins["stdout"]


@pytest.mark.slow
def test_a_saved_model_needs_its_plugin_to_load(builtin_only, saved_model):
    assert_user_error(
        builtin_only[0],
        str(saved_model),
        "cannot rebuild the model it describes",
        "unknown conditioner 'thermometer'",
    )
    registered = re.search(r"Registered conditioners: ([^.]*)\.", builtin_only[0]["stderr"])
    assert registered and "onehot" in registered[1] and "thermometer" not in registered[1]


# --------------------------------------------------------------------------- clashing and broken plugins


def fake_distribution(site: Path, dist: str, entry_point: str, source: str) -> None:
    """An installed distribution as importlib.metadata sees it: a dist-info folder plus its module."""
    module = dist.replace("-", "_")
    info = site / f"{module}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[genreg]\n{entry_point} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


DUPE_PLUGIN = '''
from pydantic import BaseModel

import genreg


class OtherMLPConfig(BaseModel):
    """Another plugin's idea of an 'mlp' encoder."""

    width: int = 8


def other_mlp(config, *, input_shape, condition_dim):
    raise AssertionError("a name two plugins claim must never be built")


@genreg.hookimpl
def register_components(register):
    register("encoder", "mlp", other_mlp, OtherMLPConfig)
'''


BROKEN_PLUGIN = """
raise ImportError("genreg-broken needs libfoo >= 2")
"""


@pytest.fixture(scope="module")
def troubled(tmp_path_factory) -> dict[str, dict]:
    """Both troubles at once (one fresh interpreter): a plugin re-registering the built-in
    ``encoder mlp`` and a plugin whose import fails. Everything else must keep working."""
    site = tmp_path_factory.mktemp("site")
    fake_distribution(site, "genreg-dupe", "dupe", DUPE_PLUGIN)
    fake_distribution(site, "genreg-broken", "broken", BROKEN_PLUGIN)
    conv = ["--set", 'model.encoder={"type": "conv"}']
    commands = {
        "list encoder": ["list", "encoder"],
        "list": ["list"],
        "plugins": ["plugins"],
        "validate mlp": ["validate", str(CVAE_SPEC)],
        "validate conv": ["validate", str(CVAE_SPEC), *conv],
        "validate thermometer": ["validate", str(EXAMPLE_SPEC), *conv],
        "validate unknown": ["validate", str(CVAE_SPEC), *conv, "--set", "model.conditioner.type=ordinal"],
    }
    results = fresh_cli(list(commands.values()), fresh_env(pythonpath=site), site)
    return dict(zip(commands, results, strict=True))


@pytest.mark.slow
def test_duplicate_name_warns_naming_both_plugins(troubled):
    result = troubled["list encoder"]
    assert result["code"] == 0
    assert "encoder conv" in result["stdout"]
    assert "warning: encoder 'mlp' is registered by builtin and dupe; it cannot be used." in result["stderr"]


@pytest.mark.slow
def test_using_a_duplicate_name_is_an_error_naming_both_plugins(troubled):
    assert_user_error(
        troubled["validate mlp"],
        "model.encoder: encoder 'mlp' is registered by both plugins 'builtin' and 'dupe'",
        "GENREG_PLUGINS",
    )


@pytest.mark.slow
def test_other_names_keep_working_next_to_a_clash_and_a_failure(troubled):
    for key in ("validate conv", "validate thermometer"):
        assert troubled[key]["code"] == 0, troubled[key]
        assert "valid. cvae with " in troubled[key]["stdout"]


@pytest.mark.slow
def test_a_plugin_that_fails_to_import_is_reported_by_name(troubled):
    result = troubled["list"]
    assert result["code"] == 0
    for row in ("model cvae", "dataset mnist-sample", "loss kld", "conditioner thermometer"):
        assert row in result["stdout"]
    assert "warning: plugin 'broken' failed to load: ImportError: genreg-broken needs libfoo >= 2" in result["stderr"]


@pytest.mark.slow
def test_genreg_plugins_shows_the_failed_plugin(troubled):
    result = troubled["plugins"]
    assert result["code"] == 0
    lines = result["stdout"].splitlines()
    assert "broken  (genreg-broken 0.1)  FAILED: ImportError: genreg-broken needs libfoo >= 2" in lines
    assert f"example  (genreg-example-plugin {EXAMPLE_VERSION})  2 components" in lines
    assert "dupe  (genreg-dupe 0.1)  1 component" in lines


@pytest.mark.slow
def test_unknown_name_mentions_the_failed_plugin(troubled):
    assert_user_error(
        troubled["validate unknown"],
        "model.conditioner: unknown conditioner 'ordinal'.",
        "Plugin 'broken' failed to load: ImportError: genreg-broken needs libfoo >= 2",
    )


@pytest.mark.slow
def test_list_marks_a_clashing_name_with_both_plugins(troubled):
    assert "[CONFLICT: builtin, dupe]" in troubled["list encoder"]["stdout"]


class HalfRegistering:
    """A plugin whose hook registers one component, then fails."""

    @genreg.hookimpl
    def register_components(self, register):
        register("conditioner", "half", OneHot, OneHotConfig)
        raise RuntimeError("lost its config file")


def test_a_plugin_that_fails_part_way_registers_nothing():
    genreg.register_plugin(HalfRegistering(), name="half")
    try:
        registry = genreg.get_registry()
        assert "half" not in registry.names("conditioner")
        assert registry.failures["half"] == "RuntimeError: lost its config file"
        assert "onehot" in registry.names("conditioner")
    finally:
        genreg.unregister_plugin("half")
    assert "half" not in genreg.get_registry().failures
