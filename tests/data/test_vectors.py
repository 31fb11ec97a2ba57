"""Tests vector data (issue 18): samples of shape (F,) beside images, from arrays and ``.npz`` files.

A 2-D array is N vectors of F features of any finite real values; they train through the same
device-resident path as images, a Gaussian likelihood decodes them in the data's units, a model
file records their shape, and what cannot take vectors (conv parts, binarisation, NaN values)
is refused before training, naming the file and what would be valid.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from genreg.data import as_split
from genreg.errors import AssemblyError, DataError, DataWarning, InputError
from tests.helpers import assert_user_error

ROWS, FEATURES = 90, 7
VAE = {
    "type": "vae",
    "latent_dim": 2,
    "encoder": {"type": "mlp", "hidden": [16]},
    "decoder": {"type": "mlp", "hidden": [16]},
    "losses": [{"type": "gaussian"}, {"type": "kld"}],
}


def table(rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of vectors outside [0, 1]: class means 4 apart from 10 to 18, unit noise."""
    rng = np.random.default_rng(0)
    labels = np.arange(rows) % 3
    x = 10 + 4 * labels[:, None] + rng.normal(size=(rows, FEATURES))
    return x.astype(np.float32), labels


def write_table(path, **changes) -> str:
    x, labels = table()
    np.savez(path, **{"x": x, "labels": labels, **changes})
    return str(path)


def test_a_2d_array_is_vectors_of_any_finite_values() -> None:
    x, labels = table()
    split = as_split(x.astype(np.float64), labels, "table")
    assert split.images.dtype == torch.float32 and split.images.shape == (ROWS, FEATURES)
    assert torch.equal(split.images, torch.from_numpy(x))  # not scaled, not clipped to [0, 1]
    counts = as_split(np.arange(12).reshape(4, 3), np.zeros(4, np.int64), "counts").images
    assert counts.dtype == torch.float32 and counts[3, 2] == 11


def test_npz_reads_x_as_vectors_and_data_info_says_so(tmp_path) -> None:
    data = genreg.load_data({"type": "npz", "path": write_table(tmp_path / "t.npz")})
    assert data.info.image_shape == (FEATURES,) and data.info.is_vectors
    assert not genreg.load_data({"type": "mnist-sample"}).info.is_vectors
    assert len(data.train) + len(data.test) == ROWS and data.num_classes == 3
    assert data.train.images.min() > 6  # unscaled: no values squeezed into [0, 1]


def test_an_npz_without_images_or_x_names_both(tmp_path) -> None:
    path = tmp_path / "t.npz"
    np.savez(path, features=table()[0], labels=table()[1])
    with pytest.raises(DataError, match=r"no array named 'images' .*\(nor 'x', `x_key`, for vectors\).*'features'"):
        genreg.load_data({"type": "npz", "path": str(path)})


def test_nan_in_a_feature_names_the_file_row_and_feature(tmp_path) -> None:
    x, _ = table()
    x[5, 3] = np.nan
    path = write_table(tmp_path / "t.npz", x=x)
    with pytest.raises(DataError, match=r"NaN or infinite values \(the first at row 5, feature 3: nan") as caught:
        genreg.load_data({"type": "npz", "path": path})
    assert str(caught.value).startswith(path)


def test_values_beyond_float32_are_refused(tmp_path) -> None:
    x, _ = table()
    path = write_table(tmp_path / "t.npz", x=x.astype(np.float64) * np.where(np.arange(FEATURES) == 2, 1e300, 1))
    with pytest.raises(
        DataError,
        match=r"vectors \(array 'x'\) hold 90 NaN or infinite .* feature 2: 1.06404e\+301; float32 ends at 3.4e",
    ):
        genreg.load_data({"type": "npz", "path": path})


def test_binarising_vectors_is_refused(tmp_path) -> None:
    with pytest.raises(DataError, match="binarize 'dynamic' draws or rounds pixels in"):
        genreg.load_data({"type": "npz", "path": write_table(tmp_path / "t.npz"), "binarize": "dynamic"})


@pytest.mark.parametrize("slot", ["encoder", "decoder"])
def test_conv_parts_refuse_vectors_naming_the_mlp(tmp_path, slot) -> None:
    data = genreg.load_data({"type": "npz", "path": write_table(tmp_path / "t.npz")})
    with pytest.raises(AssemblyError, match=f"{slot} 'conv' convolves images .* use the 'mlp' {slot} for vectors"):
        genreg.build_model({**VAE, slot: {"type": "conv"}}, data.info)


def test_mse_refuses_vectors_naming_the_gaussian(tmp_path) -> None:
    data = genreg.load_data({"type": "npz", "path": write_table(tmp_path / "t.npz")})
    with pytest.raises(AssemblyError, match="loss 'mse' compares sigmoid.* use the 'gaussian' likelihood"):
        genreg.build_model({**VAE, "losses": [{"type": "mse"}, {"type": "kld"}]}, data.info)


def test_the_cli_refuses_a_conv_encoder_on_vectors_before_training(tmp_path, no_training) -> None:
    spec = tmp_path / "spec.json"
    data = {"type": "npz", "path": write_table(tmp_path / "t.npz")}
    spec.write_text(json.dumps({"model": {**VAE, "encoder": {"type": "conv"}}, "data": data, "train": {"epochs": 1}}))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(spec), "--out", str(out), "--quiet"])
    assert_user_error(result, "encoder 'conv' convolves images", "use the 'mlp' encoder for vectors")


def trained_vae(tmp_path) -> tuple[genreg.GenerativeModel, genreg.DataSplits]:
    data = genreg.load_data({"type": "npz", "path": write_table(tmp_path / "t.npz")})
    model = genreg.build_model(VAE, data.info)
    genreg.train(model, data, genreg.TrainConfig(epochs=2, batch_size=16, device="cpu"), seed=0, progress=False)
    return model, data


def test_a_vector_model_decodes_in_the_datas_units_and_round_trips_its_file(tmp_path) -> None:
    model, data = trained_vae(tmp_path)
    x = data.test.images[:4]
    recon = model.reconstruct(x.numpy())
    assert recon.shape == (4, FEATURES)
    with torch.no_grad():  # the Gaussian's mean is the decoder's output itself, no sigmoid
        assert torch.equal(recon, model.decoder(model.encode(x), None).float())
    assert model.sample(5).shape == (5, FEATURES)
    path = tmp_path / "model.safetensors"
    genreg.save_model(model, path)
    loaded = genreg.load_model(path)
    assert loaded.data_info.image_shape == (FEATURES,) and loaded.data_info.is_vectors
    assert torch.equal(loaded.reconstruct(x), recon)


def test_a_vector_model_refuses_inputs_of_another_width_or_nan(tmp_path) -> None:
    model, _ = trained_vae(tmp_path)
    assert model.encode(np.full(FEATURES, 12, np.int64)).shape == (2,)  # integers are numbers; one row
    with pytest.raises(InputError, match=r"this model takes vectors of 7 features, one, or a batch \(B, 7\)"):
        model.encode(np.zeros((3, FEATURES + 1), np.float32))
    with pytest.raises(InputError, match="x holds NaN or infinite values"):
        model.encode(np.full((2, FEATURES), np.nan, np.float32))


def test_an_x_key_the_user_set_is_the_array_named_when_missing(tmp_path) -> None:
    path = write_table(tmp_path / "t.npz")
    with pytest.raises(DataError, match=r"no array named 'X' \(named in `x_key`\); arrays present: 'x', 'labels'"):
        genreg.load_data({"type": "npz", "path": path, "x_key": "X"})


def test_bernoulli_refuses_real_values_before_training(tmp_path, no_training) -> None:
    spec = tmp_path / "spec.json"
    data = {"type": "npz", "path": write_table(tmp_path / "t.npz")}
    model = {**VAE, "losses": [{"type": "bernoulli"}, {"type": "kld"}]}
    spec.write_text(json.dumps({"model": model, "data": data, "train": {"epochs": 1}}))
    for command in (["validate", str(spec)], ["run", str(spec), "--out", str(tmp_path / "run"), "--quiet"]):
        result = CliRunner().invoke(cli, command)
        assert_user_error(result, f"{data['path']}: the Bernoulli likelihood", "use the 'gaussian' likelihood")
    assert not (tmp_path / "run").exists()


def test_the_gaussian_warns_about_features_of_large_scale(tmp_path, no_training) -> None:
    x, labels = table()
    spec = tmp_path / "spec.json"
    data = {"type": "npz", "path": write_table(tmp_path / "t.npz", x=x * 10)}
    spec.write_text(json.dumps({"model": VAE, "data": data, "train": {"epochs": 1}}))
    with pytest.warns(DataWarning, match=r"feature \d has mean .*standardise each feature"):
        CliRunner().invoke(cli, ["validate", str(spec)])
    centred = write_table(tmp_path / "u.npz", x=x - 14)
    spec.write_text(json.dumps({"model": VAE, "data": {**data, "path": centred}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert CliRunner().invoke(cli, ["validate", str(spec)]).exit_code == 0  # means -4 to 4, sd about 3


def test_a_nan_far_down_a_large_table_names_its_row() -> None:
    """The check is one aminmax pass, then a search by chunks of rows: the row is counted across chunks."""
    x = np.zeros((20_000, 3), np.float32)
    x[19_000, 2], x[9_000, 1] = np.inf, np.nan
    with pytest.raises(
        DataError, match=r"^big: vectors .* hold 2 NaN or infinite values \(the first at row 9000, feature 1"
    ):
        as_split(x, np.zeros(20_000, np.int64), "big")
