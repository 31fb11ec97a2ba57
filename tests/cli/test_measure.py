"""Tests genreg/cli/measure.py: ``genreg eval`` and ``genreg compare`` on real (tiny) runs: files written,
tables printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import invoke

pytestmark = pytest.mark.slow


def test_eval_writes_eval_json_and_prints_the_table(study_runs: dict[str, Path]) -> None:
    result = invoke("eval", str(study_runs["vae"]), "--iw-samples", "20")
    assert result.exit_code == 0, result.output
    saved = json.loads((study_runs["vae"] / "eval.json").read_text())
    assert saved["split"] == "test" and saved["images"] == 1000 and saved["iw_samples"] == 20
    assert saved["nll_iwae"] <= saved["neg_elbo"]
    assert saved["latent_dim"] == 2 and 0 <= saved["active_units"] <= 2
    assert f"{saved['nll_iwae']:.2f} (K=20)" in result.output and "NLL, IWAE (nats/image)" in result.output
    assert "k-NN accuracy" in result.output and "(chance 0.100)" in result.output


def test_eval_of_an_ae_has_no_likelihood(study_runs: dict[str, Path]) -> None:
    result = invoke("eval", str(study_runs["ae"] / "model.safetensors"), "--split", "train")
    assert result.exit_code == 0, result.output
    saved = json.loads((study_runs["ae"] / "eval-train.json").read_text())
    assert saved["split"] == "train" and saved["images"] == 4000
    assert "nll_iwae" not in saved and "bce" in saved["losses"]


def test_compare_writes_picture_and_markdown(study_runs: dict[str, Path], tmp_path: Path) -> None:
    picture, table = tmp_path / "compare.png", tmp_path / "compare.md"
    result = invoke(
        "compare",
        str(study_runs["ae"]),
        str(study_runs["vae"]),
        "-o",
        str(picture),
        "--markdown",
        str(table),
        "--iw-samples",
        "5",
    )
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header == ["metric", "ae", "vae"]
    assert picture.stat().st_size > 10_000
    markdown = table.read_text()
    assert markdown.startswith("| metric | ae | vae |")
    assert "| -ELBO (nats/image) | — |" in markdown


def test_compare_and_eval_measure_a_model_with_two_columns(ink_run, trained, tmp_path) -> None:
    """Conditional accuracy asks for each class with the ink at its training mean."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENREG_CACHE", str(trained.cache))  # the session's reference classifier
        result = invoke("compare", ink_run, "-o", tmp_path / "compare.png", "--iw-samples", 20)
    assert result.exit_code == 0, result.output
    assert "conditional accuracy" in result.output and (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
