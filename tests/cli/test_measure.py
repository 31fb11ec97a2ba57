"""Tests genreg/cli/measure.py: ``genreg eval`` and ``genreg compare`` on real (tiny) runs: files written,
tables printed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import assert_user_error, invoke, read_only_folder

pytestmark = pytest.mark.slow


def test_eval_writes_eval_json_and_prints_the_table(study_runs: dict[str, Path]) -> None:
    result = invoke("eval", str(study_runs["vae"]), "--iw-samples", "20")
    assert result.exit_code == 0, result.output
    saved = json.loads((study_runs["vae"] / "eval.json").read_text())
    assert saved["split"] == "test" and saved["images"] == 1000 and saved["iw_samples"] == 20
    assert saved["nll_iwae"] <= saved["neg_elbo"]
    assert saved["latent_dim"] == 2 and 0 <= saved["active_units"] <= 2
    in_bf16 = ", bf16" if saved["precision"] == "bf16" else ""  # precision auto: bf16 on a CPU with native bf16
    assert f"{saved['nll_iwae']:.2f} (K=20{in_bf16})" in result.output and "NLL, IWAE (nats/image)" in result.output
    assert f"ELBO and IWAE in {saved['precision_note']}" in result.output
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


BEFORE_LAYOUT = Path(__file__).parents[1] / "fixtures" / "before_layout"


def test_compare_never_writes_its_table_over_a_model_file(tmp_path: Path) -> None:
    """`compare runA --markdown runA/model.safetensors` exited 0 with the table in the model file."""
    run = tmp_path / "run"
    shutil.copytree(BEFORE_LAYOUT / "vae_run", run)
    model = (run / "model.safetensors").read_bytes()
    result = invoke("compare", run, "-o", tmp_path / "c.png", "--markdown", run / "model.safetensors")
    assert_user_error(result, f"--markdown {run / 'model.safetensors'}: a file of the run in {run}")
    assert (run / "model.safetensors").read_bytes() == model and not (tmp_path / "c.png").exists()
    assert not (run / "eval.json").exists()  # refused before any run was measured


def test_compare_measures_a_run_on_a_read_only_file_system(tmp_path: Path, monkeypatch) -> None:
    """It refused the run ("cannot write ... eval.json (Read-only file system)"); eval.json is only its cache."""
    run = tmp_path / "run"
    shutil.copytree(BEFORE_LAYOUT / "vae_run", run)
    read_only_folder(monkeypatch, run)
    with pytest.warns(UserWarning, match=r"\(Read-only file system\); the evaluation is shown but not kept"):
        result = invoke("compare", run, "-o", tmp_path / "c.png", "--iw-samples", "2")
    assert result.exit_code == 0, result.output
    assert not (run / "eval.json").exists() and (tmp_path / "c.png").is_file()
    assert_user_error(invoke("eval", run), "(Read-only file system); choose another place.")
