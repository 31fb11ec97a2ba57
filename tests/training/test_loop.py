"""Tests genreg/training/loop.py: a run records, per epoch, the scheduled learning rate of its last step."""

from __future__ import annotations

import json
import math

import pytest

import genreg
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
