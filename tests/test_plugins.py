"""Plugins: the installed example plugin is found through its entry point and works in specs, in
Python and in saved files; clashing, broken and filtered-out plugins give clear messages.

Most checks run in this process. A fresh interpreter is used only where plugin discovery itself is
under test (``GENREG_PLUGINS``, fake distributions on ``PYTHONPATH``): genreg loads entry points
once per process. Each fresh interpreter costs seconds (it imports torch), so each environment gets
one, which runs every command it needs and returns their exit codes and output as JSON.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from genreg.errors import AssemblyError, SpecError, UnknownComponentError
from genreg.plugin.manager import plugin_infos
from genreg.spec import validate_part
from genreg_builtin.conditioners import OneHot, OneHotConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SPEC = ROOT / "examples" / "plugin" / "cvae_thermometer.json"
CVAE_SPEC = ROOT / "examples" / "cvae.json"

try:
    EXAMPLE_VERSION = metadata.version("genreg-example-plugin")
except metadata.PackageNotFoundError:
    pytest.skip("the example plugin is not installed: pip install -e examples/plugin", allow_module_level=True)
if "example" not in os.environ.get("GENREG_PLUGINS", "example").split(","):
    pytest.skip("GENREG_PLUGINS excludes the example plugin", allow_module_level=True)

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


def fresh_env(pythonpath: Path | None = None, plugins: str | None = None) -> dict[str, str]:
    """This environment, with only the plugin-related variables we choose."""
    env = {k: v for k, v in os.environ.items() if k not in ("GENREG_PLUGINS", "PYTHONPATH")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), os.environ.get("PYTHONPATH")]))
    elif "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if plugins is not None:
        env["GENREG_PLUGINS"] = plugins
    return env


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


def invoke(*args: str):
    """``genreg ARGS`` in this process (the plugins this process discovered)."""
    result = CliRunner().invoke(cli, list(args), prog_name="genreg")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def small_model(conditioner: dict | None = None) -> genreg.GenerativeModel:
    """A small cVAE on 28x28 digits with the thermometer conditioner (fast to build and run)."""
    spec = genreg.load_spec(
        EXAMPLE_SPEC, ["model.latent_dim=4", "model.encoder.hidden=[32]", "model.decoder.hidden=[32]"]
    )
    model_spec = spec.model.model_dump(mode="json")
    if conditioner is not None:
        model_spec["conditioner"] = conditioner
    return genreg.build_model(model_spec, genreg.DataInfo((1, 28, 28), 10))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("saved") / "thermo.safetensors"
    genreg.save_model(small_model(), path)
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


def test_genreg_list_conditioner_shows_thermometer_with_its_plugin():
    result = invoke("list", "conditioner")
    assert result.exit_code == 0 and result.stderr == ""
    rows = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert list(rows) == genreg.get_registry().names("conditioner")
    assert {"embedding", "onehot", "thermometer"} <= set(rows)
    assert "[example]" in rows["thermometer"] and "Ordinal label vectors" in rows["thermometer"]
    assert "[builtin]" in rows["onehot"]


def test_schema_includes_the_plugin_config():
    text = json.dumps(genreg.json_schema())
    assert '"thermometer"' in text and "value of a lit entry" in text


def test_the_guide_shows_the_example_plugin_as_it_is():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    plugin_dir = ROOT / "examples" / "plugin"
    assert (plugin_dir / "genreg_example_plugin" / "__init__.py").read_text() in guide
    assert (plugin_dir / "pyproject.toml").read_text() in guide


# --------------------------------------------------------------------------- registry API


def test_names_match_a_pattern_sorted():
    registry = genreg.get_registry()
    assert registry.names("model", "*vae*") == ["cvae", "vae"]
    conditioners = registry.names("conditioner")
    assert conditioners == sorted(conditioners) and {"onehot", "thermometer"} <= set(conditioners)
    assert registry.names("conditioner", "x*") == []


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownComponentError) as info:
        genreg.get_registry().get("conditioner", "thermometr")
    message = str(info.value)
    assert "unknown conditioner 'thermometr'" in message
    assert "Did you mean 'thermometer'?" in message
    assert f"Registered conditioners: {', '.join(genreg.get_registry().names('conditioner'))}." in message


def test_cli_unknown_name_exits_2_with_a_suggestion():
    result = invoke("validate", str(EXAMPLE_SPEC), "--set", "model.conditioner.type=thermometr")
    assert_user_error(
        {"code": result.exit_code, "stderr": result.stderr},
        "model.conditioner: unknown conditioner 'thermometr'. Did you mean 'thermometer'?",
    )


# --------------------------------------------------------------------------- the component itself


def test_thermometer_codes_for_a_few_labels():
    conditioner = thermometer.Thermometer(thermometer.ThermometerConfig(), num_classes=4)
    assert conditioner.dim == conditioner.num_classes == 4
    codes = conditioner(torch.tensor([0, 2, 3, 2]))
    assert codes.dtype == torch.float32
    expected = [[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0]]
    assert torch.equal(codes, torch.tensor(expected, dtype=torch.float32))


def test_thermometer_built_by_the_registry_honours_scale_and_num_classes():
    config = validate_part("conditioner", {"type": "thermometer", "scale": 0.5, "num_classes": 6})
    conditioner = genreg.get_registry().build("conditioner", config, num_classes=3)
    assert isinstance(conditioner, thermometer.Thermometer)
    assert conditioner.dim == 6
    assert conditioner(torch.tensor([1])).tolist() == [[0.5, 0.5, 0, 0, 0, 0]]


def test_thermometer_rejects_fewer_classes_than_the_dataset():
    with pytest.raises(AssemblyError, match=r"thermometer.*num_classes=5.*labels up to 9"):
        small_model({"type": "thermometer", "num_classes": 5})


@pytest.mark.parametrize(
    ("conditioner", "fragments"),
    [
        ({"type": "thermometer", "scal": 2}, ["unknown field", "scal", "num_classes, scale"]),
        ({"type": "thermometer", "scale": 0}, ["scale", "greater than 0"]),
        ({"type": "thermometer", "num_classes": 0}, ["num_classes", "greater than or equal to 1"]),
    ],
)
def test_thermometer_config_is_validated_with_the_spec(conditioner, fragments):
    raw = json.loads(EXAMPLE_SPEC.read_text())
    raw["model"]["conditioner"] = conditioner
    with pytest.raises(SpecError) as info:
        genreg.validate_spec(raw)
    message = str(info.value)
    assert "(1 problem)" in message and "model.conditioner" in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# --------------------------------------------------------------------------- in a spec, trained, saved, loaded


def key_paths(value: object, prefix: str = "") -> set[str]:
    """Every ``a.b.c`` key path of nested dicts (the shape of a spec, not its values)."""
    if not isinstance(value, dict):
        return set()
    return {f"{prefix}{k}" for k in value} | {p for k, v in value.items() for p in key_paths(v, f"{prefix}{k}.")}


def test_example_spec_validates_and_is_quick():
    spec = genreg.load_spec(EXAMPLE_SPEC)
    assert spec.model.type == "cvae" and spec.data.type == "mnist-sample"
    (conditioner,) = spec.model.conditioner
    assert conditioner.type == "thermometer" and conditioner.scale == 1.0 and conditioner.column == "label"
    assert spec.train.epochs <= 10
    assert key_paths(json.loads(EXAMPLE_SPEC.read_text())) == key_paths(json.loads(CVAE_SPEC.read_text()))
    result = invoke("validate", str(EXAMPLE_SPEC))
    assert result.exit_code == 0
    assert result.stdout.startswith(f"{EXAMPLE_SPEC}: valid. cvae with ")
    assert result.stdout.strip().endswith(f"10 classes; {spec.train.epochs} epochs.")


def test_spec_with_thermometer_trains_saves_and_loads_again(tmp_path):
    # 300 real digits of every class (mnist-sample is ordered by class) as an npz dataset keep
    # one epoch well under a second.
    sample = genreg.load_data(genreg.load_spec(EXAMPLE_SPEC).data)
    subset = torch.arange(0, len(sample.train), 13)[:300]
    images, labels = sample.train.images[subset], sample.train.labels[subset]
    assert labels.unique().tolist() == list(range(10))
    data_file = tmp_path / "digits.npz"
    np.savez(data_file, images=images[:, 0].numpy(), labels=labels.numpy())
    overrides = [
        f"data={json.dumps({'type': 'npz', 'path': str(data_file)})}",
        "model.encoder.hidden=[64]",
        "model.decoder.hidden=[64]",
        "train.epochs=1",
        "train.batch_size=50",
        "train.device=cpu",
    ]
    spec = genreg.load_spec(EXAMPLE_SPEC, overrides)
    result = genreg.run(spec, tmp_path / "run", progress=False)

    assert len(result.history) == 1
    assert all(np.isfinite(v) for v in result.history[0]["test"].values())
    saved_spec = json.loads((tmp_path / "run" / "spec.json").read_text())
    assert saved_spec["model"]["conditioner"] == [
        {"type": "thermometer", "column": "label", "num_classes": 10, "scale": 1.0}
    ]

    loaded = genreg.load_model(tmp_path / "run")
    assert isinstance(loaded.conditioner.part("label"), thermometer.Thermometer)
    images, labels = sample.test.images[:16], sample.test.labels[:16]
    result.model.eval()
    assert torch.equal(loaded.reconstruct(images, labels), result.model.reconstruct(images, labels))


def test_save_model_then_load_model_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = small_model({"type": "thermometer", "scale": 2.0}).eval()
    genreg.save_model(model, tmp_path / "scaled.safetensors")
    loaded = genreg.load_model(tmp_path / "scaled.safetensors")
    # The saved spec resolves num_classes (null: the dataset's) to the number it was built with.
    (part,), (loaded_part,) = model.conditioner.parts, loaded.conditioner.parts
    assert part.config.num_classes is None and loaded_part.config.num_classes == 10
    assert loaded_part.config.scale == 2.0 and loaded_part.dim == 10
    assert loaded.spec["conditioner"] == [{"type": "thermometer", "column": "label", "num_classes": 10, "scale": 2.0}]
    # The codes are rebuilt from the config, not stored with the weights.
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert not any("codes" in key for key in model.state_dict())
    x, labels = torch.rand(6, 1, 28, 28), torch.tensor([0, 1, 4, 5, 8, 9])
    assert torch.equal(loaded.reconstruct(x, labels), model.reconstruct(x, labels))
    z = torch.randn(6, 4)
    assert torch.equal(loaded.decode(z, labels), model.decode(z, labels))
    # Different labels change the output: the condition really reaches the decoder.
    assert not torch.equal(model.decode(z, labels), model.decode(z, labels.flip(0)))


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


def test_genreg_plugins_builtin_hides_the_example_plugin(builtin_only):
    listing, plugins = builtin_only[1], builtin_only[2]
    assert listing["code"] == 0 and plugins["code"] == 0
    assert "onehot" in listing["stdout"] and "thermometer" not in listing["stdout"]
    assert plugins["stdout"].startswith("builtin  (genreg ") and "example" not in plugins["stdout"]


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


def test_duplicate_name_warns_naming_both_plugins(troubled):
    result = troubled["list encoder"]
    assert result["code"] == 0
    assert "encoder conv" in result["stdout"]
    assert "warning: encoder 'mlp' is registered by builtin and dupe; it cannot be used." in result["stderr"]


def test_using_a_duplicate_name_is_an_error_naming_both_plugins(troubled):
    assert_user_error(
        troubled["validate mlp"],
        "model.encoder: encoder 'mlp' is registered by both plugins 'builtin' and 'dupe'",
        "GENREG_PLUGINS",
    )


def test_other_names_keep_working_next_to_a_clash_and_a_failure(troubled):
    for key in ("validate conv", "validate thermometer"):
        assert troubled[key]["code"] == 0, troubled[key]
        assert "valid. cvae with " in troubled[key]["stdout"]


def test_a_plugin_that_fails_to_import_is_reported_by_name(troubled):
    result = troubled["list"]
    assert result["code"] == 0
    for row in ("model cvae", "dataset mnist-sample", "loss kld", "conditioner thermometer"):
        assert row in result["stdout"]
    assert "warning: plugin 'broken' failed to load: ImportError: genreg-broken needs libfoo >= 2" in result["stderr"]


def test_genreg_plugins_shows_the_failed_plugin(troubled):
    result = troubled["plugins"]
    assert result["code"] == 0
    lines = result["stdout"].splitlines()
    assert "broken  (genreg-broken 0.1)  FAILED: ImportError: genreg-broken needs libfoo >= 2" in lines
    assert f"example  (genreg-example-plugin {EXAMPLE_VERSION})  2 components" in lines
    assert "dupe  (genreg-dupe 0.1)  1 component" in lines


def test_unknown_name_mentions_the_failed_plugin(troubled):
    assert_user_error(
        troubled["validate unknown"],
        "model.conditioner: unknown conditioner 'ordinal'.",
        "Plugin 'broken' failed to load: ImportError: genreg-broken needs libfoo >= 2",
    )


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


def test_list_marks_a_clashing_name_with_both_plugins(troubled):
    assert "[CONFLICT: builtin, dupe]" in troubled["list encoder"]["stdout"]


def test_validate_catches_assembly_errors_and_run_leaves_no_folder(tmp_path):
    spec = str(EXAMPLE_SPEC)
    too_few = ["--set", "model.conditioner.num_classes=3"]
    result = invoke("validate", spec, *too_few)
    assert result.exit_code == 2 and "num_classes=3" in result.output
    result = invoke("run", spec, *too_few, "--out", str(tmp_path / "run"), "--quiet")
    assert result.exit_code == 2 and "num_classes=3" in result.output
    assert not (tmp_path / "run").exists()
