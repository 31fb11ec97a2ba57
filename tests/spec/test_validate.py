"""Tests genreg/spec/validate.py: a spec is validated whole, each problem reported with its path (unknown
components with the closest name, unknown fields with the allowed ones, several problems at once); spec files
with overrides; the JSON schema. Fuzzed: any JSON is a valid spec or a SpecError with one
``path: problem`` line per problem."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import genreg
from genreg.errors import GenregError, SpecError
from genreg.plugin.registry import KINDS
from genreg.spec import TrainConfig, load_spec, validate_spec
from tests.helpers import (
    EXAMPLES,
    FUZZ,
    NASTY,
    VALID,
    WORDS,
    full_spec,
    json_paths,
    json_values,
    keys,
    needs_example_plugin,
    problems,
    validates_or_explains,
)

# --------------------------------------------------------------------------- errors


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


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("model.encoder.hiden", "activation, condition, dropout, hidden, input, norm, type"),
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


def test_a_callbacks_unknown_field_is_named_with_its_path() -> None:
    with pytest.raises(GenregError, match=r"train.callbacks\[0\].patiense: unknown field; allowed here: .*patience"):
        genreg.load_spec(EXAMPLES / "vae.json", ['train.callbacks=[{"type": "early-stopping", "patiense": 3}]'])


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


def test_load_spec_reads_overrides_and_names_the_file(write_file, minimal_spec):
    path = write_file(minimal_spec)
    spec = load_spec(path, ["train.epochs=2"])
    assert spec.train.epochs == 2 and spec.model.type == "cvae"
    with pytest.raises(SpecError) as info:
        load_spec(str(path), ["train.epochs=0"])
    assert str(info.value).startswith(f"{path} is invalid (1 problem):\n  train.epochs: ")


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


@needs_example_plugin
def test_schema_includes_the_plugin_config():
    text = json.dumps(genreg.json_schema())
    assert '"thermometer"' in text and "value of a lit entry" in text


# --------------------------------------------------------------------------- fuzzing (strategies in tests/helpers.py)


def mutate(spec: dict, data: st.DataObject) -> dict:
    """One to three edits of the kinds users make: delete, retype, misname, wrong value or wrong component."""
    spec = copy.deepcopy(spec)
    for _ in range(data.draw(st.integers(1, 3))):
        where = json_paths(spec)
        if not where:
            break
        path = data.draw(st.sampled_from(where))
        parent = spec
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        action = data.draw(st.sampled_from(["delete", "nasty", "json", "word", "rename"]))
        if action == "delete":
            del parent[last]
        elif action == "rename" and isinstance(parent, dict):
            parent[data.draw(keys)] = parent.pop(last)
        else:
            draw = {"nasty": st.sampled_from(NASTY), "json": json_values}.get(action, st.sampled_from(WORDS))
            parent[last] = data.draw(draw)
    return spec


@pytest.mark.slow
@FUZZ
@given(json_values)
def test_arbitrary_json_is_a_spec_or_a_spec_error(raw):
    validates_or_explains(raw)


@pytest.mark.slow
@FUZZ
@given(st.dictionaries(st.sampled_from(["model", "data", "train", "seed", "name"]) | keys, json_values, max_size=6))
def test_arbitrary_top_level_objects_are_a_spec_or_a_spec_error(raw):
    validates_or_explains(raw)


@pytest.mark.slow
@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_near_valid_specs_are_a_spec_or_a_spec_error(spec, data):
    validates_or_explains(mutate(spec, data))


BASE = {"model": {"type": "cvae"}, "data": {"type": "mnist-sample"}}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({**BASE, "model": {"type": ["cvae"]}}, "model: 'type' must be the name of one of the registered models: ae, "),
        ({**BASE, "model": {"type": 5}}, "model: 'type' must be the name of one of"),
        (
            {**BASE, "model": {"type": "cvae", "encoder": {"type": None}}},
            "model.encoder: 'type' must be the name of one of the registered encoders",
        ),
        ({**BASE, "model": {"type": "c\nvae"}}, "model: 'type' must be the name of one of the registered models"),
        ({**BASE, "a\nb": 1}, "  'a\\nb': unknown field; allowed here: data, model, name, seed, train"),
        ({**BASE, "seed": 2**64}, "seed: Input should be less than or equal to 4294967295"),
        ({**BASE, "seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({**BASE, "name": "run\x00one"}, "name: Value error, must not contain control characters"),
        ({**BASE, "data": {"type": "npz", "path": "x.npz", "split_seed": -1}}, "data.split_seed: Input should be "),
    ],
)
def test_cases_the_fuzzer_found_are_spec_errors(raw, problem):
    """Each of these once raised TypeError, broke the one-line-per-problem message, or validated and then
    crashed when the run started."""
    with pytest.raises(SpecError) as caught:
        validate_spec(raw)
    assert problem in str(caught.value)
    assert len(str(caught.value).split("\n")) == 2, str(caught.value)


def test_a_spec_with_thousands_of_problems_lists_fifty_and_counts_the_rest() -> None:
    """Case 16 of issue 15: a spec of a million problems printed a 100 MB error."""
    raw = {"model": {"type": "vae"}, "data": {"type": "mnist-sample"}, **{f"extra{i}": i for i in range(3000)}}
    with pytest.raises(SpecError) as caught:
        validate_spec(raw)
    lines = str(caught.value).splitlines()
    assert lines[0] == "spec is invalid (3000 problems):"
    assert len(lines) == 1 + 50 + 1 and lines[-1] == "  ... and 2950 more problems"
