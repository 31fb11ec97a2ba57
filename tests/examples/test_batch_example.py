"""Tests examples/batch_correction/*.json: a VAE and a cVAE conditioned on the batch, on simulated counts.

Science: on cells whose batches shift every gene's expression (``simulated-counts``), the VAE's latent means sort
the cells by batch, while the cVAE, told the batch, mixes the batches (a k-NN classifier of the batch on its latent
means reads little more than chance) and keeps the cell types apart; both run through the CLI as the README
runs them (``genreg run``, then ``genreg latent --color-by batch -o z.npz`` for the means).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from genreg.cli import cli
from genreg.evaluation.metrics import chance_level, knn_accuracy
from tests.helpers import EXAMPLES

FOLDER = EXAMPLES / "batch_correction"
SPECS = ("vae_counts.json", "cvae_batch.json")


@pytest.mark.parametrize("name", SPECS)
def test_the_specs_validate_on_the_simulated_cells(name: str) -> None:
    result = CliRunner().invoke(cli, ["validate", str(FOLDER / name)])
    assert result.exit_code == 0, result.output
    assert "2,400 train / 600 test vectors of 500 features, 8 classes" in result.output
    spec = json.loads((FOLDER / name).read_text())
    assert spec["model"]["losses"][0]["type"] == "negative-binomial" and spec["model"]["latent_dim"] == 10


def latent_means(tmp_path: Path, name: str) -> dict[str, np.ndarray]:
    """Train the spec as it is (40 epochs: the cVAE's latent sheds the batch only once the KL term weighs in
    fully, after its 10-epoch warm-up) with ``genreg run``, and read its test cells' latent means."""
    out = tmp_path / name.removesuffix(".json")
    run = ["run", str(FOLDER / name), "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli, run)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output.lower(), result.output
    means = tmp_path / f"{out.name}.npz"
    result = CliRunner().invoke(cli, ["latent", str(out), "--color-by", "batch", "-o", str(means)])
    assert result.exit_code == 0, result.output
    with np.load(means) as arrays:
        return {key: arrays[key] for key in ("mu", "label", "batch")}


@pytest.mark.slow
def test_the_cvae_mixes_the_batches_the_vae_keeps_apart_and_both_keep_the_cell_types(tmp_path: Path) -> None:
    scores = {}
    for name in SPECS:
        arrays = latent_means(tmp_path, name)
        z = torch.from_numpy(arrays["mu"])
        batch, cell_type = torch.from_numpy(arrays["batch"]), torch.from_numpy(arrays["label"])
        scores[name] = {"batch": knn_accuracy(z, batch), "type": knn_accuracy(z, cell_type)}
    batch_chance, type_chance = chance_level(batch), chance_level(cell_type)  # 0.34 (3 batches), 0.125 (8 types)
    vae, cvae = scores["vae_counts.json"], scores["cvae_batch.json"]
    assert vae["batch"] > 0.8, scores  # the VAE's latent sorts the cells by batch
    assert cvae["batch"] < batch_chance + 0.15, scores  # the cVAE's hardly holds it
    assert cvae["batch"] - batch_chance < 0.25 * (vae["batch"] - batch_chance), scores
    for model in (vae, cvae):  # and both keep the cell types apart
        assert model["type"] > type_chance + 0.4, scores
