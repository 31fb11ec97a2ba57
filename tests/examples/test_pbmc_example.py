"""Tests examples/pbmc_*.json and the bundled `pbmc-sample` cells, as the README's "Single cells" section runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from tests.helpers import EXAMPLES

CELL_TYPES = 10


def test_the_bundled_cells_load_with_their_cell_types_and_gene_names() -> None:
    data = genreg.load_data({"type": "pbmc-sample"})
    info = data.info
    assert info.image_shape == (765,) and len(data.train) + len(data.test) == 700
    assert info.num_classes == CELL_TYPES and "CD14+ Monocyte" in info.class_names()
    assert info.features[:3] == ["HES4", "TNFRSF4", "SSU72"] and info.transform is None
    assert data.train.images.min() >= 0  # layer raw: log-normalised expression
    again = genreg.load_data({"type": "pbmc-sample", "layer": "X", "label": None})
    assert not again.info.labelled and again.train.images.min() < 0  # z-scores
    assert set(again.info.features) == set(info.features)


@pytest.mark.parametrize("name", ["pbmc_vae.json", "pbmc_cvae.json"])
def test_the_pbmc_specs_validate(name: str) -> None:
    result = CliRunner().invoke(cli, ["validate", str(EXAMPLES / name)])
    assert result.exit_code == 0 and "558 train / 142 test vectors of 765 features, 10 classes" in result.output


@pytest.mark.slow
def test_the_cvae_samples_a_cell_type_in_the_datas_units(tmp_path: Path) -> None:
    out = tmp_path / "run"
    spec = str(EXAMPLES / "pbmc_cvae.json")
    result = CliRunner().invoke(cli, ["run", spec, "--out", str(out), "--set", "train.epochs=2", "--quiet"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        cli, ["sample", str(out), "--label", "CD14+ Monocyte", "-n", "50", "-o", str(tmp_path / "s.npz")]
    )
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "s.npz") as samples:
        x = samples["x"]
    data = genreg.load_data({"type": "pbmc-sample"})
    assert x.shape == (50, 765)
    # log-normalised expression, not z-scores: the samples' mean sits near the data's (0.4), far from 0
    assert abs(x.mean() - float(data.train.images.mean())) < 0.2
    result = CliRunner().invoke(cli, ["sample", str(out), "--label", "B cell", "-o", str(tmp_path / "t.npz")])
    assert result.exit_code == 2 and "'CD14+ Monocyte'" in result.output
