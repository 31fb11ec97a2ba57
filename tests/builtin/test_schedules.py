"""Tests plugins/genreg_builtin/schedules.py: learning-rate schedules and loss-weight schedules (linear,
cyclical).

Every schedule is checked against its formula written out here, and the lr
schedules also against torch's own schedulers stepped once per optimiser step:
genreg's step s of epoch e sees progress e + s / steps_per_epoch, i.e. torch's
step k = e * steps_per_epoch + s.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import genreg
from genreg.spec import build_part
from tests.helpers import EXAMPLES

EPOCHS, STEPS = 6, 7  # a run of 6 epochs of 7 steps: 42 optimiser steps


LR = 0.01


def schedule(config: dict, epochs: int = EPOCHS):
    return build_part("schedule", config, epochs=epochs)


def genreg_lrs(config: dict) -> list[float]:
    """The lr of every step of the run, as the trainer computes it."""
    factor = schedule(config).factor
    return [LR * factor(e + s / STEPS) for e in range(EPOCHS) for s in range(STEPS)]


def torch_lrs(make_scheduler) -> list[float]:
    """The lr torch's scheduler gives each of the run's steps (read before the step, then stepped)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(EPOCHS * STEPS):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


# --------------------------------------------------------------------------- lr schedules: formulas


@pytest.mark.parametrize("progress", [0.0, 0.5, 1.0, 2.5, 3.0, 5.9])
def test_cosine_factor_is_the_formula(progress):
    low = 0.1
    expected = low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress / EPOCHS))
    assert schedule({"type": "cosine", "min_factor": low}).factor(progress) == pytest.approx(expected)
    assert schedule({"type": "cosine"}).factor(progress) == pytest.approx(0.5 * (1 + math.cos(math.pi * progress / 6)))


def test_cosine_with_warmup_rises_from_zero_then_anneals_over_the_rest():
    cosine = schedule({"type": "cosine", "warmup_epochs": 2, "min_factor": 0.2})
    assert [cosine.factor(p) for p in (0, 0.5, 1, 1.5)] == pytest.approx([0, 0.25, 0.5, 0.75])
    for p in (2, 3, 4.5, 6):
        assert cosine.factor(p) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * (p - 2) / 4)))


def test_cosine_warmup_as_long_as_the_run_never_reaches_the_cosine():
    cosine = schedule({"type": "cosine", "warmup_epochs": 8})
    assert [cosine.factor(p) for p in (0, 2, 5.5)] == pytest.approx([0, 0.25, 5.5 / 8])


@pytest.mark.parametrize(("progress", "decays"), [(0, 0), (1.4, 0), (1.5, 1), (2.9, 1), (3.0, 2), (5.99, 3)])
def test_step_factor_is_gamma_to_the_decays_so_far(progress, decays):
    step = schedule({"type": "step", "every": 1.5, "gamma": 0.5})
    assert step.factor(progress) == 0.5**decays
    assert schedule({"type": "step", "every": 1.5}).factor(progress) == pytest.approx(0.1**decays)


def test_every_schedule_answers_for_the_end_of_training():
    """Evaluations ask a loss weight's schedule for progress = inf: each gives its limit, not an error."""
    assert schedule({"type": "step", "every": 2, "gamma": 0.5}).factor(math.inf) == 0.0
    assert schedule({"type": "step", "every": 2, "gamma": 1}).factor(math.inf) == 1.0
    assert schedule({"type": "linear", "epochs": 3}, epochs=None).factor(math.inf) == 1.0
    assert schedule({"type": "cyclical", "epochs": 3}, epochs=None).factor(math.inf) == 1.0
    assert schedule({"type": "cosine", "min_factor": 0.1}).factor(math.inf) == pytest.approx(0.1)


def test_a_loss_weight_with_step_decay_is_evaluated_at_the_end_of_training():
    spec = {
        "type": "vae",
        "latent_dim": 2,
        "encoder": {"type": "mlp", "hidden": [4]},
        "decoder": {"type": "mlp", "hidden": [4]},
    }
    spec["losses"] = [
        {"type": "bce"},
        {"type": "kld", "weight": 2, "schedule": {"type": "step", "every": 1, "gamma": 0.5}},
    ]
    model = genreg.build_model(spec, genreg.DataInfo((1, 4, 4), 2))
    assert model.loss_weights(1.0) == [1.0, 1.0]
    assert model.loss_weights(math.inf) == [1.0, 0.0]
    total, terms = model.loss(torch.rand(3, 1, 4, 4))
    assert total.item() == pytest.approx(terms["bce"].item())


def test_step_decays_at_a_boundary_that_floating_point_misses():
    step = schedule({"type": "step", "every": 0.1, "gamma": 0.5})
    assert 0.3 / 0.1 < 3  # floor would say two decays
    assert step.factor(0.3) == 0.5**3
    assert step.factor(0.2999) == 0.5**2


@pytest.mark.parametrize("progress", [0, 0.3, 1, 2.9, 3, 4, 6])
def test_warmup_factor_is_linear_then_one(progress):
    warmup = schedule({"type": "warmup", "epochs": 3, "start": 0.1})
    assert warmup.factor(progress) == pytest.approx(0.1 + 0.9 * min(1, progress / 3))
    assert schedule({"type": "warmup", "epochs": 3}).factor(progress) == pytest.approx(min(1, progress / 3))


def test_one_cycle_factor_is_the_formula():
    one_cycle = schedule({"type": "one-cycle", "pct_start": 0.25, "div_factor": 10, "final_div_factor": 100})
    peak_at, low, end = 0.25 * EPOCHS, 1 / 10, 1 / 1000

    def cos_between(a: float, b: float, t: float) -> float:
        return b + (a - b) * (1 + math.cos(math.pi * t)) / 2

    assert one_cycle.factor(0) == pytest.approx(low)
    assert one_cycle.factor(peak_at) == pytest.approx(1.0)
    assert one_cycle.factor(EPOCHS) == pytest.approx(end)
    for p in (0.3, 1.0, 1.2):
        assert one_cycle.factor(p) == pytest.approx(cos_between(low, 1, p / peak_at))
    for p in (1.6, 3.0, 5.5):
        assert one_cycle.factor(p) == pytest.approx(cos_between(1, end, (p - peak_at) / (EPOCHS - peak_at)))


# --------------------------------------------------------------------------- lr schedules: torch's schedulers


def test_cosine_equals_torch_cosine_annealing():
    ours = genreg_lrs({"type": "cosine", "min_factor": 0.05})
    theirs = torch_lrs(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS * STEPS, eta_min=0.05 * LR))
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_step_equals_torch_step_lr():
    ours = genreg_lrs({"type": "step", "every": 2, "gamma": 0.3})
    theirs = torch_lrs(lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2 * STEPS, gamma=0.3))
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert len(set(ours)) == 3  # three plateaus: the comparison sees both decays


def test_warmup_equals_torch_linear_lr():
    ours = genreg_lrs({"type": "warmup", "epochs": 2, "start": 0.1})
    theirs = torch_lrs(lambda opt: torch.optim.lr_scheduler.LinearLR(opt, 0.1, 1.0, total_iters=2 * STEPS))
    assert ours == pytest.approx(theirs, rel=1e-9)


def test_one_cycle_equals_torch_one_cycle():
    """torch ends each phase one step early (at pct_start * total - 1 and total - 1), genreg continuously at
    pct_start * epochs and epochs: with total_steps one more than the run and pct_start moved to match,
    torch's phases cover exactly genreg's, so every step's lr agrees."""
    pct, total = 0.3, EPOCHS * STEPS
    ours = genreg_lrs({"type": "one-cycle", "pct_start": pct, "div_factor": 25, "final_div_factor": 1e4})
    theirs = torch_lrs(
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=LR,
            total_steps=total + 1,
            pct_start=(pct * total + 1) / (total + 1),
            anneal_strategy="cos",
            div_factor=25,
            final_div_factor=1e4,
            three_phase=False,
            cycle_momentum=False,
        )
    )
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-15)
    assert max(ours) == pytest.approx(LR, rel=1e-3) and ours[0] == pytest.approx(LR / 25)


@pytest.mark.parametrize(
    ("schedule_spec", "problem"),
    [
        ({"type": "step", "every": 0}, "train.lr_schedule.every: Input should be greater than 0"),
        ({"type": "step"}, "train.lr_schedule.every: required field is missing"),
        ({"type": "step", "every": 1, "gamma": 2}, "train.lr_schedule.gamma: Input should be less than or equal to 1"),
        ({"type": "one-cycle", "pct_start": 1}, "train.lr_schedule.pct_start: Input should be less than 1"),
        ({"type": "warmup", "epochs": 2, "strat": 0}, "train.lr_schedule.strat: unknown field"),
        ({"type": "cosin"}, "Did you mean 'cosine'?"),
    ],
)
def test_a_bad_schedule_fails_validation_naming_the_field(schedule_spec, problem):
    with pytest.raises(genreg.SpecError) as error:
        genreg.load_spec(EXAMPLES / "vae.json", [f"train.lr_schedule={json.dumps(schedule_spec)}"])
    assert problem in str(error.value)


# --------------------------------------------------------------------------- loss weights: the linear warm-up


def linear_warmup(**fields) -> object:
    """The registered ``linear`` schedule, built as a loss weight's (no run length)."""
    return build_part("schedule", {"type": "linear", **fields}, epochs=None)


def test_linear_warmup_rises_linearly_then_stays():
    warmup = linear_warmup(epochs=4)
    assert warmup.factor(0) == 0.0
    progress = [0.5, 1, 2, 3, 3.5]
    factors = [warmup.factor(p) for p in progress]
    assert factors == pytest.approx([p / 4 for p in progress])
    assert warmup.factor(4) == 1.0
    assert [warmup.factor(p) for p in (4.01, 5, 100, math.inf)] == [1.0] * 4


def test_linear_warmup_with_start():
    warmup = linear_warmup(epochs=2, start=0.2)
    assert warmup.factor(0) == pytest.approx(0.2)
    assert warmup.factor(1) == pytest.approx(0.6)
    assert warmup.factor(2) == pytest.approx(1.0)
    assert warmup.factor(7) == pytest.approx(1.0)


# --------------------------------------------------------------------------- cyclical loss weights


def cyclical(**fields) -> object:
    """The registered ``cyclical`` schedule, built as a loss weight's (no run length)."""
    return build_part("schedule", {"type": "cyclical", **fields}, epochs=None)


def cyclical_formula(p: float, period: float, ratio: float, start: float, cycles: int | None) -> float:
    if cycles is not None and p >= cycles * period:
        return 1.0
    position = (p - period * math.floor(p / period)) / period
    return start + (1 - start) * min(1.0, position / ratio)


@pytest.mark.parametrize("progress", [0, 0.5, 1, 1.99, 2, 3.7, 4, 5, 6.5, 7.9, 8, 9, 12, 100.25])
@pytest.mark.parametrize("cycles", [None, 2])
def test_cyclical_factor_is_the_formula(progress, cycles):
    schedule = cyclical(epochs=4, ratio=0.5, start=0.2, cycles=cycles)
    assert schedule.factor(progress) == pytest.approx(cyclical_formula(progress, 4, 0.5, 0.2, cycles))


def test_cyclical_restarts_each_cycle_and_stays_at_one_after_its_cycles():
    schedule = cyclical(epochs=4, cycles=2)  # ratio 0.5, start 0: rise over 2 epochs, hold 2
    assert [schedule.factor(p) for p in (0, 1, 2, 3, 4, 5, 6, 7.9)] == pytest.approx([0, 0.5, 1, 1, 0, 0.5, 1, 1])
    assert [schedule.factor(p) for p in (8, 9, 100, math.inf)] == [1.0] * 4
    assert cyclical(epochs=4).factor(9) == pytest.approx(0.5)  # without cycles: it keeps cycling
    assert cyclical(epochs=4).factor(math.inf) == 1.0  # the full weight, as model.loss's default progress


def test_a_spec_with_a_cyclical_kl_weight_trains_with_it():
    spec = genreg.load_spec(
        EXAMPLES / "vae.json", ['model.losses.1.schedule={"type": "cyclical", "epochs": 2, "ratio": 0.5}']
    )
    model = genreg.build_model(spec.model, genreg.DataInfo((1, 28, 28), 10))
    assert [model.loss_weights(p)[1] for p in (0, 0.5, 1, 1.5, 2, 2.5)] == pytest.approx([0, 0.5, 1, 1, 0, 0.5])
