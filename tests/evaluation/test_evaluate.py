"""Tests genreg/evaluation/evaluate.py: ``evaluate_model`` reports the documented metrics, and its latent metrics
match genreg.evaluation.metrics computed on their own; an ``eval.json`` names the model file it measured, and
is not reused for another."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from genreg.evaluation import metrics as evaluation
from genreg.evaluation.evaluate import evaluate_file, recorded_evaluation
from genreg.evaluation.report import compare_runs
from genreg.files.model_files import read_metadata
from genreg.files.tensors import CHECKSUM

pytestmark = pytest.mark.usefixtures("module_on_one_thread")  # tiny networks: one thread is much faster

# --------------------------------------------------------------------------------------------------
# evaluate_model end to end, on the AE and VAE of conftest's ``evaluations``

LATENT_KEYS = {"latent_dim", "active_units", "gaussian_kl", "mmd", "knn_accuracy", "chance"}


BEFORE_LAYOUT = Path(__file__).parents[1] / "fixtures" / "before_layout"


def test_evaluate_model_reports_the_documented_metrics(evaluations: dict[str, dict], digits) -> None:
    ae, vae = evaluations["ae"], evaluations["vae"]
    assert set(ae) == {"model", "split", "images", "losses"} | LATENT_KEYS
    assert set(vae) == {"model", "split", "images", "losses", "neg_elbo", "nll_iwae", "iw_samples"} | LATENT_KEYS
    assert (ae["model"], vae["model"]) == ("ae", "vae")
    for result in (ae, vae):
        assert result["split"] == "test" and result["images"] == 200
        assert result["latent_dim"] == 4 and 0 <= result["active_units"] <= 4
        assert result["chance"] == pytest.approx(evaluation.chance_level(digits.test.labels))
        assert result["chance"] == pytest.approx(0.1)  # 20 test digits of each class
        # Even these briefly trained 4-D latents carry the class: measured 0.37-0.50 (AE), 0.46-0.56 (VAE).
        assert result["chance"] + 0.15 < result["knn_accuracy"] <= 1.0
        assert math.isfinite(result["gaussian_kl"]) and math.isfinite(result["mmd"])
    assert set(ae["losses"]) == {"loss", "bce"}
    assert set(vae["losses"]) == {"loss", "bce", "kld"}
    losses = vae["losses"]
    assert losses["loss"] == pytest.approx(losses["bce"] + losses["kld"], abs=1e-2)
    # bce + kld (one draw, analytic KL) and neg_elbo (20 draws, sampled KL) estimate the same negative ELBO;
    # they differ by Monte-Carlo noise of a few tenths of a nat over 200 images.
    assert losses["loss"] == pytest.approx(vae["neg_elbo"], abs=2.0)
    assert vae["iw_samples"] == 20 and vae["nll_iwae"] <= vae["neg_elbo"]
    # A VAE's aggregate posterior is pulled towards N(0, I); an AE's is not.
    assert vae["gaussian_kl"] < ae["gaussian_kl"]
    assert vae["active_units"] >= 1


def test_evaluate_model_latent_metrics_match_the_parts(digits_vae, digits, evaluations: dict[str, dict]) -> None:
    post = evaluation.posterior(digits_vae, digits.test)
    assert post.mu.shape == post.log_var.shape == (200, 4)
    assert evaluations["vae"]["knn_accuracy"] == evaluation.knn_accuracy(post.mu, post.labels)
    assert evaluations["vae"]["active_units"] == evaluation.active_units(post.mu)


def test_an_evaluation_belongs_to_the_model_file_it_measured(tmp_path) -> None:
    """Case 3 of issue 15: compare reported an overwritten run's old numbers from its stale eval.json."""
    run = tmp_path / "run"
    shutil.copytree(BEFORE_LAYOUT / "vae_run", run)
    result, path = evaluate_file(run, iw_samples=2)
    assert path == run / "eval.json"
    assert result["model_checksum"] == read_metadata(run / "model.safetensors")[CHECKSUM]
    assert recorded_evaluation(run / "model.safetensors") == json.loads(path.read_text())
    shutil.copy(BEFORE_LAYOUT / "vae_run_1_epoch" / "model.safetensors", run / "model.safetensors")  # retrained
    assert recorded_evaluation(run / "model.safetensors") is None
    compare_runs([run], tmp_path / "compare.png", iw_samples=2)  # measures the model that is there now
    remeasured = json.loads(path.read_text())
    assert remeasured["model_checksum"] == read_metadata(run / "model.safetensors")[CHECKSUM]
    assert remeasured["neg_elbo"] != result["neg_elbo"]
