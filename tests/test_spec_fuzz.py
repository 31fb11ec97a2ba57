"""Fuzzing the spec: arbitrary JSON, near-valid specs, ``--set`` overrides and raw file bytes.

Every case must end in a valid spec (which then validates again to itself) or in a SpecError whose
message has one ``path: problem`` line per problem; any other exception is a bug.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genreg.errors import SpecError
from genreg.spec import apply_overrides, load_spec, read_json, validate_spec

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Valid specs to mutate: every recipe, every built-in part and the optional fields.
VALID = [
    {"model": {"type": "cvae"}, "data": {"type": "mnist-sample"}},
    {
        "name": "conv-ae",
        "seed": 3,
        "model": {
            "type": "ae",
            "latent_dim": 4,
            "encoder": {"type": "conv", "channels": [8, 16]},
            "decoder": {"type": "conv", "channels": [16, 8]},
            "losses": [{"type": "mse", "weight": 2.0}],
        },
        "data": {"type": "npz", "path": "digits.npz", "test_path": "test.npz", "binarize": "threshold"},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "optimizer": "adamw", "grad_clip": 1.0},
    },
    {
        "model": {
            "type": "custom",
            "latent_dim": 2,
            "encoder": {"type": "mlp", "hidden": [32]},
            "latent": {"type": "gaussian"},
            "decoder": {"type": "mlp", "hidden": [32]},
            "conditioner": {"type": "embedding", "dim": 4, "num_classes": 12},
            "losses": [{"type": "bce"}, {"type": "kld", "name": "kl", "schedule": {"type": "linear", "epochs": 5}}],
        },
        "data": {"type": "mnist", "root": "data", "download": False, "binarize": "dynamic"},
    },
]
VALID = [validate_spec(raw).model_dump(mode="json") for raw in VALID]  # every default filled in


def keys_and_words(value: object) -> set[str]:
    """Every key and string in ``value``: the vocabulary near-valid specs are made from."""
    if isinstance(value, dict):
        return set(value) | {w for item in value.values() for w in keys_and_words(item)}
    if isinstance(value, list):
        return {w for item in value for w in keys_and_words(item)}
    return {value} if isinstance(value, str) else set()


WORDS = sorted(set().union(*map(keys_and_words, VALID)) | {"type", "vae", "onehot", "deterministic"})
NASTY = [None, True, 0, -1, 1.5, -1e-9, 2**31, 2**64, 10**40, -(10**40), float("nan"), float("inf"), "", "x", [], {}]

keys = st.sampled_from(WORDS) | st.text(max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(WORDS)
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=25
)


def validates_or_explains(raw: object) -> None:
    """The property: a valid spec that round-trips, or a SpecError with one ``path: problem`` line per problem."""
    try:
        spec = validate_spec(raw)
    except SpecError as exc:
        head, *lines = str(exc).split("\n")
        assert head.startswith("spec is invalid (") and head.endswith(
            f"({len(lines)} problem{'s' * (len(lines) > 1)}):"
        )
        assert lines and all(line.startswith("  ") and ": " in line for line in lines), str(exc)
        return
    dumped = spec.model_dump(mode="json")
    again = validate_spec(json.loads(json.dumps(dumped))).model_dump(mode="json")
    assert json.dumps(again, sort_keys=True) == json.dumps(dumped, sort_keys=True)


def paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every path into ``value`` (dict keys and list indices), the root excluded."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    return [p for key, item in items for p in [(*prefix, key), *paths(item, (*prefix, key))]]


def mutate(spec: dict, data: st.DataObject) -> dict:
    """One to three edits of the kinds users make: delete, retype, misname, wrong value or wrong component."""
    spec = copy.deepcopy(spec)
    for _ in range(data.draw(st.integers(1, 3))):
        where = paths(spec)
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


@FUZZ
@given(json_values)
def test_arbitrary_json_is_a_spec_or_a_spec_error(raw):
    validates_or_explains(raw)


@FUZZ
@given(st.dictionaries(st.sampled_from(["model", "data", "train", "seed", "name"]) | keys, json_values, max_size=6))
def test_arbitrary_top_level_objects_are_a_spec_or_a_spec_error(raw):
    validates_or_explains(raw)


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_near_valid_specs_are_a_spec_or_a_spec_error(spec, data):
    validates_or_explains(mutate(spec, data))


@FUZZ
@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(
            st.sampled_from([".".join(map(str, p)) for p in paths(VALID[2])]) | st.text(max_size=10),
            json_values.map(json.dumps) | st.text(max_size=10),
        ).map("=".join),
        max_size=3,
    ),
)
def test_set_overrides_end_in_a_spec_or_a_spec_error(spec, overrides):
    try:
        raw = apply_overrides(spec, overrides)
    except SpecError as exc:
        assert str(exc).startswith("--set ") and "\n" not in str(exc)
        return
    validates_or_explains(raw)


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()[:200]))
def test_spec_file_bytes_are_a_spec_or_a_spec_error(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.json"
        path.write_bytes(content)
        try:
            raw = read_json(path)
        except SpecError as exc:
            assert str(path) in str(exc)
            return
    validates_or_explains(raw)


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


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("model.losses.\u00b2=1", "--set model.losses.\u00b2: 'model.losses.\u00b2' needs a list index below 1."),
        ("deep file", "nests lists or objects too deeply to be a spec."),
        ({**BASE, "seed": {1, 2}}, "a spec holds only JSON values"),
    ],
)
def test_inputs_that_once_crashed_the_reader_are_spec_errors(tmp_path, source, problem):
    overrides = []
    if isinstance(source, str) and source.startswith("model."):
        source, overrides = {**BASE, "model": {"type": "cvae", "losses": [{"type": "bce"}]}}, [source]
    elif source == "deep file":
        source = tmp_path / "deep.json"
        source.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SpecError) as caught:
        load_spec(source, overrides)
    assert problem in str(caught.value)
