"""Tests genreg/spec/overrides.py: ``--set KEY=VALUE`` overrides (JSON values else strings, list indices,
errors naming the key) and reading spec files (errors naming the file and line). Fuzzed: any ``--set`` and any
file's bytes end in a valid spec or a SpecError."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genreg.errors import SpecError
from genreg.spec import apply_overrides, load_spec, read_json, validate_spec
from tests.helpers import FUZZ, VALID, full_spec, json_paths, json_values, validates_or_explains

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


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda path: path.mkdir(), "a directory"),
        (os.mkfifo, r"a named pipe \(FIFO\)"),  # was read until a writer came: `genreg validate` hung for ever
        (lambda path: path.symlink_to("/dev/zero"), "a character device"),  # read until memory ran out
    ],
)
def test_a_spec_path_that_is_not_a_regular_file_is_refused_by_its_kind(tmp_path, make, kind):
    path = tmp_path / "spec.json"
    make(path)
    with pytest.raises(SpecError, match=rf"the spec file .*spec\.json is {kind}, not a regular file"):
        read_json(path)


# --------------------------------------------------------------------------- fuzzing (strategies in tests/helpers.py)


@pytest.mark.slow
@FUZZ
@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(
            st.sampled_from([".".join(map(str, p)) for p in json_paths(VALID[2])]) | st.text(max_size=10),
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


@pytest.mark.slow
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
    ("source", "problem"),
    [
        ("model.losses.\u00b2=1", "--set model.losses.\u00b2: 'model.losses.\u00b2' needs a list index below 1."),
        ("deep file", "deep.json: nests lists or objects too deeply (more than 100 levels)."),
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


def test_a_key_given_twice_in_a_spec_file_is_refused(tmp_path: Path) -> None:
    """Case 16 of issue 15: `"epochs": 1, "epochs": 1000` silently trained 1000 epochs."""
    path = tmp_path / "twice.json"
    path.write_text(
        '{"model": {"type": "ae"}, "data": {"type": "mnist-sample"}, "train": {"epochs": 1, "epochs": 1000}}'
    )
    with pytest.raises(SpecError, match=r"twice\.json: the key 'epochs' is given twice in one object"):
        read_json(path)


# --------------------------------------------------------------------------- bounds (issue 15, cases 12 and 16)

HUGE = "1" + "0" * 5000  # Python refuses to convert an integer of over 4,300 digits (ValueError)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"model": {"type": "ae", "latent_dim": ' + HUGE + "}}", "'model.latent_dim' is an integer of 5001 digits"),
        ('{"seed": 9223372036854775808}', "'seed' is an integer of 19 digits; genreg reads integers up to 2**63 - 1"),
        ('{"model": ' + "[" * 101 + "]" * 101 + "}", "nests lists or objects too deeply (more than 100 levels)."),
        ("[" * 100_000 + "]" * 100_000, "nests lists or objects too deeply (more than 100 levels)."),
    ],
)
def test_a_spec_file_beyond_the_bounds_is_a_spec_error_naming_it(write_file, text, problem):
    path = write_file(text)
    with pytest.raises(SpecError) as caught:
        read_json(path)
    assert str(caught.value).startswith(f"{path}: ") and problem in str(caught.value)


def test_a_spec_file_too_large_is_refused_before_it_is_parsed(write_file):
    path = write_file('{"name": "' + "x" * 8_000_000 + '"}')
    with pytest.raises(SpecError, match=r"holds 8,000,001 characters of JSON; genreg reads at most 8,000,000\."):
        read_json(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (f"model.latent_dim={HUGE}", "--set model.latent_dim: the integer has 5001 digits; genreg reads integers"),
        ("model.encoder.hidden=" + "[" * 50_000, "--set model.encoder.hidden: nests lists or objects too deeply"),
        ("model.encoder.hidden=" + "[" * 101 + "]" * 101, "--set model.encoder.hidden: nests lists or objects"),
        ('model.encoder={"hidden": [' + HUGE + "]}", "--set model.encoder: 'hidden.0' is an integer of 5001 digits"),
        ("a." * 50_000 + "b=1", "a key has at most 100 parts"),
    ],
)
def test_a_set_value_beyond_the_bounds_is_a_spec_error_naming_the_key(override, message):
    with pytest.raises(SpecError) as caught:
        apply_overrides(full_spec(), [override])
    assert message in str(caught.value)
    assert len(str(caught.value)) < 400  # one short paragraph, not the value back


def test_integers_within_int64_and_100_levels_are_read(write_file):
    path = write_file('{"seed": 9223372036854775807, "deep": ' + "[" * 99 + "]" * 99 + "}")
    assert read_json(path)["seed"] == 2**63 - 1
    assert apply_overrides({}, ["seed=-9223372036854775807"]) == {"seed": -(2**63) + 1}
