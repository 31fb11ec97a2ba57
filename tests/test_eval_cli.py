"""`genreg eval` and `genreg compare` on real (tiny) runs: files written, tables printed, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import genreg
from genreg.cli import cli

STUDY = Path(__file__).resolve().parents[1] / "examples" / "latent_study"
TINY = ["--set", "train.epochs=2", "--set", "model.encoder.hidden=[64]", "--set", "model.decoder.hidden=[64]"]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("study")
    out = {}
    for name in ("ae", "vae"):
        out[name] = folder / name
        result = invoke("run", str(STUDY / f"{name}.json"), "--out", str(out[name]), "--quiet", *TINY)
        assert result.exit_code == 0, result.output
    return out


def test_eval_writes_eval_json_and_prints_the_table(runs: dict[str, Path]) -> None:
    result = invoke("eval", str(runs["vae"]), "--iw-samples", "20")
    assert result.exit_code == 0, result.output
    saved = json.loads((runs["vae"] / "eval.json").read_text())
    assert saved["split"] == "test" and saved["images"] == 1000 and saved["iw_samples"] == 20
    assert saved["nll_iwae"] <= saved["neg_elbo"]
    assert saved["latent_dim"] == 2 and 0 <= saved["active_units"] <= 2
    assert f"{saved['nll_iwae']:.2f} (K=20)" in result.output and "NLL, IWAE (nats/image)" in result.output
    assert "k-NN accuracy" in result.output and "(chance 0.100)" in result.output


def test_eval_of_an_ae_has_no_likelihood(runs: dict[str, Path]) -> None:
    result = invoke("eval", str(runs["ae"] / "model.safetensors"), "--split", "train")
    assert result.exit_code == 0, result.output
    saved = json.loads((runs["ae"] / "eval-train.json").read_text())
    assert saved["split"] == "train" and saved["images"] == 4000
    assert "nll_iwae" not in saved and "bce" in saved["losses"]


def test_compare_writes_picture_and_markdown(runs: dict[str, Path], tmp_path: Path) -> None:
    picture, table = tmp_path / "compare.png", tmp_path / "compare.md"
    result = invoke(
        "compare", str(runs["ae"]), str(runs["vae"]), "-o", str(picture), "--markdown", str(table), "--iw-samples", "5"
    )
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header == ["metric", "ae", "vae"]
    assert picture.stat().st_size > 10_000
    markdown = table.read_text()
    assert markdown.startswith("| metric | ae | vae |")
    assert "| -ELBO (nats/image) | — |" in markdown


def test_sample_grid_and_interpolation(runs: dict[str, Path], tmp_path: Path) -> None:
    grid, line = tmp_path / "grid.png", tmp_path / "line.png"
    assert invoke("sample", str(runs["vae"]), "--grid", "-n", "5", "-o", str(grid)).exit_code == 0
    assert invoke("sample", str(runs["vae"]), "--interpolate", "0", "999", "-o", str(line)).exit_code == 0
    assert grid.stat().st_size > 1000 and line.stat().st_size > 1000
    result = invoke("sample", str(runs["vae"]), "--interpolate", "0", "1000", "-o", str(line))
    assert result.exit_code == 2 and "out of range" in result.output
    result = invoke("sample", str(runs["vae"]), "--grid", "--interpolate", "0", "1", "-o", str(line))
    assert result.exit_code == 2 and "choose one" in result.output


def test_eval_of_a_file_without_data_is_a_clear_error(tmp_path: Path) -> None:
    model = genreg.build_model({"type": "vae", "latent_dim": 2}, genreg.DataInfo((1, 28, 28), 10))
    path = genreg.save_model(model, tmp_path / "bare.safetensors")
    result = invoke("eval", str(path))
    assert result.exit_code == 2 and "records no dataset" in result.output
