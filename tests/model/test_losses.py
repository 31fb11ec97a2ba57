"""Tests genreg/model/losses.py: a loss term's config (weight, schedule, a name other than ``loss``), its
weight schedule, and the warning for a warm-up longer than the run."""

from __future__ import annotations

import json
import warnings

import pydantic
import pytest

import genreg
from genreg.errors import SpecWarning
from genreg.model.losses import LossTermConfig, metric_units, objective_name, term_unit, weight_schedule, with_units
from genreg.spec.builder import builder_for
from genreg_builtin.schedules import CyclicalConfig, LinearConfig
from tests.helpers import EXAMPLES


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight": -1.0},
        {"schedule": {"type": "linear", "epochs": 0}},
        {"schedule": {"type": "linear", "epochs": 2, "start": 1.5}},
        {"schedule": {"type": "cosine", "epochs": 2}},
        {"wieght": 1.0},
    ],
)
def test_loss_term_config_rejects_bad_values(kwargs):
    term_config = builder_for().resolved_class(LossTermConfig)  # as a spec validates it: its schedule slot resolved
    with pytest.raises(pydantic.ValidationError):
        term_config(**kwargs)


def test_a_term_cannot_be_named_loss():
    """'loss' is the weighted total in metrics; a term of that name would hide it."""
    spec = {"type": "vae", "losses": [{"type": "bce", "name": "loss"}, {"type": "kld"}]}
    with pytest.raises(genreg.SpecError, match=r"losses\[0\]\.name: .*'loss' is reserved"):
        genreg.build_model(spec, genreg.DataInfo((1, 6, 6), 3))


def test_weight_schedules_validate_old_and_new_forms():
    term_config = builder_for().resolved_class(LossTermConfig)  # as a spec validates it: its schedule slot resolved
    assert isinstance(term_config(schedule={"epochs": 5}).schedule, LinearConfig)  # type omitted: linear
    assert isinstance(term_config(schedule={"type": "linear", "epochs": 5}).schedule, LinearConfig)
    term = term_config(weight=2, schedule={"type": "cyclical", "epochs": 4, "cycles": 1})
    assert isinstance(term.schedule, CyclicalConfig)
    assert [term.weight * weight_schedule(term).factor(p) for p in (0, 1, 4)] == pytest.approx([0, 1, 2])
    assert term_config(**term.model_dump()).schedule == term.schedule  # round trip keeps the type
    for bad in ({"type": "cyclical", "epochs": 4, "ratio": 0}, {"type": "cyclical", "epochs": 4, "cycles": 0}):
        with pytest.raises(pydantic.ValidationError):
            term_config(schedule=bad)


# --------------------------------------------------------------------------- the warning


def test_a_warmup_longer_than_the_run_warns_with_the_final_weight():
    overrides = ["train.epochs=10", 'model.losses.1.schedule={"type": "linear", "epochs": 20, "start": 0.1}']
    with pytest.warns(SpecWarning) as caught:
        genreg.load_spec(EXAMPLES / "vae.json", overrides)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("model.losses[1].schedule.epochs: the kld weight's warm-up takes 20 epochs")
    assert "train.epochs is 10" in message and "ends at 0.55 of its full value" in message
    assert "beta < 1 VAE (beta = 0.55 instead of 1)" in message
    assert caught[0].filename == __file__  # it points at the caller of load_spec


def test_a_cyclical_first_rise_longer_than_the_run_warns_for_any_term():
    overrides = [
        "train.epochs=3",
        "model.losses.1.schedule=null",
        'model.losses.0.schedule={"type": "cyclical", "epochs": 10, "ratio": 0.5}',
        "model.losses.0.weight=2",
    ]
    with pytest.warns(SpecWarning, match=r"model\.losses\[0\]\.schedule\.epochs: the bce weight's first rise") as w:
        genreg.load_spec(EXAMPLES / "vae.json", overrides)
    assert "takes 5 epochs but train.epochs is 3" in str(w[0].message)
    assert "ends at 0.60 of its full value (1.2 instead of 2)" in str(w[0].message)


@pytest.mark.parametrize(
    "schedule_spec",
    [
        {"type": "linear", "epochs": 5},
        {"type": "linear", "epochs": 10},  # reaches the full weight exactly as the run ends
        {"type": "cyclical", "epochs": 20, "ratio": 0.5},
        None,
    ],
)
def test_no_warning_when_the_warmup_fits_the_run(schedule_spec):
    overrides = ["train.epochs=10", f"model.losses.1.schedule={json.dumps(schedule_spec)}"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecWarning)
        spec = genreg.load_spec(EXAMPLES / "vae.json", overrides)
    assert (spec.model.losses[1].schedule is None) == (schedule_spec is None)


# --------------------------------------------------------------------------- issue 16, cases 1 and 4


class Plain:
    """A plugin term that declares nothing but its config."""

    config = LossTermConfig(name="plain")


def test_a_term_without_a_unit_gets_a_clear_default_and_a_regulariser_no_objective():
    assert term_unit(Plain()) == "(unit not declared)"
    assert objective_name([Plain()]) is None
    assert metric_units([Plain()]) == {"loss": "(unit not declared)", "plain": "(unit not declared)"}


def test_values_are_printed_with_their_units_once_per_run_of_equal_units():
    units = {"loss": "(weighted sum of mixed units)", "mse": "squared error/image", "kld": "nats/image"}
    assert with_units({"loss": 12.345, "mse": 3.0, "kld": 9.3}, units) == (
        "loss=12.35 (weighted sum of mixed units), mse=3.00 squared error/image, kld=9.30 nats/image"
    )
    same = {"loss": "nats/image", "bce": "nats/image", "kld": "nats/image"}
    assert with_units({"loss": 99.42, "bce": 85.22, "kld": 14.2}, same) == "loss=99.42, bce=85.22, kld=14.20 nats/image"


@pytest.mark.parametrize("name", ["loss", "neg_elbo", "nll"])
def test_the_names_of_the_total_and_the_objectives_are_reserved(name):
    with pytest.raises(pydantic.ValidationError, match=f"'{name}' is reserved"):
        LossTermConfig(name=name)
