"""Tests plugins/genreg_builtin/callbacks.py: early stopping stops at the right epoch (also when resumed) and
says why, the best checkpoint holds the best epoch's weights, and a metric the run does not log is refused
before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from genreg.errors import RunFolderError, SpecError
from genreg.files.run_folder import RunFolder
from genreg.spec import validate_part
from genreg.training.callbacks import RunState, RunView, objective_metric
from genreg_builtin.callbacks import BestCheckpoint, BestCheckpointConfig, EarlyStopping, read_best
from tests.helpers import EXAMPLES, ae_with_callbacks

EXAMPLE = str(EXAMPLES / "ae.json")


def record(epoch: int, value: float) -> dict:
    return {"epoch": epoch, "train": {"loss": value}, "test": {"loss": value}, "lr": 1e-3, "seconds": 0.0}


def scripted_run(model: genreg.GenerativeModel | None, folder: Path | None, epochs: int) -> tuple[RunState, RunView]:
    """A run's state, driven by the test as the training loop would, and the view its callbacks get."""
    state = RunState(model, None, {}, folder, epochs)
    return state, RunView(state)


def stop_epoch(config: dict, values: list[float], resumed_after: int = 0) -> tuple[int | None, str | None]:
    """Drive early stopping over scripted test losses; the first ``resumed_after`` epochs are a resumed run's past."""
    state, view = scripted_run(None, None, len(values))
    for epoch, value in enumerate(values[:resumed_after], 1):
        state.end_epoch(record(epoch, value))
    callback = EarlyStopping(validate_part("callback", {"type": "early-stopping", "metric": "test.loss", **config}))
    callback.on_run_start(view)
    if view.stop_reason is not None:
        return resumed_after, view.stop_reason
    for epoch, value in enumerate(values[resumed_after:], resumed_after + 1):
        state.begin_epoch(epoch)
        state.end_epoch(record(epoch, value))
        callback.on_epoch_end(view)
        if view.stop_reason is not None:
            return epoch, view.stop_reason
    return None, None


SCRIPTS = [
    ({"patience": 2}, [5, 4, 4.5, 4, 3.9], 4),  # equal to the best is no improvement
    ({"patience": 1}, [5, 4, 3, 2, 1], None),
    ({"patience": 2, "min_delta": 0.5}, [10, 9.6, 9.4, 9.0, 8.95, 8.0], 5),  # 9.6 and 9.0 beat the best by <= 0.5
    ({"patience": 2, "min_delta": 0.5}, [10, 9.4, 8.8, 8.2, 7.6, 7.0], None),
    ({"mode": "max", "patience": 3}, [0.1, 0.3, 0.2, 0.3, 0.25, 0.5], 5),
    ({"mode": "max", "patience": 2, "min_delta": 0.05}, [0.1, 0.3, 0.34, 0.33, 0.5], 4),
    ({"mode": "max", "patience": 1}, [0.1, 0.2, 0.3, 0.4], None),
]


@pytest.mark.parametrize(("config", "values", "expected"), SCRIPTS)
def test_early_stopping_stops_at_the_right_epoch(config: dict, values: list[float], expected: int | None) -> None:
    assert stop_epoch(config, values)[0] == expected


@pytest.mark.parametrize(("config", "values", "expected"), SCRIPTS)
def test_a_resumed_run_stops_where_an_uninterrupted_one_does(
    config: dict, values: list[float], expected: int | None
) -> None:
    for past in range(1, len(values)):
        stopped, _ = stop_epoch(config, values, resumed_after=past)
        # a run that had already stopped stops again before training its first epoch
        assert stopped == (past if expected is not None and expected <= past else expected), past


def test_early_stopping_says_why() -> None:
    assert stop_epoch({"patience": 2}, [5, 4, 4.5, 4]) == (
        4,
        "early-stopping: test.loss did not improve by more than 0 for 2 epochs (best 4 at epoch 2)",
    )
    assert stop_epoch({"patience": 3, "min_delta": 0.25}, [101.23, 101.2, 101.1, 101.0])[1] == (
        "early-stopping: test.loss did not improve by more than 0.25 for 3 epochs (best 101.2 at epoch 1)"
    )


@pytest.mark.slow
def test_early_stopping_ends_a_real_run(tmp_path: Path) -> None:
    spec = ae_with_callbacks(
        5, [{"type": "early-stopping", "mode": "max", "patience": 1}]
    )  # the loss falls: epoch 2 is worse
    result = genreg.run(spec, tmp_path, progress=False)
    assert [r["epoch"] for r in RunFolder(tmp_path).read_metrics()] == [1, 2]
    assert result.stopped.startswith("early-stopping: test.nll did not improve by more than 0 for 1 epoch (")


def tiny_model() -> genreg.GenerativeModel:
    spec = {"type": "ae", "latent_dim": 2, "encoder": {"type": "mlp", "hidden": [4]}}
    return genreg.build_model({**spec, "decoder": {"type": "mlp", "hidden": [4]}}, genreg.DataInfo((1, 4, 4), 2))


def script_best(folder: Path, mode: str, values: list[float], past: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """Drive best-checkpoint over scripted test losses, new weights each epoch; returns the weights per epoch."""
    model, snapshots = tiny_model(), {}
    state, view = scripted_run(model, folder, len(values))
    for epoch, value in enumerate(values[:past], 1):
        state.end_epoch(record(epoch, value))
    callback = BestCheckpoint(BestCheckpointConfig(mode=mode, metric="test.loss"))
    callback.on_run_start(view)
    for epoch, value in enumerate(values[past:], past + 1):
        state.begin_epoch(epoch)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
        snapshots[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        state.end_epoch(record(epoch, value))
        callback.on_epoch_end(view)
    return snapshots


@pytest.mark.parametrize(("mode", "best"), [("min", 4), ("max", 3)])
def test_best_checkpoint_holds_the_best_epochs_weights(tmp_path: Path, mode: str, best: int) -> None:
    values = [5.0, 3.0, 7.0, 2.5, 2.6]
    snapshots = script_best(tmp_path, mode, values)
    saved = genreg.load_model(tmp_path / "best.safetensors").state_dict()
    assert all(torch.equal(saved[k], snapshots[best][k]) for k in saved)
    assert not all(torch.equal(saved[k], snapshots[5][k]) for k in saved)
    assert read_best(tmp_path / "best.safetensors") == {
        "epoch": best,
        "metric": "test.loss",
        "mode": mode,
        "value": values[best - 1],
    }


def test_best_checkpoint_ignores_a_file_left_by_another_run(tmp_path: Path) -> None:
    path = tmp_path / "best.safetensors"
    script_best(tmp_path, "min", [1.0, 5.0])  # best 1.0 at epoch 1
    snapshots = script_best(tmp_path, "min", [9.0, 8.0, 9.5])  # a new run in the same folder, with no past
    assert read_best(path) == {"epoch": 2, "metric": "test.loss", "mode": "min", "value": 8.0}
    saved = genreg.load_model(path).state_dict()
    assert all(torch.equal(saved[k], snapshots[2][k]) for k in saved)
    script_best(tmp_path, "min", [9.0, 8.0, 9.5, 8.5], past=3)  # that run resumed: its history agrees with the file
    assert read_best(path)["epoch"] == 2 and all(
        torch.equal(v, saved[k]) for k, v in genreg.load_model(path).state_dict().items()
    )


class Snapshots:
    """Keeps the model's weights at the end of every epoch."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch_end(self, run: RunView) -> None:
        self.weights[run.epoch] = {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def test_best_checkpoint_in_a_real_run_and_after_resume(tmp_path: Path) -> None:
    spec = ae_with_callbacks(3, [])
    data = genreg.load_data(spec.data)
    config = BestCheckpointConfig(
        mode="max", metric="test.loss"
    )  # the test loss falls, so the best is an early epoch, not the last
    snapshots = Snapshots()
    history = genreg.train(
        genreg.build_model(spec.model, data.info),
        data,
        spec.train,
        run_dir=tmp_path,
        callbacks=[snapshots, BestCheckpoint(config)],
        progress=False,
    ).history
    losses = [r["test"]["loss"] for r in history]
    best = losses.index(max(losses)) + 1
    assert best != 3
    path = tmp_path / "best.safetensors"
    assert read_best(path) == {"epoch": best, "metric": "test.loss", "mode": "max", "value": losses[best - 1]}
    saved = genreg.load_model(path).state_dict()
    assert all(torch.equal(saved[k], snapshots.weights[best][k]) for k in saved)
    assert not all(torch.equal(saved[k], snapshots.weights[3][k]) for k in saved)

    before = path.read_bytes()
    more = spec.train.model_copy(update={"epochs": 4})
    resumed = genreg.train(
        genreg.build_model(spec.model, data.info),
        data,
        more,
        run_dir=tmp_path,
        resume=True,
        callbacks=[BestCheckpoint(config)],
        progress=False,
    ).history
    assert [r["epoch"] for r in resumed] == [4] and resumed[0]["test"]["loss"] < max(losses)
    assert path.read_bytes() == before  # epoch 4 is worse than the best read back from the file


def test_best_checkpoint_needs_a_run_folder() -> None:
    with pytest.raises(RunFolderError, match="'best-checkpoint' saves the best model into the run folder"):
        BestCheckpoint(BestCheckpointConfig()).on_run_start(scripted_run(tiny_model(), None, 1)[1])


@pytest.mark.parametrize("filename", ["model.safetensors", "checkpoint.safetensors", "../best.safetensors", "best.pt"])
def test_best_checkpoint_refuses_a_filename_outside_its_own(filename: str) -> None:
    with pytest.raises(SpecError, match="filename"):
        validate_part("callback", {"type": "best-checkpoint", "filename": filename})


@pytest.mark.parametrize("name", ["early-stopping", "best-checkpoint"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_metric_the_run_does_not_log_is_refused_before_training(tmp_path: Path, name: str, command: str) -> None:
    callbacks = json.dumps([{"type": name, "metric": "test.kld"}])  # an AE has no KL term
    out = ["--out", str(tmp_path / "run")] if command == "run" else []
    result = CliRunner().invoke(cli, [command, EXAMPLE, "--set", f"train.callbacks={callbacks}", *out])
    assert result.exit_code == 2, result.output
    assert f"callback '{name}': the run logs no metric 'test.kld'" in result.output
    assert "it logs train.loss, train.bce, test.loss, test.bce, test.nll." in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- issue 16, case 1: what they watch


def test_by_default_they_watch_the_test_objective_not_the_scheduled_total(tmp_path: Path) -> None:
    """Case 1 of issue 16: with a KL weight rising, test.loss rose while the -ELBO fell, and early stopping on
    test.loss (the default) stopped a run that was still improving."""
    vae = genreg.build_model({"type": "vae", "latent_dim": 2}, genreg.DataInfo((1, 4, 4), 2))
    state, view = scripted_run(vae, tmp_path, 4)
    stopping = EarlyStopping(validate_part("callback", {"type": "early-stopping", "patience": 1}))
    best = BestCheckpoint(validate_part("callback", {"type": "best-checkpoint"}))
    for callback in (stopping, best):
        callback.check(vae)
        callback.on_run_start(view)
    for epoch, (loss, neg_elbo) in enumerate([(150.0, 190.0), (170.0, 185.0), (182.0, 182.0)], 1):
        state.begin_epoch(epoch)
        state.end_epoch({**record(epoch, loss), "test": {"loss": loss, "neg_elbo": neg_elbo}})
        for callback in (stopping, best):
            callback.on_epoch_end(view)
    assert view.stop_reason is None
    assert read_best(tmp_path / "best.safetensors") == {
        "epoch": 3,
        "metric": "test.neg_elbo",
        "mode": "min",
        "value": 182.0,
    }
    ae = tiny_model()
    assert objective_metric(vae) == "test.neg_elbo" and objective_metric(ae) == "test.nll"
    with pytest.raises(genreg.GenregError, match="it logs train.loss, train.bce, test.loss, test.bce, test.nll"):
        EarlyStopping(validate_part("callback", {"type": "early-stopping", "metric": "train.nll"})).check(ae)
