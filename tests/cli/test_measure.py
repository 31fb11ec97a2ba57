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


def test_eval_of_a_vector_run_writes_its_metrics(tmp_path: Path, monkeypatch) -> None:
    """A cVAE of a table's rows (real features, gaussian likelihood): `genreg eval` prints the table in nats per
    vector with the reconstruction R^2, and eval.json holds every metric, the R^2 as numpy computes it."""
    import numpy as np

    import genreg
    from genreg.data.loading import recorded_data

    monkeypatch.setenv("GENREG_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    x = (2 * rng.normal(size=(3, 8))[labels] + rng.normal(size=(400, 8))).astype(np.float32)
    np.savez(tmp_path / "table.npz", x=x, labels=labels)
    spec = {
        "name": "table",
        "model": {
            "type": "cvae",
            "latent_dim": 2,
            "encoder": {"type": "mlp", "hidden": [32]},
            "decoder": {"type": "mlp", "hidden": [32]},
            "losses": [{"type": "gaussian", "variance": "learned"}, {"type": "kld"}],
        },
        "data": {"type": "npz", "path": str(tmp_path / "table.npz")},
        "train": {"epochs": 30, "batch_size": 64, "pictures": False},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = tmp_path / "run"
    assert invoke("run", tmp_path / "spec.json", "--out", run, "--quiet").exit_code == 0
    result = invoke("eval", run, "--iw-samples", "50", "--n-per-class", "20")
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "eval.json").read_text())
    assert saved["features"] == 8 and saved["iw_samples"] == 50 and saved["nll_iwae"] <= saved["neg_elbo"]
    assert saved["units"]["gaussian"] == "nats/vector" and saved["conditional_accuracy_trusted"]
    model = genreg.load_model(run)
    test = recorded_data(run / "model.safetensors")[1].test
    truth = test.images.double().numpy()
    decoded = model.reconstruct(test.images, {"label": test.labels}).double().numpy()
    r2 = 1 - ((truth - decoded) ** 2).sum(0) / ((truth - truth.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(saved["reconstruction_r2_per_feature"], r2, rtol=1e-5, atol=1e-6)
    for row in ("gaussian (nats/vector)", "-ELBO (nats/vector)", "NLL, IWAE (nats/vector)"):
        assert row in result.output
    assert f"reconstruction R², mean over features  {saved['reconstruction_r2']:.3f} (8 features)" in result.output
    assert 0 < saved["reconstruction_r2"] < 1  # measured 0.32 after 150 steps: the code keeps part of each feature
    assert "reconstruction R² per feature: lowest " in result.output and "nats/image" not in result.output
    assert f"wrote {run / 'eval.json'}" in result.output


def test_eval_of_a_run_of_named_classes_and_a_transform_says_so(tmp_path: Path, monkeypatch) -> None:
    """Counts labelled "B", "CD14+ Monocyte", "T", fitted with log1p, standardize: eval.json and the printout name
    the classes, the features and the transform the figures are measured after."""
    import numpy as np

    pd = pytest.importorskip("pandas")
    from genreg.cli.measure import r2_summary
    from tests.viz.vectors import GENES, NAMES, SPECS, TRANSFORM, counts

    monkeypatch.setenv("GENREG_CACHE", str(tmp_path / "cache"))
    x, labels = counts()
    columns = {name: x[:, i] for i, name in enumerate(GENES)}
    pd.DataFrame({**columns, "cell_type": labels}).to_csv(tmp_path / "counts.csv", index=False)
    data = {"type": "table", "path": str(tmp_path / "counts.csv"), "label": "cell_type", "transform": TRANSFORM}
    spec = {"model": SPECS["cvae"], "data": data, "train": {"epochs": 5, "pictures": False}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = tmp_path / "run"
    result = invoke("run", tmp_path / "spec.json", "--out", run, "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke("eval", run, "--iw-samples", "5", "--n-per-class", "10")
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "eval.json").read_text())
    assert saved["classes"] == NAMES and saved["transform"] == TRANSFORM and saved["feature_names"] == GENES
    assert "conditional accuracy per class (10 samples each): B: " in result.output
    assert "CD14+ Monocyte: " in result.output and "units: the model's, after the dataset's transform" in result.output
    assert "(feature 'gene" in result.output
    assert r2_summary([0.5, None, 0.9], ["a", "b", "c"]).startswith(
        "reconstruction R² per feature: lowest 0.500 (feature 'a'), median 0.900, highest 0.900 (feature 'c')"
    )
    assert np.isfinite(saved["reconstruction_r2"])
