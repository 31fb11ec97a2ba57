"""The trainer's side of callbacks: what a view shows, per-step calls only when asked, no effect on the weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import genreg
from genreg.errors import GenregError
from genreg.training.callbacks import RunView, metric_value
from genreg.training.runner import prepare

SMALL = ["train.epochs=2", "train.batch_size=256", "model.encoder.hidden=[32]", "model.decoder.hidden=[32]"]


def small_run() -> tuple[genreg.GenerativeModel, genreg.DataSplits, object]:
    spec = genreg.load_spec("examples/vae.json", SMALL)
    ready = prepare(spec)
    return ready.model, ready.data, spec


class Sampler:
    """Draws random numbers in every hook, as a tracker drawing sample grids does."""

    def __init__(self) -> None:
        self.steps = 0

    def on_epoch_start(self, run: RunView) -> None:
        torch.rand(1000)

    def on_epoch_end(self, run: RunView) -> None:
        with run.model.evaluating(), torch.no_grad():
            run.model.sample(16)


class PerStep(Sampler):
    def on_step(self, run: RunView) -> None:
        self.steps += 1
        assert run.step >= 1 and run.lr == pytest.approx(1e-3)
        torch.rand(10)


def weights(model: genreg.GenerativeModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_callbacks_that_draw_random_numbers_leave_the_weights_unchanged() -> None:
    results = []
    for callbacks in ([], [Sampler()], [PerStep()]):
        model, data, spec = small_run()
        genreg.train(model, data, spec.train, seed=spec.seed, progress=False, callbacks=callbacks)
        results.append(weights(model))
    for other in results[1:]:
        for key, value in results[0].items():
            assert torch.equal(value, other[key]), key


def test_on_step_is_called_once_per_step_and_only_when_defined() -> None:
    model, data, spec = small_run()
    per_step, plain = PerStep(), Sampler()
    genreg.train(model, data, spec.train, seed=spec.seed, progress=False, callbacks=[plain, per_step])
    steps_per_epoch = -(-len(data.train) // spec.train.batch_size)
    assert per_step.steps == 2 * steps_per_epoch
    assert plain.steps == 0


def test_the_view_is_read_only_and_its_copies_do_not_reach_the_run(tmp_path: Path) -> None:
    model, data, spec = small_run()
    seen = {}

    class Meddler:
        def on_epoch_end(self, run: RunView) -> None:
            run.spec["train"]["epochs"] = 99
            run.record["test"]["loss"] = -1.0
            seen["spec_epochs"] = run.spec["train"]["epochs"]
            seen["loss"] = run.metric("test.loss")
            with pytest.raises(AttributeError):
                run.epoch = 5

    resolved = {"train": {"epochs": 2}}
    history = genreg.train(model, data, spec.train, progress=False, spec=resolved, callbacks=[Meddler()]).history
    assert seen["spec_epochs"] == 2
    assert seen["loss"] == history[-1]["test"]["loss"] > 0
    assert resolved == {"train": {"epochs": 2}}


def test_a_metric_that_is_not_logged_is_named_with_those_that_are() -> None:
    record = {"epoch": 1, "train": {"loss": 1.0, "bce": 1.0}, "test": {"loss": 2.0, "bce": 2.0}}
    assert metric_value(record, "test.bce") == 2.0
    with pytest.raises(GenregError, match=r"no metric 'test.kld'.*train.loss, train.bce, test.loss, test.bce"):
        metric_value(record, "test.kld")


def test_a_stop_request_ends_the_run_after_that_epoch_and_says_why() -> None:
    model, data, spec = small_run()

    class StopAtOne:
        def on_epoch_end(self, run: RunView) -> None:
            run.request_stop("enough")
            run.request_stop("a later reason is not kept")

    result = genreg.train(model, data, spec.train, progress=False, callbacks=[StopAtOne()])
    assert [r["epoch"] for r in result.history] == [1]
    assert result.stopped == "enough"


def test_a_resumed_run_may_change_its_callbacks_but_nothing_else(tmp_path: Path) -> None:
    spec = genreg.load_spec("examples/vae.json", [*SMALL, "train.epochs=1"])
    genreg.run(spec, tmp_path, progress=False)
    more = genreg.load_spec(
        "examples/vae.json", [*SMALL, 'train.callbacks=[{"type": "early-stopping", "patience": 5}]']
    )
    result = genreg.run(more, tmp_path, resume=True, progress=False)
    assert [r["epoch"] for r in result.history] == [2]
    changed = genreg.load_spec("examples/vae.json", [*SMALL, "train.lr=0.01"])
    with pytest.raises(GenregError, match=r"train.lr; only train.epochs and train.callbacks may change"):
        genreg.run(changed, tmp_path, resume=True, progress=False)


def test_a_callbacks_unknown_field_is_named_with_its_path() -> None:
    with pytest.raises(GenregError, match=r"train.callbacks\[0\].patiense: unknown field; allowed here: .*patience"):
        genreg.load_spec("examples/vae.json", ['train.callbacks=[{"type": "early-stopping", "patiense": 3}]'])
