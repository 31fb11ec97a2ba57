"""Tests genreg/training/callbacks.py, the trainer's side of callbacks: every hook in order, per-step calls
only when asked, what a view shows (read only), stop requests, and no effect on the weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import genreg
from genreg.errors import GenregError
from genreg.files.model_files import CHECKPOINT_FORMAT, read_metadata
from genreg.files.run_folder import RunFolder
from genreg.training.callbacks import RunView, metric_value
from genreg.training.runner import prepare
from tests.helpers import EXAMPLES, ae_with_callbacks, needs_example_plugin

SMALL = ["train.epochs=2", "train.batch_size=256", "model.encoder.hidden=[32]", "model.decoder.hidden=[32]"]


def small_run() -> tuple[genreg.GenerativeModel, genreg.DataSplits, object]:
    spec = genreg.load_spec(EXAMPLES / "vae.json", SMALL)
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


@pytest.mark.slow
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


def hooks_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "hooks.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_third_party_callback_sees_every_hook_in_order(tmp_path: Path) -> None:
    assert genreg.get_registry().get("callback", "hook-log").plugin == "example"
    result = genreg.run(ae_with_callbacks(3, [{"type": "hook-log"}]), tmp_path, progress=False)
    calls = hooks_of(tmp_path)
    per_epoch = [(hook, e) for e in (1, 2, 3) for hook in ("on_epoch_start", "on_checkpoint", "on_epoch_end")]
    assert [(c["hook"], c["epoch"]) for c in calls] == [("on_run_start", 0), *per_epoch, ("on_run_end", 3)]
    logged = [c["test_loss"] for c in calls if c["hook"] == "on_epoch_end"]
    assert logged == [r["test"]["loss"] for r in result.history]
    assert calls[-1]["stopped"] is None and "stopped" not in result.history[-1]


@needs_example_plugin
def test_on_step_is_called_only_when_a_callback_defines_it(tmp_path: Path) -> None:
    genreg.run(ae_with_callbacks(1, [{"type": "hook-log", "steps": True}]), tmp_path, progress=False)
    steps = [c["step"] for c in hooks_of(tmp_path) if c["hook"] == "on_step"]
    assert steps == list(range(1, 5))  # 4,000 training images in batches of 1,000
    assert [c["lr"] for c in hooks_of(tmp_path) if c["hook"] == "on_step"] == [1e-3] * 4


@pytest.mark.slow
def test_a_stop_request_ends_the_run_cleanly_and_it_resumes_to_the_same_weights(tmp_path: Path) -> None:
    stopped = genreg.run(
        ae_with_callbacks(4, [{"type": "hook-log", "stop_after": 2}]), tmp_path / "run", progress=False
    )
    assert stopped.stopped == "hook-log: stop_after=2"
    assert [r["epoch"] for r in RunFolder(tmp_path / "run").read_metrics()] == [1, 2]
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert read_metadata(tmp_path / "run" / RunFolder.CHECKPOINT, CHECKPOINT_FORMAT)["genreg.epoch"] == "2"

    go_on = ae_with_callbacks(4, [{"type": "hook-log"}])
    resumed = genreg.run(go_on, tmp_path / "run", resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [3, 4]
    assert [r["epoch"] for r in RunFolder(tmp_path / "run").read_metrics()] == [1, 2, 3, 4]
    second = hooks_of(tmp_path / "run")[8:]  # the stopped run logged 8 calls
    assert second[0] == {"hook": "on_run_start", "epoch": 0, "epochs": 4, "resumed_after": 2}
    assert [c["epoch"] for c in second if c["hook"] == "on_epoch_end"] == [3, 4]

    whole = genreg.run(go_on, tmp_path / "whole", progress=False)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    saved, expected = (
        genreg.load_model(tmp_path / "run").state_dict(),
        genreg.load_model(tmp_path / "whole").state_dict(),
    )
    assert all(torch.equal(saved[k], expected[k]) for k in expected)
