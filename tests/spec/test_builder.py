"""Tests genreg/spec/builder.py: the spec models built from the registry fill every default, put ``type``
first, dump and validate again to themselves, and take a part without ``type`` as the recipe's default."""

from __future__ import annotations

import json

import genreg
from genreg.spec import TrainConfig, validate_spec
from tests.helpers import problems

# --------------------------------------------------------------------------- the resolved spec


def test_minimal_spec_dump_has_every_default(minimal_spec):
    dump = validate_spec(minimal_spec).model_dump(mode="json")
    assert dump["name"] is None and dump["seed"] == 0
    assert dump["train"] == TrainConfig().model_dump(mode="json")
    assert set(dump["train"]) == set(TrainConfig.model_fields)
    assert dump["train"]["epochs"] == 10 and dump["train"]["batch_size"] == 128

    model = dump["model"]
    assert model["type"] == "cvae" and model["latent_dim"] == 16
    shared = {"type": "mlp", "activation": "relu", "norm": "none", "dropout": 0.0, "condition": "input"}
    assert model["encoder"] == {**shared, "hidden": [512, 256], "input": "raw"}
    assert model["decoder"] == {**shared, "hidden": [256, 512]}
    assert model["condition_encoder"] is True
    assert model["latent"] == {"type": "gaussian"}
    assert model["conditioner"] == [{"type": "onehot", "column": "label", "num_classes": None}]
    assert model["losses"] == [
        {"type": "bce", "weight": 1.0, "schedule": None, "name": None},
        {"type": "kld", "weight": 1.0, "schedule": None, "name": None, "free_bits": 0.0},
    ]
    assert dump["data"] == {"type": "mnist-sample", "binarize": "none", "transform": "none"}

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


def test_missing_type_lists_the_registered_names(minimal_spec):
    minimal_spec["model"] = {"type": "custom", "decoder": {"hidden": [8]}}
    assert "model.decoder: missing 'type'; registered decoders: conv, mlp" in problems(minimal_spec)


def test_a_part_without_type_tunes_the_recipe_default(minimal_spec):
    minimal_spec["model"]["decoder"] = {"hidden": [8]}
    spec = genreg.validate_spec(minimal_spec)
    assert spec.model.decoder.type == "mlp" and spec.model.decoder.hidden == [8]
