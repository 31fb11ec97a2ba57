"""Tests issue 18's data of users' own: transforms kept with the model, label vocabularies, unlabelled data.

A dataset's ``transform`` is fitted on the training split and recorded in the model file; the model's
methods take and return the data's units. Class columns of strings (or of ids far from 0..K-1) map to
classes through a sorted vocabulary that the model file keeps, so the model speaks in the user's
values. An npz without labels is unlabelled data, which an unconditional model trains on.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from genreg.data import DatasetConfig, as_split, finish
from genreg.data.transforms import Transform
from genreg.errors import ConditionError, DataError, InputError
from tests.helpers import assert_user_error

ROWS, FEATURES = 120, 6
KINDS = np.array(["T cell", "B cell", "Monocyte"])
VAE = {
    "type": "vae",
    "latent_dim": 2,
    "encoder": {"type": "mlp", "hidden": [16]},
    "decoder": {"type": "mlp", "hidden": [16]},
    "losses": [{"type": "gaussian"}, {"type": "kld"}],
}
CVAE = {**VAE, "type": "cvae"}


def counts(rows: int = ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Expression-like counts in the hundreds, one of three cell types per row (named by strings)."""
    rng = np.random.default_rng(seed)
    kinds = np.arange(rows) % 3
    rates = 50.0 * (1 + kinds[:, None] + np.arange(FEATURES)[None, :] % 2)
    return rng.poisson(rates).astype(np.float32), KINDS[kinds]


def loaded(transform: object = "none", labels: np.ndarray | None = None) -> genreg.DataSplits:
    x, kinds = counts()
    split = as_split(x, kinds if labels is None else labels, "cells.npz")
    train, test = split.take(slice(0, 90)), split.take(slice(90, None))
    return finish(train, test, DatasetConfig(transform=transform), "cells.npz")


# --------------------------------------------------------------------------- transforms


def test_standardize_is_fitted_on_the_training_split_and_inverted_exactly() -> None:
    data = loaded("standardize")
    train = data.train.images.double()
    assert torch.allclose(train.mean(0), torch.zeros(FEATURES, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(train.std(0, correction=0), torch.ones(FEATURES, dtype=torch.float64), atol=1e-5)
    raw = torch.from_numpy(counts()[0])
    assert torch.allclose(data.transform.invert(data.test.images), raw[90:], rtol=1e-6, atol=1e-3)
    assert data.test.images.mean().abs() < 0.5  # the test split went through the training split's statistics
    steps = loaded(["log1p", "standardize"])  # the training split transformed while fitted, as apply does it
    assert torch.allclose(steps.train.images, steps.transform.apply(raw[:90]), atol=1e-6)


def test_steps_apply_in_order_each_fitted_on_the_output_of_the_ones_before() -> None:
    x = torch.from_numpy(counts()[0])
    fitted = Transform.fit(["log1p", "standardize"], x, "cells")
    expected = (torch.log1p(x.double()) - torch.log1p(x.double()).mean(0)) / torch.log1p(x.double()).std(
        0, correction=0
    )
    assert torch.allclose(fitted.apply(x).double(), expected, atol=1e-5)
    assert torch.allclose(fitted.invert(fitted.apply(x)), x, rtol=1e-5, atol=1e-3)
    scaled = Transform.fit(["minmax"], x, "cells").apply(x)
    assert scaled.min() == 0 and scaled.max() == 1


def test_a_constant_feature_keeps_scale_one_and_none_is_no_transform() -> None:
    x = torch.ones(10, 3)
    fitted = Transform.fit(["standardize"], x, "flat")
    assert torch.equal(fitted.scales[0], torch.ones(3, dtype=torch.float64))
    assert torch.equal(fitted.apply(x), torch.zeros(10, 3))
    assert Transform.fit(["none"], x, "flat") is None and loaded().transform is None


def test_log1p_of_values_at_or_below_minus_one_names_the_row_and_feature() -> None:
    x = torch.zeros(5, 3)
    x[3, 1] = -2.0
    with pytest.raises(DataError, match=r"^t.csv: transform 'log1p' takes values > -1 .* row 3, feature 1: -2"):
        Transform.fit(["log1p"], x, "t.csv")


def test_a_transform_of_images_is_refused() -> None:
    split = as_split(np.zeros((4, 8, 8), np.uint8), np.zeros(4, np.int64), "digits.npz")
    with pytest.raises(DataError, match=r"digits.npz \(training split\): transform \['standardize'\] applies to vec"):
        finish(split, split, DatasetConfig(transform="standardize"), "digits.npz")


def trained(data: genreg.DataSplits, spec: dict = VAE) -> genreg.GenerativeModel:
    model = genreg.build_model(spec, data.info)
    genreg.train(model, data, genreg.TrainConfig(epochs=3, batch_size=30, device="cpu"), seed=0, progress=False)
    return model


def test_the_model_takes_and_returns_the_datas_units_and_its_file_keeps_the_transform(tmp_path) -> None:
    data = loaded(["log1p", "standardize"])
    model = trained(data)
    raw = torch.from_numpy(counts()[0])[90:]
    inside = data.test.images
    assert torch.allclose(model.encode(raw), model.encode(inside, units="model"), atol=1e-5)
    recon = model.reconstruct(raw)
    assert torch.allclose(recon, model.out_of_model(model.reconstruct(inside, units="model")), rtol=1e-5)
    assert recon.mean() > 40 and model.sample(50).mean() > 40  # counts in the hundreds, not z-scores
    assert model.reconstruct(inside, units="model").abs().mean() < 3
    path = genreg.save_model(model, tmp_path / "m.safetensors")
    again = genreg.load_model(path)
    assert again.data_info.transform == data.transform and again.data_info == model.data_info
    assert torch.equal(again.reconstruct(raw), recon)
    with pytest.raises(InputError, match="transform 'log1p' takes values > -1"):
        model.encode(-5 * torch.ones(2, FEATURES))


# --------------------------------------------------------------------------- vocabularies


def test_string_labels_are_classes_in_sorted_order_shared_by_both_splits() -> None:
    data = loaded()
    assert data.info.vocabularies == {"label": ["B cell", "Monocyte", "T cell"]} and data.num_classes == 3
    assert data.train.labels[:3].tolist() == [2, 0, 1] and data.info.class_names() == ["B cell", "Monocyte", "T cell"]
    only_test = finish(
        as_split(np.zeros((2, 3)), np.array(["a", "b"]), "t"),
        as_split(np.zeros((2, 3)), np.array(["c", "a"]), "t"),
        DatasetConfig(),
        "t",
    )
    assert only_test.info.vocabularies == {"label": ["a", "b", "c"]} and only_test.test.labels.tolist() == [2, 0]
    assert only_test.info.absent == {"label": [2]}


def test_text_in_one_split_and_numbers_in_the_other_are_refused() -> None:
    with pytest.raises(DataError, match="column 'label' holds strings in one split and numbers in the other"):
        finish(
            as_split(np.zeros((2, 3)), np.array(["a", "b"]), "t"),
            as_split(np.zeros((2, 3)), np.array([0, 1]), "t"),
            DatasetConfig(),
            "t",
        )


def test_a_cvae_speaks_its_class_values_and_its_file_keeps_them(tmp_path) -> None:
    data = loaded("standardize")
    model = trained(data, CVAE)
    by_name = model.sample(labels=["Monocyte", "Monocyte"])
    torch.manual_seed(0)
    by_name = model.sample(labels=["Monocyte"] * 3)
    torch.manual_seed(0)
    by_index = model.sample(labels=torch.tensor([1, 1, 1]))  # a tensor holds class indices
    assert torch.equal(by_name, by_index)
    with pytest.raises(ConditionError, match=r"column 'label' has no class 'NK cell'.*'B cell', 'Monocyte', 'T cell'"):
        model.sample(labels="NK cell")
    path = genreg.save_model(model, tmp_path / "m.safetensors")
    assert genreg.load_model(path).data_info.vocabularies == {"label": ["B cell", "Monocyte", "T cell"]}


def test_integer_ids_far_from_0_to_k_become_a_vocabulary_the_model_speaks() -> None:
    data = loaded("standardize", labels=np.where(np.arange(ROWS) % 2, 7000, 3000))
    assert data.num_classes == 2 and data.info.vocabularies == {"label": [3000, 7000]}
    model = genreg.build_model(CVAE, data.info)
    assert model.sample(labels=[7000, "3000"]).shape == (2, FEATURES)
    with pytest.raises(ConditionError, match="no class 1"):
        model.sample(labels=1)


# --------------------------------------------------------------------------- unlabelled data


def test_an_npz_without_labels_is_unlabelled_data_a_vae_trains_on(tmp_path) -> None:
    np.savez(tmp_path / "t.npz", x=counts()[0])
    data = genreg.load_data({"type": "npz", "path": str(tmp_path / "t.npz"), "transform": "standardize"})
    assert not data.info.labelled and data.num_classes == 1 and len(data.train) + len(data.test) == ROWS
    spec = {"model": VAE, "data": {"type": "npz", "path": str(tmp_path / "t.npz"), "transform": "standardize"}}
    spec["train"] = {"epochs": 1, "batch_size": 30}
    (tmp_path / "vae.json").write_text(json.dumps(spec))
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "vae.json")])
    assert result.exit_code == 0, result.output
    spec["model"] = CVAE
    (tmp_path / "cvae.json").write_text(json.dumps(spec))
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "cvae.json")])
    assert_user_error(result, "conditioned on the class label (column 'label'), but the data", "has no labels")


def test_a_labels_array_the_spec_names_must_be_there(tmp_path) -> None:
    np.savez(tmp_path / "t.npz", x=counts()[0])
    with pytest.raises(DataError, match=r"no array named 'kinds' \(named in `labels_key`\)"):
        genreg.load_data({"type": "npz", "path": str(tmp_path / "t.npz"), "labels_key": "kinds"})


def test_string_labels_in_an_npz_train_a_cvae_from_the_cli(tmp_path) -> None:
    x, kinds = counts()
    np.savez(tmp_path / "cells.npz", x=x, labels=kinds)
    data = {"type": "npz", "path": str(tmp_path / "cells.npz"), "transform": ["log1p", "standardize"]}
    (tmp_path / "spec.json").write_text(json.dumps({"model": CVAE, "data": data, "train": {"epochs": 1}}))
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "spec.json")])
    assert result.exit_code == 0 and "3 classes" in result.output, result.output


def test_a_dataframe_is_read_by_its_column_names_not_their_order() -> None:
    """A new user's finding: a DataFrame with its columns in another order was encoded by position."""
    import pandas as pd

    x, kinds = counts()
    names = [f"gene{k}" for k in range(FEATURES)]
    split = as_split(x, kinds, "cells.csv")
    data = finish(split.take(slice(0, 90)), split.take(slice(90, None)), DatasetConfig(), "cells.csv", names)
    model = genreg.build_model(VAE, data.info)
    frame = pd.DataFrame(x[:5], columns=names)
    reversed_frame = frame[names[::-1]]
    assert torch.equal(model.encode(reversed_frame), model.encode(x[:5]))
    assert torch.equal(genreg.posterior_of(model, reversed_frame)[0], model.encode(x[:5]))
    with pytest.raises(InputError, match=r"x is a table without 1 of the model's 6 features: 'gene2'"):
        model.encode(frame.drop(columns="gene2"))
