"""Tests genreg/evaluation/report.py: the plain and Markdown tables of evaluation results."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from genreg.errors import OutputError
from genreg.evaluation.evaluate import evaluate_file
from genreg.evaluation.report import compare_runs, format_table, markdown_table, mixed_iwae_samples
from tests.helpers import read_only_folder

pytestmark = pytest.mark.usefixtures("module_on_one_thread")  # tiny networks: one thread is much faster


def rows_of(table: str) -> dict[str, list[str]]:
    """Plain table -> {metric label: [cell per run]}, splitting on the two-space column gaps."""
    lines = table.splitlines()
    header = lines[0]
    starts = [0] + [i + 2 for i in range(len(header) - 2) if header[i : i + 2] == "  " and header[i + 2] != " "]
    out = {}
    for line in lines[:1] + lines[2:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        out[cells[0]] = cells[1:]
    return out


def iwae_cell(result: dict, k: int) -> str:
    """``164.18 (K=20)``, or ``164.18 (K=20, bf16)`` for bounds measured in bf16 (on a CPU with native bf16)."""
    return f"{result['nll_iwae']:.2f} (K={k}{', bf16' if result['precision'] == 'bf16' else ''})"


def test_format_table_has_one_column_per_run(evaluations: dict[str, dict]) -> None:
    table = format_table(evaluations)
    rows = rows_of(table)
    assert rows["metric"] == ["ae", "vae"]
    vae = evaluations["vae"]
    assert rows["bce (nats/image)"] == [f"{evaluations['ae']['losses']['bce']:.2f}", f"{vae['losses']['bce']:.2f}"]
    assert rows["kld (nats/image)"] == ["—", f"{vae['losses']['kld']:.2f}"]
    assert rows["-ELBO (nats/image)"] == ["—", f"{vae['neg_elbo']:.2f}"]
    assert rows["NLL, IWAE (nats/image)"] == ["—", iwae_cell(vae, 20)]
    assert rows["active units"] == [f"{r['active_units']} / 4" for r in evaluations.values()]
    assert rows["k-NN accuracy (k=5, 5-fold)"][1] == f"{vae['knn_accuracy']:.3f} (chance {vae['chance']:.3f})"
    assert rows["k-NN reads"] == ["codes, 4 dims", f"draws z ~ q, {vae['active_units']} active units"]
    assert all(len(cells) == 2 for cells in rows.values())


def test_the_table_shows_each_class_columns_neighbourhoods(evaluations: dict[str, dict]) -> None:
    """Issue 19: a row per class column (the digits have one, ``label``); an evaluation written before the
    columns were measured shows — in them."""
    older = {key: value for key, value in evaluations["ae"].items() if key != "columns"}
    rows = rows_of(format_table({"vae": evaluations["vae"], "older": older}))
    label = evaluations["vae"]["columns"]["label"]
    assert rows["latent neighbourhoods by column"] == [f"15 nearest, on {label['on']}", "—"]
    assert rows["column 'label'"] == [
        f"k-NN {label['knn_accuracy']:.3f} (chance {label['chance']:.3f}), entropy {label['mixing_entropy']:.2f} "
        f"({label['mixing_entropy_expected']:.2f} if mixed); not conditioned",
        "—",
    ]


def test_format_table_has_one_row_per_metric(evaluations: dict[str, dict]) -> None:
    rows = rows_of(format_table(evaluations))
    nll = [label for label in rows if label.startswith("NLL")]
    assert len(nll) == 1
    assert rows[nll[0]] == ["—", iwae_cell(evaluations["vae"], 20)]


def test_markdown_table_matches_the_plain_table(evaluations: dict[str, dict]) -> None:
    lines = markdown_table(evaluations).splitlines()
    assert lines[0] == "| metric | ae | vae |"
    assert lines[1] == "| --- | --- | --- |"
    cells = {line.split(" | ")[0].removeprefix("| "): line.removesuffix(" |").split(" | ")[1:] for line in lines[2:]}
    assert all(len(row) == 2 for row in cells.values())
    plain = rows_of(format_table(evaluations))
    del plain["metric"]
    assert cells == plain


def test_markdown_table_cells_survive_github_rendering(evaluations: dict[str, dict]) -> None:
    # GFM tables: a row's cells are split on every '|' not escaped as '\|' (spaces around it do not matter).
    for line in markdown_table(evaluations).splitlines():
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        assert len(cells) == 3, line


# --------------------------------------------------------------------------- issue 16, case 4: units


def test_the_table_prints_each_terms_own_unit() -> None:
    """Case 4 of issue 16: every loss row read "nats/image", mse's too (a sum of squared errors)."""
    from genreg.evaluation.report import loss_rows

    units = {"loss": "(weighted sum of mixed units)", "mse": "squared error/image", "mmd": "(unit not declared)"}
    recorded = {"losses": {"loss": 9.0, "mse": 3.0, "mmd": 0.5, "kld": 2.0, "neg_elbo": 30.0}, "units": units}
    assert loss_rows(recorded) == [("mse (squared error/image)", "3.00"), ("mmd (unit not declared)", "0.50"),
                                   ("kld (unit not recorded)", "2.00")]  # fmt: skip
    older = {"losses": {"loss": 9.0, "mse": 3.0, "kld": 2.0, "recon": 1.0, "nll": 4.0}}  # no units recorded
    assert loss_rows(older) == [("mse (squared error/image)", "3.00"), ("kld (nats/image)", "2.00"),
                                ("recon (unit not recorded)", "1.00"), ("nll (nats/image)", "4.00")]  # fmt: skip


BEFORE_LAYOUT = Path(__file__).parents[1] / "fixtures" / "before_layout"


def test_mixed_iwae_samples_names_each_runs_k() -> None:
    """Issue 16, case 5: IWAE figures of different K sat side by side without a word."""
    results = {"ae": {}, "vae": {"iw_samples": 1000}, "cvae": {"iw_samples": 20}}
    note = mixed_iwae_samples(results)
    assert "different numbers of draws per image (vae K=1000, cvae K=20)" in note
    assert "genreg eval RUN --iw-samples K" in note
    assert mixed_iwae_samples({"ae": {}, "vae": {"iw_samples": 20}, "cvae": {"iw_samples": 20}}) is None


@pytest.mark.slow
def test_compare_warns_when_iwae_estimates_used_different_k(tmp_path: Path) -> None:
    runs = [tmp_path / "k2", tmp_path / "k3"]
    for run, k in zip(runs, (2, 3), strict=True):
        shutil.copytree(BEFORE_LAYOUT / "vae_run", run)
        evaluate_file(run, iw_samples=k)
    markdown = tmp_path / "table.md"
    with pytest.warns(UserWarning, match=r"different numbers of draws per image \(k2 K=2, k3 K=3\)"):
        table, _ = compare_runs(runs, tmp_path / "compare.png", markdown)
    nll = rows_of(table)["NLL, IWAE (nats/image)"]
    assert [cell.split(" (")[1].split(",")[0].rstrip(")") for cell in nll] == ["K=2", "K=3"]  # each says its K
    assert "Note: the NLL, IWAE row mixes estimates" in markdown.read_text()


# --------------------------------------------------------------------------- outputs checked first; read-only runs


@pytest.fixture
def vae_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(BEFORE_LAYOUT / "vae_run", run)
    return run


@pytest.mark.parametrize(
    ("picture", "table", "says"),
    [
        ("c.png", "run/model.safetensors", "--markdown {tmp}/run/model.safetensors: a file of the run in"),
        ("c.png", "run/spec.json", "--markdown {tmp}/run/spec.json: a file of the run in"),
        ("c.png", "run/eval-train.json", "--markdown {tmp}/run/eval-train.json: a file of the run in"),
        ("run/samples.png", None, "-o {tmp}/run/samples.png: a file of the run in"),
        ("c.png", "table.csv", "the table is text, written to a file ending in .md, .markdown, .txt; '.csv' is"),
        ("c.png", "nodir/c.md", "--markdown {tmp}/nodir/c.md: the folder {tmp}/nodir does not exist"),
    ],
)
def test_compare_refuses_a_table_or_picture_it_cannot_or_must_not_write_before_measuring(
    vae_run: Path, monkeypatch: pytest.MonkeyPatch, picture: str, table: str | None, says: str
) -> None:
    """`compare runA --markdown runA/model.safetensors` wrote the table over the model file; `--markdown nodir/c.md`
    failed with a traceback after every run was measured."""
    from genreg.errors import GenregError
    from genreg.evaluation import report

    tmp = vae_run.parent
    before = {path.name: path.read_bytes() for path in vae_run.iterdir()}
    monkeypatch.setattr(report, "recorded_evaluation", lambda *a, **k: pytest.fail("work started"))
    markdown = None if table is None else tmp / table
    with pytest.raises(GenregError) as caught:
        compare_runs([vae_run], tmp / picture, markdown, iw_samples=2)
    assert says.format(tmp=tmp) in str(caught.value)
    assert {path.name: path.read_bytes() for path in vae_run.iterdir()} == before


def test_compare_measures_a_run_whose_eval_json_it_cannot_write(vae_run: Path, monkeypatch) -> None:
    """On a read-only file system compare refused the run ("cannot write ... eval.json"): eval.json is only its
    cache, so it measures the run, says in one warning line that nothing was kept, and writes its own outputs."""
    read_only_folder(monkeypatch, vae_run)
    out = vae_run.parent / "out"
    out.mkdir()
    with pytest.warns(UserWarning) as caught:
        table, written = compare_runs([vae_run], out / "c.png", out / "c.md", iw_samples=2)
    [warning] = [str(w.message) for w in caught]
    assert "eval.json: cannot write in" in warning and "(Read-only file system)" in warning
    assert warning.endswith("the evaluation is shown but not kept, so it is measured again next time.")
    assert "\n" not in warning and not (vae_run / "eval.json").exists()
    assert written == [out / "c.png", out / "c.md"] and "NLL, IWAE" in table
    with pytest.raises(OutputError, match=r"the evaluation file .*eval\.json: cannot write in"):
        evaluate_file(vae_run, iw_samples=2)  # genreg eval's job is to write it: refused, before any work


def vector_result(**changes: object) -> dict:
    """An evaluation of a VAE of 5-feature vectors, as ``evaluate_model`` writes it."""
    result = {
        "model": "vae",
        "losses": {"loss": 30.5, "gaussian": 28.25, "kld": 2.25, "neg_elbo": 30.5},
        "units": {"loss": "nats/vector", "gaussian": "nats/vector", "kld": "nats/vector", "neg_elbo": "nats/vector"},
        "features": 5,
        "neg_elbo": 30.4,
        "nll_iwae": 29.9,
        "iw_samples": 100,
        "precision": "fp32",
        "reconstruction_r2": 0.7312,
        "reconstruction_r2_per_feature": [0.5, 0.9, 0.7, 0.8, 0.7612],
        "r2_features": 5,
        "latent_dim": 2,
        "active_units": 2,
        "gaussian_kl": 0.1,
        "mmd": 0.01,
        "knn_accuracy": 0.9,
        "knn_on": "draws z ~ q, 2 active units",
        "chance": 0.34,
    }
    return result | changes


def test_the_table_of_vectors_says_nats_per_vector_and_shows_the_r2() -> None:
    rows = rows_of(format_table({"table": vector_result()}))
    assert rows["gaussian (nats/vector)"] == ["28.25"] and rows["kld (nats/vector)"] == ["2.25"]
    assert rows["-ELBO (nats/vector)"] == ["30.40"] and rows["NLL, IWAE (nats/vector)"] == ["29.90 (K=100)"]
    assert rows["reconstruction R², mean over features"] == ["0.731 (5 features)"]
    assert not any("image" in label for label in rows)


def test_the_r2_row_says_which_features_it_leaves_out_and_images_have_none(evaluations: dict[str, dict]) -> None:
    per_feature = [0.5, None, 0.7, None, 0.9]
    result = vector_result(reconstruction_r2_per_feature=per_feature, r2_features=3, reconstruction_r2=0.7)
    rows = rows_of(format_table({"table": result, **evaluations}))
    assert rows["reconstruction R², mean over features"] == ["0.700 (3 features; 2 constant left out)", "—", "—"]
    assert rows["-ELBO (nats/image)"] == ["—", "—", f"{evaluations['vae']['neg_elbo']:.2f}"]
    assert not any("R²" in label for label in rows_of(format_table(evaluations)))


def test_skipped_metrics_show_why_and_classes_and_transforms_are_named() -> None:
    skipped = {"knn_accuracy": "the data has no labels", "conditional_accuracy": "the data has no labels"}
    unlabelled = vector_result(knn_accuracy=None, knn_on=None, chance=None, conditional_accuracy=None, skipped=skipped)
    conditional = vector_result(
        conditional_accuracy=0.8,
        conditional_accuracy_per_class=[0.9, 0.6, 0.9],
        classes=["B", "CD14+ Monocyte", "T"],
        classifier_test_accuracy=0.95,
        classifier_reconstruction_accuracy=0.9,
        conditional_accuracy_trusted=True,
        transform=["log1p", "standardize"],
    )
    older = conditional | {"classes": None, "transform": None}  # written before classes were named
    rows = rows_of(format_table({"a": unlabelled, "b": conditional, "c": older}))
    knn = ["— (the data has no labels)", "0.900 (chance 0.340)", "0.900 (chance 0.340)"]
    assert rows["k-NN accuracy (k=5, 5-fold)"] == knn and rows["k-NN reads"][0] == "—"
    assert rows["conditional accuracy"][0] == "— (the data has no labels)"
    assert rows["conditional accuracy, lowest class"] == ["—", "CD14+ Monocyte: 0.600", "1: 0.600"]
    assert rows["transform (the figures' scale)"] == ["—", "log1p, standardize", "—"]
    r2 = rows["reconstruction R², mean over features"]
    assert r2[1] == "0.731 (5 features; on the model's scale, after the transform)" and r2[2] == "0.731 (5 features)"
