"""Tests genreg/data/new_data.py (issue 18): new data read for a trained model, a file of the kind it was trained on
(every row in file order, in the data's units, classes through the model's vocabulary by value) or a dataset spec,
and ``posterior_of`` (posterior means and variances, numpy or torch).

The models here are untrained (built and saved with a recorded dataset spec, as a run saves them): what is tested
is how the data reaches them. tests/cli/test_apply.py trains real runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import torch

import genreg
from genreg.data.new_data import posterior_of, read_new_data
from genreg.errors import DataError, InputError, SpecError

FEATURES = [f"g{j}" for j in range(6)]
NAMES = np.array(["CD14+ Monocyte", "B cell", "NK cell"])
MLP = {"encoder": {"type": "mlp", "hidden": [16]}, "decoder": {"type": "mlp", "hidden": [16]}}
LOSSES = {"ae": [{"type": "gaussian"}], "vae": [{"type": "gaussian"}, {"type": "kld"}]}
TRANSFORM = ["log1p", "standardize"]


def cells(rows: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x (rows, 6) float32 of positive counts-like values, labels (rows,) strings of 3 cell types, each present)."""
    rng = np.random.default_rng(seed)
    labels = NAMES[np.arange(rows) % 3]
    rng.shuffle(labels)
    scale = 1 + 4 * (labels[:, None] == NAMES[0]) + 2 * np.linspace(0, 1, len(FEATURES))[None, :]
    return rng.gamma(2.0, scale).astype(np.float32), labels


def model_spec(kind: str) -> dict:
    return {"type": kind, "latent_dim": 2, **MLP, "losses": LOSSES.get(kind, LOSSES["vae"])}


def saved_model(folder: Path, kind: str, data_spec: dict, record: bool = True, name: str = "model") -> Path:
    """An untrained ``kind`` of the data ``data_spec`` loads, saved as a run saves it: with the dataset spec recorded
    (``record``), or as Python saves it, without."""
    data = genreg.load_data(data_spec)
    torch.manual_seed(0)
    model = genreg.build_model(model_spec(kind), data.info)
    spec = {"model": model.spec, "data": data_spec} if record else None
    return genreg.save_model(model, folder / f"{name}.safetensors", spec=spec)


def npz_model(folder: Path, kind: str = "cvae", record: bool = True, **saved: np.ndarray) -> Path:
    """A model of ``cells()`` from a .npz (string labels, log1p then standardize), and the file it was trained on."""
    x, labels = cells()
    np.savez(folder / "train.npz", **{"x": x, "labels": labels, **saved})
    spec = {"type": "npz", "path": str(folder / "train.npz"), "transform": TRANSFORM}
    return saved_model(folder, kind, spec, record, name=kind)


def table_model(folder: Path, kind: str = "cvae") -> Path:
    """A model of ``cells()`` from a CSV of the features, a text ``cell_type`` label and a float ``dose``."""
    x, labels = cells()
    frame = pd.DataFrame(x, columns=FEATURES).assign(cell_type=labels, dose=np.linspace(0, 1, len(x)))
    frame.to_csv(folder / "train.csv", index=False)
    spec = {"type": "table", "path": str(folder / "train.csv"), "features": FEATURES, "label": "cell_type"}
    return saved_model(folder, kind, {**spec, "columns": ["dose"], "transform": TRANSFORM}, name=f"table-{kind}")


# --------------------------------------------------------------------------- npz


def test_an_npz_is_read_whole_in_file_order_in_the_data_units_with_the_models_classes(tmp_path: Path) -> None:
    run = npz_model(tmp_path)
    x, labels = cells(40, seed=1)
    labels[:5] = "NK cell"  # the new file's own sorted values differ from the model's: mapped by value
    np.savez(tmp_path / "new.npz", x=x, labels=labels)
    new = read_new_data(run, tmp_path / "new.npz")
    assert torch.equal(new.samples, torch.from_numpy(x))  # untransformed: the model applies its own
    vocabulary = genreg.load_model(run).data_info.vocabularies["label"]
    assert new.condition["label"].tolist() == [vocabulary.index(value) for value in labels]
    assert new.columns["label"].dtype.kind == "U" and new.columns["label"].tolist() == labels.tolist()
    assert new.extras["row"].tolist() == list(range(40)) and len(new) == 40


def test_posterior_of_gives_the_means_encode_gives_and_positive_variances(tmp_path: Path) -> None:
    model = genreg.load_model(npz_model(tmp_path))
    x, labels = cells(25, seed=2)
    mu, var = posterior_of(model, x, {"label": labels.tolist()}, batch_size=7)
    assert mu.shape == var.shape == (25, 2) and bool((var > 0).all())
    assert torch.allclose(mu, model.encode(x, condition={"label": labels.tolist()}), atol=1e-6)
    again = posterior_of(model, torch.from_numpy(x).double(), {"label": labels.tolist()})  # torch, one batch
    assert torch.allclose(again[0], mu, atol=1e-5) and torch.allclose(again[1], var, atol=1e-5)
    one_mu, one_var = posterior_of(model, x[3], {"label": labels[3]})
    assert one_mu.shape == (2,) and torch.allclose(one_mu, mu[3], atol=1e-6) and torch.allclose(one_var, var[3])
    in_model_units = model.into_model(torch.from_numpy(x))
    assert torch.allclose(posterior_of(model, in_model_units, {"label": labels.tolist()}, units="model")[0], mu)
    state = torch.get_rng_state()
    posterior_of(model, x, {"label": labels.tolist()})
    assert torch.equal(torch.get_rng_state(), state)  # the latent's draw leaves the caller's random state alone
    with pytest.raises(InputError, match="log1p"):
        posterior_of(model, -np.ones((2, 6), np.float32), {"label": labels[:2].tolist()})


def test_an_autoencoder_has_no_posterior_variance(tmp_path: Path) -> None:
    model = genreg.load_model(npz_model(tmp_path, "ae"))
    mu, var = posterior_of(model, cells(5)[0])
    assert mu.shape == (5, 2) and var is None


def test_a_class_the_model_does_not_know_names_the_file_the_column_and_its_values(tmp_path: Path) -> None:
    run = npz_model(tmp_path)
    x, labels = cells(10, seed=3)
    labels = labels.astype("<U20")
    labels[4] = "Platelet"
    np.savez(tmp_path / "new.npz", x=x, labels=labels)
    with pytest.raises(DataError) as caught:
        read_new_data(run, tmp_path / "new.npz")
    message = str(caught.value)
    assert str(tmp_path / "new.npz") in message and "array 'labels'" in message and "'Platelet'" in message
    assert "'B cell', 'CD14+ Monocyte', 'NK cell'" in message


def test_a_conditional_model_needs_its_condition_columns_and_an_unconditional_one_carries_them(tmp_path) -> None:
    np.savez(tmp_path / "bare.npz", x=cells(8)[0])
    with pytest.raises(DataError, match=r"conditional on 'label'.*lacks the labels \(array 'labels'\)"):
        read_new_data(npz_model(tmp_path), tmp_path / "bare.npz")
    vae = npz_model(tmp_path, "vae")
    assert read_new_data(vae, tmp_path / "bare.npz").columns == {}
    x, labels = cells(8)
    np.savez(tmp_path / "other.npz", x=x, labels=np.array(["Platelet"] * 8))  # a value the model never saw
    new = read_new_data(vae, tmp_path / "other.npz")
    assert new.condition is None and new.columns["label"].tolist() == ["Platelet"] * 8


def test_a_file_of_another_kind_or_shape_is_refused_naming_it(tmp_path: Path) -> None:
    run = npz_model(tmp_path)
    pd.DataFrame(cells(5)[0]).to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(DataError, match=r"trained on the `npz` dataset.*a \.npz file.*ends in '\.csv'"):
        read_new_data(run, tmp_path / "new.csv")
    np.savez(tmp_path / "narrow.npz", x=cells(5)[0][:, :4], labels=cells(5)[1])
    with pytest.raises(DataError, match="vectors of 4 features, but the model .* takes vectors of 6 features"):
        read_new_data(run, tmp_path / "narrow.npz")
    with pytest.raises(DataError, match="file not found"):
        read_new_data(run, tmp_path / "missing.npz")


def test_a_model_saved_without_a_dataset_reads_an_npz_of_its_shapes(tmp_path: Path) -> None:
    run = npz_model(tmp_path, record=False)
    x, labels = cells(12, seed=4)
    np.savez(tmp_path / "new.npz", x=x, labels=labels)
    assert read_new_data(run, tmp_path / "new.npz").columns["label"].tolist() == labels.tolist()
    pd.DataFrame(x).to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(DataError, match=r"records no dataset .* a \.npz holding `images`.*or a dataset spec"):
        read_new_data(run, tmp_path / "new.csv")


def test_integer_ids_map_through_the_vocabulary_and_indices_are_checked(tmp_path: Path) -> None:
    x, _ = cells(60)
    ids = np.where(np.arange(60) % 2, 7000, 3000)
    np.savez(tmp_path / "train.npz", x=x, labels=ids)
    run = saved_model(tmp_path, "cvae", {"type": "npz", "path": str(tmp_path / "train.npz")})
    np.savez(tmp_path / "new.npz", x=x[:3], labels=np.array([7000, 3000, 7000]))
    new = read_new_data(run, tmp_path / "new.npz")
    assert new.condition["label"].tolist() == [1, 0, 1] and new.columns["label"].tolist() == [7000, 3000, 7000]
    np.savez(tmp_path / "indices.npz", x=x, labels=np.arange(60) % 3)
    run = saved_model(tmp_path, "cvae", {"type": "npz", "path": str(tmp_path / "indices.npz")}, name="indices")
    np.savez(tmp_path / "four.npz", x=x[:3], labels=np.array([0, 3, 1]))
    with pytest.raises(DataError, match=r"holds 3 at row 1, but the model .* knows the classes 0\.\.2"):
        read_new_data(run, tmp_path / "four.npz")


# --------------------------------------------------------------------------- tables


def test_a_table_is_read_by_feature_name_in_any_order_with_its_text_labels(tmp_path: Path) -> None:
    run = table_model(tmp_path)
    x, labels = cells(30, seed=5)
    frame = pd.DataFrame(x, columns=FEATURES).assign(cell_type=labels, dose=0.5, extra=1.0)
    frame[["extra", "dose", *FEATURES[::-1], "cell_type"]].to_csv(tmp_path / "new.csv", index=False)
    new = read_new_data(run, tmp_path / "new.csv")
    assert torch.equal(new.samples, torch.from_numpy(x))
    assert new.columns["label"].tolist() == labels.tolist() and new.columns["dose"].tolist() == [0.5] * 30
    frame.drop(columns=["g3"]).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match=r"short\.csv: the model was trained on 6 features.*lacks 1 of them: 'g3'"):
        read_new_data(run, tmp_path / "short.csv")
    frame.drop(columns=["cell_type"]).to_csv(tmp_path / "unlabelled.csv", index=False)
    with pytest.raises(DataError, match="lacks the label column 'cell_type'"):
        read_new_data(run, tmp_path / "unlabelled.csv")


def test_an_h5ad_is_read_by_var_name_with_its_obs_names(tmp_path: Path) -> None:
    x, labels = cells()
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"cell{i}" for i in range(len(x))])
    anndata.AnnData(x, obs=obs, var=pd.DataFrame(index=FEATURES)).write_h5ad(tmp_path / "train.h5ad")
    spec = {"type": "anndata", "path": str(tmp_path / "train.h5ad"), "label": "cell_type", "transform": "log1p"}
    run = saved_model(tmp_path, "cvae", spec)
    order = [5, 0, 3, 1, 4, 2]
    new_obs = obs.iloc[:7].rename(index=lambda name: f"new-{name}")
    new = anndata.AnnData(x[:7, order], obs=new_obs, var=pd.DataFrame(index=[FEATURES[j] for j in order]))
    new.write_h5ad(tmp_path / "new.h5ad")
    read = read_new_data(run, tmp_path / "new.h5ad")
    assert torch.equal(read.samples, torch.from_numpy(x[:7]))
    assert read.extras["obs_names"].tolist() == [f"new-cell{i}" for i in range(7)]
    assert read.columns["label"].tolist() == labels[:7].tolist()


# --------------------------------------------------------------------------- a dataset spec


def test_a_dataset_spec_gives_both_splits_untransformed_train_then_test(tmp_path: Path) -> None:
    run = npz_model(tmp_path)
    x, labels = cells(50, seed=6)
    np.savez(tmp_path / "new.npz", x=x, labels=labels)
    spec = {"type": "npz", "path": str(tmp_path / "new.npz"), "transform": "minmax", "test_fraction": 0.2}
    (tmp_path / "new.json").write_text(json.dumps({"data": spec}))  # a whole spec's dataset will do
    new = read_new_data(run, tmp_path / "new.json")
    splits = new.extras["split"].tolist()
    assert splits == ["train"] * splits.count("train") + ["test"] * splits.count("test") and len(new) == 50
    expected = {tuple(row) + (value,) for row, value in zip(x.tolist(), labels.tolist(), strict=True)}
    got = zip(new.samples.tolist(), new.columns["label"].tolist(), strict=True)
    assert {tuple(row) + (value,) for row, value in got} == expected  # the data's units: no transform
    vocabulary = genreg.load_model(run).data_info.vocabularies["label"]
    assert new.condition["label"].tolist() == [vocabulary.index(v) for v in new.columns["label"]]
    (tmp_path / "bad.json").write_text(json.dumps({"path": "x.npz"}))
    with pytest.raises(DataError, match="names none"):
        read_new_data(run, tmp_path / "bad.json")
    (tmp_path / "unknown.json").write_text(json.dumps({"type": "nope"}))
    with pytest.raises(SpecError):
        read_new_data(run, tmp_path / "unknown.json")


def test_a_continuous_condition_is_read_as_numbers(tmp_path: Path) -> None:
    x, labels = cells()
    np.savez(tmp_path / "train.npz", x=x, labels=labels, dose=np.linspace(0, 1, len(x)))
    spec = {"type": "npz", "path": str(tmp_path / "train.npz"), "columns": ["dose"]}
    data = genreg.load_data(spec)
    conditioner = [{"type": "onehot"}, {"type": "continuous", "column": "dose"}]
    model = genreg.build_model({**model_spec("cvae"), "conditioner": conditioner}, data.info)
    run = genreg.save_model(model, tmp_path / "dose.safetensors", spec={"model": model.spec, "data": spec})
    np.savez(tmp_path / "new.npz", x=x[:4], labels=labels[:4], dose=np.array([0.1, 0.2, 0.3, 0.4]))
    new = read_new_data(run, tmp_path / "new.npz")
    assert new.condition["dose"].dtype == torch.float32 and new.condition["dose"].tolist() == pytest.approx(
        [0.1, 0.2, 0.3, 0.4]
    )
    np.savez(tmp_path / "text.npz", x=x[:2], labels=labels[:2], dose=np.array(["low", "high"]))
    with pytest.raises(
        DataError, match=r"the array 'dose' holds text \('low', \.\.\.\); the model reads it as numbers"
    ):
        read_new_data(run, tmp_path / "text.npz")
