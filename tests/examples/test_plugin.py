"""Tests examples/plugin/, the third-party plugin package: its ``thermometer`` conditioner codes labels,
is built and validated through the registry, trains, saves and loads in a spec; the plugin guide shows it
as it is."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import genreg
from genreg.errors import AssemblyError, SpecError
from genreg.spec import validate_part
from tests.helpers import CVAE_SPEC, EXAMPLE_SPEC, ROOT, invoke, needs_example_plugin, thermometer_cvae

pytestmark = needs_example_plugin
thermometer = pytest.importorskip("genreg_example_plugin")


def test_the_guide_shows_the_example_plugin_as_it_is():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    plugin_dir = ROOT / "examples" / "plugin"
    assert (plugin_dir / "genreg_example_plugin" / "__init__.py").read_text() in guide
    assert (plugin_dir / "pyproject.toml").read_text() in guide


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
    with pytest.raises(AssemblyError, match=r"thermometer.*num_classes=5.*column has 10 classes"):
        thermometer_cvae({"type": "thermometer", "num_classes": 5})


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


@pytest.mark.slow
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
    model = thermometer_cvae({"type": "thermometer", "scale": 2.0}).eval()
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
