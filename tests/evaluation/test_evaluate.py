"""Tests genreg/evaluation/evaluate.py: ``evaluate_model`` reports the documented metrics, and its latent metrics
match genreg.evaluation.metrics computed on their own; an ``eval.json`` names the model file it measured, and
is not reused for another."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import genreg
from genreg.evaluation import evaluate
from genreg.evaluation import metrics as evaluation
from genreg.evaluation.evaluate import EVAL_FORMAT, evaluate_file, evaluate_model, recorded_evaluation
from genreg.evaluation.mixing import neighbourhood_scores
from genreg.evaluation.report import compare_runs
from genreg.files.model_files import read_metadata
from genreg.files.tensors import CHECKSUM
from genreg.model.losses import metric_units
from tests.helpers import TINY_PARTS

pytestmark = pytest.mark.usefixtures("module_on_one_thread")  # tiny networks: one thread is much faster

# --------------------------------------------------------------------------------------------------
# evaluate_model end to end, on the AE and VAE of conftest's ``evaluations``

LATENT_KEYS = {
    "format",
    "latent_dim",
    "active_units",
    "gaussian_kl",
    "mmd",
    "knn_accuracy",
    "knn_on",
    "chance",
    "columns",
}


BEFORE_LAYOUT = Path(__file__).parents[1] / "fixtures" / "before_layout"


def test_evaluate_model_reports_the_documented_metrics(evaluations: dict[str, dict], digits) -> None:
    ae, vae = evaluations["ae"], evaluations["vae"]
    assert set(ae) == {"model", "split", "images", "losses", "units"} | LATENT_KEYS
    assert (
        set(vae)
        == {"model", "split", "images", "losses", "units", "neg_elbo", "nll_iwae", "iw_samples", "precision"}
        | {"precision_note"}
        | LATENT_KEYS
    )
    assert (ae["model"], vae["model"]) == ("ae", "vae")
    for result in (ae, vae):
        assert result["split"] == "test" and result["images"] == 200
        assert result["latent_dim"] == 4 and 0 <= result["active_units"] <= 4
        assert result["chance"] == pytest.approx(evaluation.chance_level(digits.test.labels))
        assert result["chance"] == pytest.approx(0.1)  # 20 test digits of each class
        # Even these briefly trained 4-D latents carry the class: measured 0.37-0.50 (AE), 0.46-0.56 (VAE).
        assert result["chance"] + 0.15 < result["knn_accuracy"] <= 1.0
        assert math.isfinite(result["gaussian_kl"]) and math.isfinite(result["mmd"])
    assert set(ae["losses"]) == {"loss", "bce", "nll"}  # an AE's objective: the reconstruction NLL
    assert set(vae["losses"]) == {"loss", "bce", "kld", "neg_elbo"}
    assert ae["units"] == {"loss": "nats/image", "bce": "nats/image", "nll": "nats/image"}
    assert vae["units"] == dict.fromkeys(vae["losses"], "nats/image")
    losses = vae["losses"]
    assert losses["loss"] == pytest.approx(losses["bce"] + losses["kld"], abs=1e-2)
    # bce + kld (one draw, analytic KL) and neg_elbo (20 draws, sampled KL) estimate the same negative ELBO;
    # they differ by Monte-Carlo noise of a few tenths of a nat over 200 images.
    assert losses["loss"] == pytest.approx(vae["neg_elbo"], abs=2.0)
    assert vae["iw_samples"] == 20 and vae["nll_iwae"] <= vae["neg_elbo"]
    # A VAE's aggregate posterior is pulled towards N(0, I); an AE's is not.
    assert vae["gaussian_kl"] < ae["gaussian_kl"]
    assert vae["active_units"] >= 1
    for result, on in ((ae, "codes, 4 dims"), (vae, f"posterior means, {vae['active_units']} active units")):
        assert set(result["columns"]) == {"label"}  # the digits' only column
        label = result["columns"]["label"]
        assert (label["k"], label["on"], label["role"]) == (15, on, "not conditioned")
        assert label["chance"] == result["chance"] and label["knn_accuracy"] > label["chance"] + 0.15
        assert label["mixing_entropy"] < label["mixing_entropy_expected"]  # the digits' classes do not mix


def test_evaluate_model_latent_metrics_match_the_parts(digits_vae, digits, evaluations: dict[str, dict]) -> None:
    post = evaluation.posterior(digits_vae, digits.test)
    assert post.mu.shape == post.log_var.shape == (200, 4)
    features, described = evaluation.class_features(post, evaluation.aggregate_sample(post))
    assert evaluations["vae"]["knn_accuracy"] == evaluation.knn_accuracy(features, post.labels)
    assert evaluations["vae"]["knn_on"] == described == f"draws z ~ q, {evaluation.active_units(post.mu)} active units"
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


def test_an_evaluation_of_an_older_format_is_measured_again(tmp_path) -> None:
    """Issue 16: eval.json written before k-NN read draws must not be shown beside new figures."""
    run = tmp_path / "run"
    shutil.copytree(BEFORE_LAYOUT / "vae_run", run)
    result, path = evaluate_file(run, iw_samples=2)
    assert result["format"] == EVAL_FORMAT
    path.write_text(json.dumps({**result, "format": None}))  # what genreg wrote before: no format
    assert recorded_evaluation(run / "model.safetensors") is None


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "\udcff not UTF-8"])
def test_an_eval_json_beyond_the_json_bounds_is_measured_again(tmp_path, text: str) -> None:
    """`compare` of a run whose eval.json nested 100,000 lists ended in a RecursionError traceback: it is read
    with genreg's bounded JSON reader, and one it refuses is stale like any other."""
    run = tmp_path / "run"
    shutil.copytree(BEFORE_LAYOUT / "vae_run", run)
    (run / "eval.json").write_text(text, errors="surrogateescape")
    assert recorded_evaluation(run / "model.safetensors") is None


class ReadsClassZero(torch.nn.Module):
    """A "reference classifier" that calls every image class 0."""

    def __init__(self, shape: tuple[int, int, int], classes: int) -> None:
        super().__init__()
        self.image_shape, self.num_classes = shape, classes
        self.bias = torch.nn.Parameter(torch.zeros(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(torch.arange(self.num_classes) == 0, 1.0, 0.0).expand(len(x), -1) + self.bias


def test_a_conditional_accuracy_the_classifier_cannot_back_is_flagged(monkeypatch) -> None:
    """Issue 16, case 3: the classifier's reading of the model's reconstructions stands beside the conditional
    accuracy, and a classifier that misreads them (here: it calls everything class 0) is flagged."""
    split = genreg.Split(torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(30) % 3)
    data = genreg.DataSplits(split, split, 3)
    torch.manual_seed(0)
    model = genreg.build_model({"type": "cvae", **TINY_PARTS}, data.info).eval()
    classifier = ReadsClassZero((1, 8, 8), 3)
    monkeypatch.setattr(evaluate, "reference_classifier", lambda spec, data: (classifier, 0.98))
    with pytest.warns(UserWarning, match=r"reads only 33.3% of this model's reconstructions .* against 98.0%"):
        result = evaluate.evaluate_model(model, data, data_spec={"type": "npz"}, iw_samples=2, n_per_class=10)
    assert result["classifier_test_accuracy"] == 0.98
    assert result["classifier_reconstruction_accuracy"] == pytest.approx(1 / 3)
    assert result["conditional_accuracy"] == pytest.approx(1 / 3) and not result["conditional_accuracy_trusted"]


def test_the_loss_rows_do_not_depend_on_the_bounds_k_or_precision(digits_vae, digits) -> None:
    """The one-pass losses are drawn right after the seed, in fp32: K and --precision change the bounds only."""
    test = genreg.DataSplits(digits.train, digits.test.take(slice(0, 200)), digits.num_classes, digits.binarize)
    runs = [evaluate_model(digits_vae, test, iw_samples=k, precision=p) for k, p in [(2, "fp32"), (5, "bf16")]]
    assert runs[0]["losses"] == runs[1]["losses"]
    assert runs[0]["precision"] == "fp32" and runs[1]["precision"] == "bf16"


@pytest.mark.parametrize(
    ("trained_in", "expected"), [("fp32", "fp32 (the run's train.precision fp32)"), ("auto", "bf16")]
)
def test_eval_auto_keeps_a_run_trained_in_fp32_in_fp32(tmp_path, cpu_has, trained_in: str, expected: str) -> None:
    """``--precision auto`` is bf16 "where training would": not for a run whose spec set train.precision fp32."""
    cpu_has(avx512_bf16=True)
    spec = {
        "model": {"type": "vae", "latent_dim": 2, "encoder": {"type": "mlp", "hidden": [16]}},
        "data": {"type": "mnist-sample"},
        "train": {"epochs": 1, "precision": trained_in, "pictures": False},
    }
    genreg.run(genreg.load_spec(spec), tmp_path / "run", progress=False)
    result, _ = evaluate_file(tmp_path / "run", iw_samples=2)
    assert result["precision_note"].startswith(expected)


# --------------------------------------------------------------------------------------------------
# Vectors: a cVAE of a table's rows, with the ``gaussian`` likelihood


def vector_data() -> genreg.DataSplits:
    """300 rows of 12 real features (3 classes, centres ~2 noise stds apart per feature), 240 to train on."""
    from genreg.data import as_split, finish
    from genreg_builtin.datasets import NpzConfig

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    x = (rng.normal(size=(3, 12))[labels] * 2 + rng.normal(size=(300, 12))).astype(np.float32)
    train, test = as_split(x[:240], labels[:240], "test"), as_split(x[240:], labels[240:], "test")
    return finish(train, test, NpzConfig(path="unused.npz"), "test")


VECTOR_CVAE = {
    "type": "cvae",
    "latent_dim": 2,
    "encoder": {"type": "mlp", "hidden": [32]},
    "decoder": {"type": "mlp", "hidden": [32]},
    "conditioner": {"type": "onehot"},
    "losses": [{"type": "gaussian"}, {"type": "kld"}],
}


def test_evaluate_model_measures_vectors(tmp_path, monkeypatch) -> None:
    """Every metric of an image model, in nats per vector, and the reconstructions' R^2, as numpy computes it from
    ``model.reconstruct``; conditional accuracy read by the MLP reference classifier."""
    monkeypatch.setenv("GENREG_CACHE", str(tmp_path))
    data = vector_data()
    model = genreg.build_model(VECTOR_CVAE, data.info)
    genreg.train(model, data, genreg.TrainConfig(epochs=20, batch_size=64, device="cpu"), seed=0, progress=False)
    result = evaluate_model(model, data, data_spec={"type": "npz", "path": "unused.npz"}, iw_samples=20)
    assert result["features"] == 12 and result["images"] == 60
    assert set(result["units"].values()) == {"nats/vector"}
    assert set(result["losses"]) == {"loss", "gaussian", "kld", "neg_elbo"}
    assert math.isfinite(result["nll_iwae"]) and result["nll_iwae"] <= result["neg_elbo"]
    # 12 features under sigma = 1: -log N >= 12 * 0.92 nats; measured 27.5 after 20 epochs.
    assert 11 < result["nll_iwae"] < 100
    x = data.test.images.numpy().astype(np.float64)
    reconstructed = model.reconstruct(data.test.images, {"label": data.test.labels}).numpy().astype(np.float64)
    expected = 1 - ((x - reconstructed) ** 2).sum(0) / ((x - x.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(result["reconstruction_r2_per_feature"], expected, rtol=1e-5, atol=1e-6)
    assert result["reconstruction_r2"] == pytest.approx(expected.mean(), rel=1e-5) and result["r2_features"] == 12
    assert 0.0 < result["reconstruction_r2"] < 1.0  # measured 0.29 after 20 epochs (-0.25 after 2: not yet fitted)
    assert 0 <= result["conditional_accuracy"] <= 1 and result["classifier_test_accuracy"] >= 0.9  # measured 1.0
    json.dumps(result, allow_nan=False)  # plain JSON: no NaN for a feature without an R^2


def test_units_per_image_are_said_per_vector_for_vectors() -> None:
    terms = [SimpleNamespace(config=SimpleNamespace(metric_name=name), unit=unit) for name, unit in UNITS.items()]
    assert metric_units(terms, "vector") == {
        "loss": "(weighted sum of mixed units)",
        "gaussian": "nats/vector",
        "mse": "squared error/vector",
        "x": "(unit not declared)",
    }
    assert metric_units(terms)["gaussian"] == "nats/image"


UNITS = {"gaussian": "nats/image", "mse": "squared error/image", "x": "(unit not declared)"}


# --------------------------------------------------------------------------------------------------
# Data in other units, classes named by strings, data without labels


def test_eval_json_names_the_transform_the_classes_and_the_features(tmp_path, monkeypatch) -> None:
    from genreg.evaluation.report import format_table
    from tests.viz.vectors import GENES, NAMES, SPECS, named_data

    monkeypatch.setenv("GENREG_CACHE", str(tmp_path))
    data = named_data()
    torch.manual_seed(0)
    model = genreg.build_model(SPECS["cvae"], data.info).eval()
    spec = {"type": "npz", "path": "unused.npz", "transform": ["log1p", "standardize"]}
    with pytest.warns(UserWarning, match="not to be trusted"):  # an untrained model's reconstructions
        result = evaluate_model(model, data, data_spec=spec, iw_samples=2, n_per_class=5)
    assert result["transform"] == ["log1p", "standardize"] and "after the dataset's transform" in result["scale"]
    assert result["classes"] == NAMES and len(result["conditional_accuracy_per_class"]) == 3
    assert result["feature_names"] == GENES and len(result["reconstruction_r2_per_feature"]) == 12
    assert result["knn_accuracy"] is not None and "skipped" not in result
    json.dumps(result, allow_nan=False)
    table = format_table({"run": result})
    assert "transform (the figures' scale)" in table and "log1p, standardize" in table
    assert "on the model's scale, after the transform" in table and "conditional accuracy, lowest class" in table


def test_eval_of_data_without_labels_skips_the_class_metrics_and_says_why(tmp_path, monkeypatch) -> None:
    from genreg.evaluation.report import format_table
    from tests.viz.vectors import SPECS, named_data

    data = named_data(labelled=False)
    model = genreg.build_model(SPECS["vae"], data.info).eval()
    result = evaluate_model(model, data, data_spec={"type": "npz", "path": "unused.npz"}, iw_samples=2)
    assert result["knn_accuracy"] is None and result["chance"] is None
    assert result["skipped"] == {"knn_accuracy": "the data has no labels"}
    assert "classes" not in result and "conditional_accuracy" not in result  # a VAE draws no class
    assert result["columns"] == {}  # the label column holds one class
    json.dumps(result, allow_nan=False)
    rows = {line.split("  ")[0]: line.rstrip() for line in format_table({"run": result}).splitlines()}
    assert rows["k-NN accuracy (k=5, 5-fold)"].endswith("  — (the data has no labels)")
    assert rows["k-NN reads"].endswith("  —")


def test_eval_of_a_split_of_one_sample_says_what_it_cannot_measure() -> None:
    """k-NN of a 1-sample split crashed (torch.mode of no neighbours); the fitted Gaussian was NaN."""
    from genreg.data import DataSplits
    from genreg.evaluation.report import format_table
    from tests.viz.vectors import SPECS, named_data

    data = named_data()
    one = DataSplits(data.train, data.test.take(slice(0, 1)), data.num_classes, features=data.features)
    model = genreg.build_model({**SPECS["vae"], "latent_dim": 5}, one.info).eval()
    result = evaluate_model(model, one, iw_samples=2)
    json.dumps(result, allow_nan=False)
    reason = "the split has 1 vector; it needs at least 2"
    assert set(result["skipped"]) == {"active_units", "gaussian_kl", "mmd", "knn_accuracy", "reconstruction_r2"}
    assert set(result["skipped"].values()) == {reason} and math.isfinite(result["nll_iwae"])
    table = format_table({"one": result})
    assert f"reconstruction R², mean over features  — ({reason})" in table
    assert f"k-NN accuracy (k=5, 5-fold)            — ({reason})" in table


# --------------------------------------------------------------------------------------------------
# Issue 19: whether each class column (a batch, the cell type) mixes or stays apart in the latent space


def batch_data() -> genreg.DataSplits:
    """400 rows of 12 features: 3 cell types ("label", 3 noise stds apart per feature) and 2 batches (a shift of
    1 std), each row's total a float column ("depth"); 300 to train on."""
    rng = np.random.default_rng(0)
    types, batches = rng.integers(0, 3, 400), rng.integers(0, 2, 400)
    x = 3 * rng.normal(size=(3, 12))[types] + rng.normal(size=(2, 12))[batches] + rng.normal(size=(400, 12))
    x = torch.tensor(x, dtype=torch.float32)

    def split(rows: slice) -> genreg.Split:
        columns = {"batch": torch.tensor(batches[rows]), "depth": x[rows].sum(1)}
        return genreg.Split(x[rows], torch.tensor(types[rows]), columns)

    return genreg.DataSplits(split(slice(0, 300)), split(slice(300, None)), 3)


def test_eval_scores_every_class_column_and_says_which_the_model_reads() -> None:
    from genreg.evaluation.report import format_table

    data = batch_data()
    torch.manual_seed(0)
    model = genreg.build_model({**VECTOR_CVAE, "conditioner": {"type": "onehot", "column": "batch"}}, data.info)
    genreg.train(model, data, genreg.TrainConfig(epochs=2, batch_size=64, device="cpu"), seed=0, progress=False)
    result = evaluate_model(model, data, iw_samples=2)
    columns = result["columns"]
    assert list(columns) == ["label", "batch"]  # "depth" is continuous
    assert columns["label"]["role"] == "not conditioned" and columns["batch"]["role"] == "conditioned"
    post = evaluation.posterior(model, data.test)
    codes = post.mu[:, evaluation.active_mask(post.mu)]
    for name, scores in columns.items():
        assert scores == neighbourhood_scores(codes, data.test.columns[name]) | {
            "k": 15,
            "on": f"posterior means, {codes.shape[1]} active units",
            "role": scores["role"],
        }
    # measured after 2 epochs: label k-NN 0.95 (chance 0.36), entropy 0.25 (0.93 if mixed); the batch 0.70 (chance
    # 0.51), entropy 0.89 (0.95): the cell types stay apart, the batches mostly mix
    assert columns["label"]["knn_accuracy"] > columns["label"]["chance"] + 0.3
    assert columns["batch"]["mixing_entropy"] > columns["label"]["mixing_entropy"] + 0.3
    json.dumps(result, allow_nan=False)
    rows = dict(line.split("  ", 1) for line in format_table({"run": result}).splitlines())
    assert rows["latent neighbourhoods by column"].strip() == f"15 nearest, on {columns['label']['on']}"
    assert "batches should mix" in rows["by column, how to read"]
    batch = columns["batch"]
    assert rows["column 'batch'"].strip() == (
        f"k-NN {batch['knn_accuracy']:.3f} (chance {batch['chance']:.3f}), entropy {batch['mixing_entropy']:.2f} "
        f"({batch['mixing_entropy_expected']:.2f} if mixed); conditioned"
    )


def test_a_latent_without_an_active_unit_scores_no_column() -> None:
    from genreg.evaluation.report import column_rows

    split = batch_data().test
    post = evaluation.Posterior(torch.zeros(len(split), 3), torch.zeros(len(split), 3), split.labels)
    assert evaluate.column_neighbourhoods(SimpleNamespace(conditional=False), split, post) is None
    result = {"columns": {}, "skipped": {"columns": evaluate.NO_ACTIVE_UNITS}}
    assert column_rows(result) == [("latent neighbourhoods by column", f"— ({evaluate.NO_ACTIVE_UNITS})")]
    assert column_rows({"columns": {}}) == column_rows({}) == []  # none to score, or measured before issue 19
