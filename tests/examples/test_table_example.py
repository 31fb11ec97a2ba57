"""Tests examples/table/: the table its script writes trains from its spec, as the README's Data section shows."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from tests.helpers import EXAMPLES

TABLE = EXAMPLES / "table"


def test_the_table_script_writes_the_same_table_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["make_table.py"])
    runpy.run_path(str(TABLE / "make_table.py"), run_name="__main__")
    with np.load(tmp_path / "table.npz") as table:
        assert table["x"].shape == (3000, 30) and table["x"].dtype == np.float32
        assert sorted(np.unique(table["labels"])) == [0, 1, 2] and table["true_z"].shape == (3000, 2)
        first = table["x"].copy()
    csv = (tmp_path / "table.csv").read_text()
    assert csv.startswith("group,m00,m01,") and csv.count("\n") == 3001 and "\ndose-high," in csv
    runpy.run_path(str(TABLE / "make_table.py"), run_name="__main__")
    with np.load(tmp_path / "table.npz") as table:
        assert np.array_equal(table["x"], first)
    assert (tmp_path / "table.csv").read_text() == csv


@pytest.mark.slow
def test_the_csv_spec_trains_on_named_groups_and_answers_in_the_tables_units(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["make_table.py"])
    runpy.run_path(str(TABLE / "make_table.py"), run_name="__main__")
    spec = str(TABLE / "table_csv_vae.json")
    result = CliRunner().invoke(cli, ["run", spec, "--out", "runs/csv", "--set", "train.epochs=3", "--quiet"])
    assert result.exit_code == 0, result.output
    model = genreg.load_model(tmp_path / "runs/csv")
    info = model.data_info
    assert info.class_names() == ["control", "dose-high", "dose-low"] and info.features[:2] == ["m00", "m01"]
    measured = np.loadtxt(tmp_path / "table.csv", delimiter=",", skiprows=1, usecols=range(1, 31))
    drawn, centre, spread = model.sample(2000).numpy(), measured.mean(0), measured.std(0)
    # in the table's units, not standardised: within half a standard deviation of each feature's mean (after 3
    # epochs; measured at most 0.16), where z-scores would be many standard deviations away (21 of the 30 features
    # lie 2 sd or more from 0)
    assert (np.abs(drawn.mean(0) - centre) < 0.5 * spread).all() and (np.abs(centre) > 2 * spread).sum() >= 15


@pytest.mark.slow
def test_the_table_spec_trains_and_decodes_vectors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["make_table.py"])
    runpy.run_path(str(TABLE / "make_table.py"), run_name="__main__")
    spec = str(TABLE / "table_vae.json")
    result = CliRunner().invoke(cli, ["run", spec, "--out", "runs/table", "--set", "train.epochs=1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert {"samples.png", "latent.png", "model.safetensors"} <= {p.name for p in (tmp_path / "runs/table").iterdir()}
    model = genreg.load_model(tmp_path / "runs/table/model.safetensors")
    assert model.data_info.image_shape == (30,)
    assert model.sample(4).shape == (4, 30)
    learned = dict(model.named_parameters())["losses.0.log_sigma"]
    assert learned.shape == (30,) and not torch.equal(learned, torch.zeros(30))  # one sigma per feature, trained
