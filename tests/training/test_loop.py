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
