"""Tests genreg/training/loop.py: a run records, per epoch, the scheduled learning rate of its last step;
`train` returns its history and stop reason, shows callbacks each epoch's steps, and refuses a resume without a
run folder."""

from __future__ import annotations

import json
import math

import pytest
import torch

import genreg
from genreg.errors import RunFolderError
from genreg.files.run_folder import RunFolder
from tests.helpers import EXAMPLES

# --------------------------------------------------------------------------- lr schedules in a run


def test_a_run_records_the_scheduled_lr_of_each_epochs_last_step(tmp_path, one_thread):
    batch = 500
    spec = genreg.load_spec(
        EXAMPLES / "vae.json",
        [
            "train.epochs=2",
            f"train.batch_size={batch}",
            "train.lr=0.004",
            'train.lr_schedule={"type": "step", "every": 0.5, "gamma": 0.5}',
            "model.encoder.hidden=[32]",
            "model.decoder.hidden=[32]",
            "model.losses.1.schedule=null",
        ],
    )
    result = genreg.run(spec, tmp_path / "run", progress=False)
    steps = math.ceil(len(result.data.train) / batch)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last_steps = [e + (steps - 1) / steps for e in range(2)]  # progress of each epoch's last step
    expected = [0.004 * 0.5 ** math.floor(p / 0.5) for p in last_steps]
    assert [r["lr"] for r in records] == pytest.approx(expected)
    assert expected == pytest.approx([0.002, 0.0005])  # two decays in epoch 1, two more in epoch 2


# --------------------------------------------------------------------------- the loop's contract

TINY = {
    "type": "ae",
    "latent_dim": 2,
    "encoder": {"type": "mlp", "hidden": [4]},
    "decoder": {"type": "mlp", "hidden": [4]},
}


def tiny_data(n: int = 40) -> genreg.DataSplits:
    torch.manual_seed(0)
    images, labels = torch.rand(n, 1, 4, 4), torch.arange(n) % 2
    return genreg.DataSplits(genreg.Split(images, labels), genreg.Split(images[:8], labels[:8]), 2)


def test_train_returns_the_history_and_why_it_stopped(tmp_path):
    class StopAfterTwo:
        def on_epoch_end(self, run):
            if run.epoch == 2:
                run.request_stop("enough")

    data = tiny_data()
    model = genreg.build_model(TINY, data.info)
    config = genreg.TrainConfig(epochs=5, batch_size=16, device="cpu")
    result = genreg.train(model, data, config, progress=False, callbacks=[StopAfterTwo()])
    assert isinstance(result, genreg.TrainResult)
    assert [record["epoch"] for record in result.history] == [1, 2]
    assert result.stopped == "enough"


def test_callbacks_see_the_epochs_steps_at_its_end_without_a_step_hook():
    seen = []

    class Watch:
        def on_epoch_end(self, run):
            seen.append((run.epoch, run.step, run.lr))

    data = tiny_data(40)  # 16 + 16 + 8: three steps an epoch
    model = genreg.build_model(TINY, data.info)
    config = genreg.TrainConfig(epochs=2, batch_size=16, lr=0.01, device="cpu")
    genreg.train(model, data, config, progress=False, callbacks=[Watch()])
    assert seen == [(1, 3, 0.01), (2, 3, 0.01)]


def test_resume_without_a_run_folder_is_refused_rather_than_training_from_scratch():
    data = tiny_data()
    model = genreg.build_model(TINY, data.info)
    with pytest.raises(RunFolderError, match="resume=True continues the run in a run folder"):
        genreg.train(model, data, genreg.TrainConfig(epochs=1, device="cpu"), resume=True, progress=False)


# --------------------------------------------------------------------------- metrics and checkpoint agree

TINY_AE = {
    "type": "ae",
    "latent_dim": 2,
    "encoder": {"type": "mlp", "hidden": [16]},
    "decoder": {"type": "mlp", "hidden": [16]},
}


@pytest.mark.slow
def test_a_failed_metrics_append_loses_no_epoch_record_on_resume(tmp_path, monkeypatch) -> None:
    """Case 5 of issue 15: the append failed after the checkpoint was written; --resume went on and the
    epoch's record was lost for good (metrics [1, 3])."""
    from genreg.errors import OutputError
    from genreg.files.run_folder import RunFolder
    from tests.helpers import small_data

    data = small_data(256)
    config = genreg.TrainConfig(epochs=3, batch_size=128, device="cpu")
    append = RunFolder.append_metrics

    def disk_full_at_epoch_2(folder: RunFolder, record: dict) -> None:
        if record["epoch"] == 2:
            raise OutputError(f"could not append to {folder.metrics_path} (No space left on device)")
        append(folder, record)

    monkeypatch.setattr(RunFolder, "append_metrics", disk_full_at_epoch_2)
    model = genreg.build_model(TINY_AE, data.info)
    with pytest.raises(OutputError):
        genreg.train(model, data, config, progress=False, run_dir=tmp_path)
    monkeypatch.undo()
    model = genreg.build_model(TINY_AE, data.info)
    result = genreg.train(model, data, config, progress=False, run_dir=tmp_path, resume=True)
    assert [r["epoch"] for r in RunFolder(tmp_path).read_metrics()] == [1, 2, 3]
    assert [r["epoch"] for r in result.history] == [2, 3]  # epoch 2 trained again: its checkpoint was never written


# --------------------------------------------------------------------------- issue 16, case 1: each epoch's own weights

TINY_VAE = {**TINY, "type": "vae"}
CYCLICAL = {"type": "cyclical", "epochs": 4, "ratio": 0.5}  # rises over epochs 0-2 of each cycle, holds at 1 to 4


def test_each_epochs_test_metrics_use_that_epochs_weights_and_record_the_neg_elbo() -> None:
    """Case 1 of issue 16: the test loss of epoch 4 took the weight of the next cycle's first step (0), so it
    read bce alone (176.2 where bce + kld was 188.2); and nothing recorded the unweighted -ELBO."""
    data = tiny_data(40)  # batch 16: 3 steps an epoch, the last at progress epoch + 2/3
    spec = {**TINY_VAE, "losses": [{"type": "bce"}, {"type": "kld", "schedule": CYCLICAL}]}
    model = genreg.build_model(spec, data.info)
    config = genreg.TrainConfig(epochs=4, batch_size=16, device="cpu")
    history = genreg.train(model, data, config, progress=False).history
    for record in history:
        test, weights = record["test"], model.loss_weights(record["epoch"] - 1 + 2 / 3)
        assert test["loss"] == pytest.approx(weights[0] * test["bce"] + weights[1] * test["kld"], rel=1e-5)
        assert test["neg_elbo"] == pytest.approx(test["bce"] + test["kld"], rel=1e-5)
    assert model.loss_weights(3 + 2 / 3) == [1.0, 1.0]
    assert history[3]["test"]["loss"] == pytest.approx(history[3]["test"]["neg_elbo"], rel=1e-5)
    assert history[3]["test"]["kld"] > 0.01  # so the total taken with weight 0 would differ


def test_the_objective_leaves_out_free_bits_and_terms_that_are_neither_likelihood_nor_kl() -> None:
    data = tiny_data(40)
    spec = {**TINY_VAE, "losses": [{"type": "mse"}, {"type": "kld", "free_bits": 5.0, "weight": 3.0}]}
    model = genreg.build_model(spec, data.info)
    test = genreg.average_losses(model, data.test, genreg.TrainConfig(device="cpu"))
    nll = 0.5 * test["mse"] + 0.5 * 16 * math.log(2 * math.pi)  # unit-variance Gaussian on 4x4 images
    assert test["kld"] == pytest.approx(5.0 * 2)  # floored: 2 latent dimensions at 5 nats
    assert nll < test["neg_elbo"] < nll + test["kld"]  # the plain KL, under the floor
    ae = genreg.build_model(TINY, data.info)
    assert set(genreg.average_losses(ae, data.test, genreg.TrainConfig(device="cpu"))) == {"loss", "bce", "nll"}


# --------------------------------------------------------------------------- issue 16, case 4: units on the bar


def test_the_progress_bar_prints_each_terms_unit(capsys) -> None:
    """Case 4 of issue 16: every value was shown as if in nats; mse is a sum of squared errors."""
    data = tiny_data(40)
    model = genreg.build_model({**TINY_VAE, "losses": [{"type": "mse"}, {"type": "kld"}]}, data.info)
    genreg.train(model, data, genreg.TrainConfig(epochs=1, batch_size=16, device="cpu"), progress=True)
    shown = capsys.readouterr().err
    assert "loss=" in shown and "(weighted sum of mixed units), mse=" in shown
    assert " squared error/image, kld=" in shown and " nats/image" in shown


# --------------------------------------------------------------------------- issue 16, case 16: lr curve on resume


@pytest.mark.parametrize(
    ("schedule", "refused"), [({"type": "cosine"}, True), ({"type": "step", "every": 1, "gamma": 0.5}, False)]
)
def test_resuming_with_more_epochs_refuses_a_schedule_that_spans_the_run(tmp_path, schedule, refused) -> None:
    """Case 16 of issue 16: a cosine run of 2 epochs resumed with 5 restarted its curve (1.6e-7, then 1.5e-4)."""
    data = tiny_data(40)
    config = genreg.TrainConfig(epochs=2, batch_size=16, device="cpu", lr=1e-3, lr_schedule=schedule)
    spec = {"model": TINY, "train": config.model_dump(mode="json")}
    genreg.train(genreg.build_model(TINY, data.info), data, config, run_dir=tmp_path, spec=spec, progress=False)
    before = (tmp_path / "checkpoint.safetensors").read_bytes()
    longer = config.model_copy(update={"epochs": 5})
    model = genreg.build_model(TINY, data.info)
    if not refused:
        history = genreg.train(model, data, longer, run_dir=tmp_path, resume=True, progress=False).history
        assert [r["lr"] for r in history] == pytest.approx([1e-3 * 0.5**e for e in (2, 3, 4)])
        return
    with pytest.raises(RunFolderError) as caught:
        genreg.train(model, data, longer, run_dir=tmp_path, resume=True, progress=False)
    message = str(caught.value)
    assert "train.lr_schedule ('cosine') depends on the run's length" in message
    assert "at the end of epoch 2 the trained curve is at lr 0, the one for 5 epochs at 0.00065" in message
    assert "--set train.epochs=5 --out NEW_FOLDER" in message and "resume with train.epochs 2" in message
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before


# --------------------------------------------------------------------------- a signal while a checkpoint is written


@pytest.fixture
def sigterm_at_checkpoint(monkeypatch):
    """``at(n)``: SIGTERM to this process while epoch ``n``'s checkpoint is written (the handler the loop installs
    takes it; one that is not genreg's fails the test instead of ending pytest)."""
    import os
    import signal

    from genreg.training import loop

    real, caught = loop.save_checkpoint, []

    def at(epoch: int) -> None:
        def signalled(path, model, optimizer, finished, spec):
            real(path, model, optimizer, finished, spec)
            if finished == epoch:
                os.kill(os.getpid(), signal.SIGTERM)

        monkeypatch.setattr(loop, "save_checkpoint", signalled)

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    yield at
    signal.signal(signal.SIGTERM, previous)
    assert caught == [], "SIGTERM reached a handler that is not genreg's"


def test_sigterm_while_the_last_checkpoint_is_written_stops_after_the_final_files(
    tmp_path, sigterm_at_checkpoint, one_thread
) -> None:
    """SIGTERM during the last epoch's checkpoint write was swallowed: the run exited 0 with no message."""
    from tests.helpers import invoke, spec_file, write_npz

    spec = spec_file(tmp_path, {"type": "npz", "path": str(write_npz(tmp_path / "digits.npz"))})
    out = tmp_path / "run"
    sigterm_at_checkpoint(1)
    result = invoke("run", spec, "--out", out, "--quiet")
    assert result.exit_code == 143, result.output
    assert (
        result.stderr
        == f"Error: stopped by SIGTERM after the run's files were written; the run in {out} is finished.\n"
    )
    assert RunFolder(out).finished(1)


def test_sigterm_during_the_epochs_says_how_to_resume_and_that_command_works(
    tmp_path, sigterm_at_checkpoint, one_thread
) -> None:
    """The resume hint said `genreg run SPEC --out ... --resume`, with a literal SPEC."""
    from tests.helpers import invoke, spec_file, write_npz

    spec = spec_file(tmp_path, {"type": "npz", "path": str(write_npz(tmp_path / "digits.npz"))})
    out = tmp_path / "run"
    sigterm_at_checkpoint(1)
    result = invoke("run", spec, "--out", out, "--quiet", "--set", "train.epochs=2")
    assert result.exit_code == 143, result.output
    command = f"genreg run {out / 'spec.json'} --out {out} --resume"
    assert f"training stopped by SIGTERM during epoch 2; {out / 'checkpoint.safetensors'} holds the state after " in (
        result.stderr
    )
    assert f"continue with `{command}`" in result.stderr
    resumed = invoke(*command.split()[1:], "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert [record["epoch"] for record in RunFolder(out).read_metrics()] == [1, 2] and RunFolder(out).finished(2)
