"""Spec validation fills every default, reports each problem with its path, and overrides apply as documented."""

from __future__ import annotations

import json
import re

import pytest

import genreg
from genreg.errors import SpecError
from genreg.plugin.registry import KINDS
from genreg.spec import TrainConfig, apply_overrides, load_spec, read_json, validate_spec


def problems(raw) -> str:
    with pytest.raises(SpecError) as info:
        validate_spec(raw)
    return str(info.value)


def full_spec() -> dict:
    return {
        "model": {"type": "cvae", "losses": [{"type": "bce"}, {"type": "kld"}]},
        "data": {"type": "mnist-sample"},
        "train": {"epochs": 5},
    }


# --------------------------------------------------------------------------- the resolved spec


def test_minimal_spec_dump_has_every_default(minimal_spec):
    dump = validate_spec(minimal_spec).model_dump(mode="json")
    assert dump["name"] is None and dump["seed"] == 0
    assert dump["train"] == TrainConfig().model_dump(mode="json")
    assert set(dump["train"]) == set(TrainConfig.model_fields)
    assert dump["train"]["epochs"] == 10 and dump["train"]["batch_size"] == 128

    model = dump["model"]
    assert model["type"] == "cvae" and model["latent_dim"] == 16
    assert model["encoder"] == {"type": "mlp", "hidden": [512, 256], "activation": "relu", "condition": "input"}
    assert model["decoder"] == {"type": "mlp", "hidden": [256, 512], "activation": "relu", "condition": "input"}
    assert model["condition_encoder"] is True
    assert model["latent"] == {"type": "gaussian"}
    assert model["conditioner"] == [{"type": "onehot", "column": "label", "num_classes": None}]
    assert model["losses"] == [
        {"type": "bce", "weight": 1.0, "schedule": None, "name": None},
        {"type": "kld", "weight": 1.0, "schedule": None, "name": None, "free_bits": 0.0},
    ]
    assert dump["data"] == {"type": "mnist-sample", "binarize": "none"}

    # Every field of every registered part's config class is present, "type" first.
    registry = genreg.get_registry()
    parts = [(k, model[k]) for k in ("encoder", "latent", "decoder")] + [("loss", term) for term in model["losses"]]
    parts += [("conditioner", part) for part in model["conditioner"]]
    parts += [("model", model), ("dataset", dump["data"])]
    for kind, part in parts:
        assert list(part)[0] == "type"
        own = {"column"} if kind == "conditioner" else set()  # the column a conditioner reads is genreg's key
        assert set(part) == {"type", *own, *registry.get(kind, part["type"]).config_class.model_fields}, kind


def test_dump_revalidates_to_the_same_dump(minimal_spec):
    dump = validate_spec(minimal_spec).model_dump(mode="json")
    again = validate_spec(json.loads(json.dumps(dump))).model_dump(mode="json")
    assert again == dump


def test_schedules_and_swapped_parts_survive_the_round_trip():
    raw = {
        "name": "x",
        "model": {
            "type": "custom",
            "latent_dim": 3,
            "encoder": {"type": "conv", "channels": [4]},
            "latent": {"type": "deterministic"},
            "decoder": {"type": "conv", "channels": [4]},
            "conditioner": {"type": "embedding", "dim": 2},
            "losses": [{"type": "mse", "schedule": {"type": "linear", "epochs": 2, "start": 0.5}, "name": "rec"}],
        },
        "data": {"type": "npz", "path": "some.npz"},
    }
    dump = validate_spec(raw).model_dump(mode="json")
    assert dump["model"]["losses"][0]["schedule"] == {"type": "linear", "epochs": 2.0, "start": 0.5}
    assert dump["model"]["encoder"] == {
        "type": "conv",
        "channels": [4],
        "features": 256,
        "activation": "relu",
        "condition": "input",
    }
    assert validate_spec(dump).model_dump(mode="json") == dump


# --------------------------------------------------------------------------- errors


def test_wrong_type_is_reported_at_its_path(minimal_spec):
    minimal_spec["model"]["encoder"] = {"type": "mlp", "hidden": [64, "wide"]}
    message = problems(minimal_spec)
    assert "(1 problem)" in message
    assert "  model.encoder.hidden[1]: Input should be a valid integer" in message


@pytest.mark.parametrize(
    ("where", "typo", "suggestion", "listing"),
    [
        ("model.encoder", "mpl", "mlp", "Registered encoders: conv, mlp."),
        ("model", "cvea", "cvae", "Registered models: "),
        ("data", "mnist-smaple", "mnist-sample", "Registered datasets: "),
    ],
)
def test_unknown_component_suggests_the_closest_name(minimal_spec, where, typo, suggestion, listing):
    if where == "model.encoder":
        minimal_spec["model"]["encoder"] = {"type": typo}
    else:
        minimal_spec[where]["type"] = typo
    message = problems(minimal_spec)
    kind = {"model.encoder": "encoder", "model": "model", "data": "dataset"}[where]
    assert f"  {where}: unknown {kind} '{typo}'. Did you mean '{suggestion}'?" in message
    assert listing in message


def test_unknown_loss_in_a_list_is_reported_at_its_index():
    raw = full_spec()
    raw["model"]["losses"][1] = {"type": "kdl"}
    assert "  model.losses[1]: unknown loss 'kdl'. Did you mean 'kld'?" in problems(raw)


def test_build_model_validates_a_raw_model_spec():
    with pytest.raises(SpecError) as info:
        genreg.build_model({"type": "vae", "encoder": {"type": "mlp", "hiden": [3]}}, genreg.DataInfo((1, 8, 8), 3))
    assert "encoder.hiden: unknown field; allowed here: activation, condition, hidden, type" in str(info.value)


def test_missing_type_lists_the_registered_names(minimal_spec):
    minimal_spec["model"] = {"type": "custom", "decoder": {"hidden": [8]}}
    assert "model.decoder: missing 'type'; registered decoders: conv, mlp" in problems(minimal_spec)


def test_a_part_without_type_tunes_the_recipe_default(minimal_spec):
    minimal_spec["model"]["decoder"] = {"hidden": [8]}
    spec = genreg.validate_spec(minimal_spec)
    assert spec.model.decoder.type == "mlp" and spec.model.decoder.hidden == [8]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("model.encoder.hiden", "activation, condition, hidden, type"),
        ("train.hiden", ", ".join(sorted(TrainConfig.model_fields))),
        ("hiden", "data, model, name, seed, train"),
        ("model.losses[1].schedule.hiden", "epochs, start, type"),
    ],
)
def test_extra_field_is_named_with_the_allowed_ones(path, allowed):
    raw = full_spec()
    if path == "model.encoder.hiden":
        raw["model"]["encoder"] = {"type": "mlp", "hiden": [8]}
    elif path == "train.hiden":
        raw["train"]["hiden"] = 1
    elif path == "hiden":
        raw["hiden"] = 1
    else:
        raw["model"]["losses"][1]["schedule"] = {"type": "linear", "epochs": 2, "hiden": 1}
    message = problems(raw)
    assert "(1 problem)" in message
    assert f"\n  {path}: unknown field; allowed here: {allowed}" in message


def test_bad_values_are_reported_at_their_paths():
    raw = full_spec()
    raw["train"]["epochs"] = 0
    assert "  train.epochs: Input should be greater than or equal to 1" in problems(raw)
    raw = full_spec()
    raw["model"]["losses"][1]["weight"] = -0.5
    assert "  model.losses[1].weight: Input should be greater than or equal to 0" in problems(raw)
    raw = full_spec()
    raw["model"]["latent_dim"] = 0
    assert "  model.latent_dim: Input should be greater than or equal to 1" in problems(raw)


def test_several_problems_are_reported_at_once():
    raw = full_spec()
    raw["model"]["encoder"] = {"type": "mlp", "hidden": [64, "wide"]}
    raw["model"]["losses"][1]["weight"] = -1
    raw["data"]["type"] = "mnsit"
    raw["train"] = {"epochs": 0, "lr": "fast"}
    message = problems(raw)
    assert message.startswith("spec is invalid (5 problems):\n")
    for path in ("model.encoder.hidden[1]", "model.losses[1].weight", "data", "train.epochs", "train.lr"):
        assert f"\n  {path}: " in message, path


def test_missing_required_fields():
    assert "  model: required field is missing" in problems({"data": {"type": "mnist-sample"}})
    message = problems({"model": {"type": "custom"}, "data": {"type": "mnist-sample"}})
    for field in ("latent_dim", "encoder", "latent", "decoder", "losses"):
        assert f"  model.{field}: required field is missing" in message


def test_a_spec_must_be_an_object():
    assert "(top level)" in problems([1, 2])


@pytest.mark.parametrize("recipe", ["cvae", "custom"])
def test_an_empty_loss_list_is_rejected(recipe):
    raw = full_spec()
    raw["model"]["losses"] = []
    if recipe == "custom":
        parts = {"encoder": {"type": "mlp"}, "latent": {"type": "gaussian"}, "decoder": {"type": "mlp"}}
        raw["model"].update(type="custom", latent_dim=2, **parts)
    assert "  model.losses: List should have at least 1 item" in problems(raw)


def test_an_extra_field_does_not_hide_other_problems_in_the_same_object():
    raw = full_spec()
    raw["model"]["encoder"] = {"type": "mlp", "hidden": [64, "wide"], "hiden": 1}
    raw["train"]["hiden"] = 1
    message = problems(raw)
    assert "(3 problems)" in message
    assert "  model.encoder.hiden: unknown field" in message
    assert "  model.encoder.hidden[1]: Input should be a valid integer" in message
    assert "  train.hiden: unknown field" in message


# --------------------------------------------------------------------------- overrides


def test_override_sets_a_nested_value_without_touching_the_input(minimal_spec):
    out = apply_overrides(minimal_spec, ["train.epochs=3", "seed=7"])
    assert out["train"] == {"epochs": 3} and out["seed"] == 7
    assert "train" not in minimal_spec and "seed" not in minimal_spec
    assert validate_spec(out).train.epochs == 3


def test_override_indexes_lists():
    out = apply_overrides(full_spec(), ["model.losses.1.weight=0.5"])
    assert out["model"]["losses"] == [{"type": "bce"}, {"type": "kld", "weight": 0.5}]
    assert validate_spec(out).model.losses[1].weight == 0.5


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("model.encoder.hidden=[64,32]", ("model", "encoder", "hidden"), [64, 32]),
        ('model.conditioner={"type": "embedding"}', ("model", "conditioner"), {"type": "embedding"}),
        ("train.grad_clip=null", ("train", "grad_clip"), None),
        ("train.lr=1e-4", ("train", "lr"), 1e-4),
        ("name=my run", ("name",), "my run"),
        ("train.device=cpu", ("train", "device"), "cpu"),
        ("name=a=b", ("name",), "a=b"),
        ("name=", ("name",), ""),
        ('name="42"', ("name",), "42"),
        ("name=42", ("name",), 42),
    ],
)
def test_override_values_are_json_else_strings(minimal_spec, override, key, value):
    node = apply_overrides(minimal_spec, [override])
    for part in key:
        node = node[part]
    assert node == value and type(node) is type(value)


def test_later_overrides_win_and_overrides_then_validate(minimal_spec):
    out = apply_overrides(minimal_spec, ["train.epochs=3", "train.epochs=4"])
    assert out["train"]["epochs"] == 4
    with pytest.raises(SpecError, match="model.encoder.hidden"):
        validate_spec(apply_overrides(minimal_spec, ['model.encoder={"type": "mlp", "hidden": "wide"}']))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs", "--set 'train.epochs': expected KEY=VALUE, e.g. train.epochs=3."),
        ("=3", "--set '=3': expected KEY=VALUE"),
        ("model.losses.5.weight=1", "--set model.losses.5.weight: 'model.losses.5' needs a list index below 2."),
        ("model.losses.x.weight=1", "'model.losses.x' needs a list index below 2"),
        ("model.losses.-1.weight=1", "'model.losses.-1' needs a list index below 2"),
        ("train.epochs.x=1", "--set train.epochs.x: 'train.epochs' is not an object or a list."),
    ],
)
def test_malformed_overrides_are_spec_errors(override, message):
    with pytest.raises(SpecError) as info:
        apply_overrides(full_spec(), [override])
    assert message in str(info.value)


# --------------------------------------------------------------------------- schema


def test_json_schema_names_every_registered_component_and_train_field():
    schema = genreg.json_schema()
    json.dumps(schema)  # plain JSON
    defs = schema["$defs"]

    tagged = set()
    for definition in defs.values():
        type_field = definition.get("properties", {}).get("type", {})
        if "const" in type_field and type_field.get("description", "").startswith("registered "):
            tagged.add((type_field["description"].split()[1], type_field["const"]))
    registry = genreg.get_registry()
    expected = {(kind, name) for kind in KINDS for name in registry.names(kind)}
    assert expected <= tagged
    for kind in ("encoder", "decoder", "dataset", "model"):
        assert {n for k, n in tagged if k == kind} == set(registry.names(kind))

    assert set(schema["properties"]["model"]["discriminator"]["mapping"]) == set(registry.names("model"))
    assert set(schema["properties"]["data"]["discriminator"]["mapping"]) == set(registry.names("dataset"))
    assert {"mlp", "conv"} <= set(registry.names("encoder"))
    assert {"mnist-sample", "mnist", "fashion-mnist", "npz"} <= set(registry.names("dataset"))
    assert {"ae", "vae", "cvae", "custom"} <= set(registry.names("model"))

    train = defs[schema["properties"]["train"]["$ref"].rsplit("/", 1)[-1]]
    assert set(train["properties"]) == set(TrainConfig.model_fields)
    assert train["properties"]["epochs"]["minimum"] == 1
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"model", "data"}


# --------------------------------------------------------------------------- files


def test_read_json_names_the_file_and_line(write_file):
    path = write_file('{\n  "model": {"type": "cvae"},\n  "data": {"type": "mnist-sample"},,\n}\n')
    with pytest.raises(SpecError) as info:
        read_json(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not valid JSON: ")
    assert "at line 3, column" in message


def test_read_json_missing_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(SpecError, match=r"cannot read spec file .*nope\.json: No such file or directory"):
        read_json(path)


def test_read_json_binary_file_is_a_spec_error(write_file):
    path = write_file(b"\xff\xfe\x00 not json", "binary.json")
    with pytest.raises(SpecError, match="binary.json"):
        read_json(path)


def test_load_spec_reads_overrides_and_names_the_file(write_file, minimal_spec):
    path = write_file(minimal_spec)
    spec = load_spec(path, ["train.epochs=2"])
    assert spec.train.epochs == 2 and spec.model.type == "cvae"
    with pytest.raises(SpecError) as info:
        load_spec(str(path), ["train.epochs=0"])
    assert str(info.value).startswith(f"{path} is invalid (1 problem):\n  train.epochs: ")


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("train", "lr", "inf"),
        ("train", "grad_clip", "inf"),
        ("train", "weight_decay", "nan"),
        ("loss", "weight", "inf"),
    ],
)
def test_infinite_or_nan_numbers_are_refused(section: str, field: str, value: str) -> None:
    spec = {"model": {"type": "vae"}, "data": {"type": "mnist-sample"}}
    if section == "train":
        spec["train"], path = {field: float(value)}, f"train.{field}"
    else:
        spec["model"]["losses"], path = [{"type": "bce", field: float(value)}], f"model.losses[0].{field}"
    with pytest.raises(SpecError, match=rf"{re.escape(path)}: Input should be a finite number"):
        genreg.validate_spec(spec)
