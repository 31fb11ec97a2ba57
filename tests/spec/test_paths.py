"""Tests genreg/spec/paths.py: a problem is reported at its path in the spec, list indices included
(``model.encoder.hidden[1]``)."""

from __future__ import annotations

from tests.helpers import full_spec, problems

# --------------------------------------------------------------------------- errors


def test_wrong_type_is_reported_at_its_path(minimal_spec):
    minimal_spec["model"]["encoder"] = {"type": "mlp", "hidden": [64, "wide"]}
    message = problems(minimal_spec)
    assert "(1 problem)" in message
    assert "  model.encoder.hidden[1]: Input should be a valid integer" in message


def test_unknown_loss_in_a_list_is_reported_at_its_index():
    raw = full_spec()
    raw["model"]["losses"][1] = {"type": "kdl"}
    assert "  model.losses[1]: unknown loss 'kdl'. Did you mean 'kld'?" in problems(raw)


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
