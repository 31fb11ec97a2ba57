"""Tests genreg/cli/apply.py: ``genreg encode`` and ``genreg reconstruct`` of new data, a file of the kind a model was
trained on or a dataset spec, written as a .npz (issue 18).

Two real runs (slow) are trained on data of a 2-D structure in log space: a cVAE of a .npz with string labels and
``transform: ["log1p", "standardize"]``, and a cVAE of a CSV table with a text label column. The errors are tested
on untrained models saved as a run saves them (tests/data/test_new_data.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import genreg
from tests.data.test_new_data import FEATURES, NAMES, npz_model, table_model
from tests.helpers import assert_user_error, invoke, single_thread

VAE = {"encoder": {"type": "mlp", "hidden": [32]}, "decoder": {"type": "mlp", "hidden": [32]}, "latent_dim": 2}
CVAE = {"type": "cvae", **VAE, "losses": [{"type": "gaussian", "variance": "learned"}, {"type": "kld"}]}
TRAIN = {"epochs": 30, "batch_size": 32, "lr": 3e-3, "pictures": False, "device": "cpu"}


def expression(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x (rows, 6) float32 >= 0, labels (rows,) of 3 cell types): log1p(x) is linear in a 2-D code plus a shift
    per cell type, so a small cVAE reconstructs it well within seconds. The profile is fixed; ``seed`` draws rows."""
    profile = np.random.default_rng(0)
    shifts, weights = profile.normal(0, 0.5, (3, 6)), profile.normal(0, 0.4, (2, 6))
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 3, rows)
    log = 1.5 + rng.normal(size=(rows, 2)) @ weights + shifts[kinds] + rng.normal(0, 0.05, (rows, 6))
    return np.expm1(np.clip(log, 0.01, None)).astype(np.float32), NAMES[kinds]


def r2(x: np.ndarray, fitted: np.ndarray) -> float:
    return float(1 - ((x - fitted) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def trained(folder: Path, data: dict) -> Path:
    spec = genreg.load_spec({"model": CVAE, "data": data, "train": TRAIN})
    with single_thread():
        genreg.run(spec, folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("apply")
    x, labels = expression(300)
    np.savez(folder / "train.npz", x=x, labels=labels)
    pd.DataFrame(x, columns=FEATURES).assign(cell_type=labels).to_csv(folder / "train.csv", index=False)
    npz = {"type": "npz", "path": str(folder / "train.npz"), "transform": ["log1p", "standardize"]}
    table = {
        "type": "table",
        "path": str(folder / "train.csv"),
        "label": "cell_type",
        "transform": ["log1p", "standardize"],
    }
    return {"npz": trained(folder / "npz", npz), "table": trained(folder / "table", table), "folder": folder}


@pytest.mark.slow
def test_encode_of_a_new_npz_writes_means_variances_and_the_labels_in_file_order(runs, tmp_path) -> None:
    x, labels = expression(45, seed=1)
    np.savez(tmp_path / "new.npz", x=x, labels=labels)
    result = invoke("encode", runs["npz"], tmp_path / "new.npz", "-o", tmp_path / "latents.npz", "--batch-size", 10)
    assert result.exit_code == 0, result.output
    out = tmp_path / "latents.npz"
    assert result.stdout == f"wrote {out}: 45 rows; mu (45, 2), var (45, 2), label (45,), row (45,)\n"
    with np.load(out, allow_pickle=False) as saved:
        assert sorted(saved) == ["label", "mu", "row", "var"]
        model = genreg.load_model(runs["npz"])
        assert np.allclose(saved["mu"], model.encode(x, condition={"label": labels.tolist()}).numpy(), atol=1e-5)
        assert (saved["var"] > 0).all() and saved["var"].dtype == np.float32
        assert saved["label"].dtype.kind == "U" and saved["label"].tolist() == labels.tolist()
        assert saved["row"].tolist() == list(range(45))


@pytest.mark.slow
def test_reconstruct_of_the_training_rows_is_close_in_the_data_units(runs, tmp_path) -> None:
    x, labels = expression(300)
    result = invoke("reconstruct", runs["npz"], runs["folder"] / "train.npz", "-o", tmp_path / "recon.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "recon.npz") as saved:
        assert sorted(saved) == ["label", "row", "x"] and saved["x"].shape == (300, 6)
        assert saved["label"].tolist() == labels.tolist()
        assert r2(x, saved["x"]) > 0.7, r2(x, saved["x"])  # in the data's units: the transform inverted
        assert abs(saved["x"].mean() / x.mean() - 1) < 0.3


@pytest.mark.slow
def test_a_csv_of_columns_in_another_order_is_encoded_and_reconstructed_by_name(runs, tmp_path) -> None:
    x, labels = expression(300)
    frame = pd.DataFrame(x, columns=FEATURES).assign(cell_type=labels, note="kept out")
    frame[["note", *FEATURES[::-1], "cell_type"]].to_csv(tmp_path / "new.csv", index=False)
    for command, out in [("encode", "latents.npz"), ("reconstruct", "recon.npz")]:
        result = invoke(command, runs["table"], tmp_path / "new.csv", "-o", tmp_path / out)
        assert result.exit_code == 0, result.output
    model = genreg.load_model(runs["table"])
    with np.load(tmp_path / "latents.npz") as latents, np.load(tmp_path / "recon.npz") as recon:
        assert np.allclose(latents["mu"], model.encode(x, condition={"label": labels.tolist()}).numpy(), atol=1e-5)
        assert latents["label"].tolist() == labels.tolist() and latents["row"].tolist() == list(range(300))
        assert r2(x, recon["x"]) > 0.7, r2(x, recon["x"])


@pytest.mark.slow
def test_a_dataset_spec_writes_both_splits_with_a_split_array(runs, tmp_path) -> None:
    spec = {
        "type": "table",
        "path": str(runs["folder"] / "train.csv"),
        "label": "cell_type",
        "transform": ["log1p", "standardize"],
    }
    (tmp_path / "data.json").write_text(json.dumps(spec))
    result = invoke("reconstruct", runs["table"], tmp_path / "data.json", "-o", tmp_path / "recon.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "recon.npz") as saved:
        assert sorted(saved) == ["features", "label", "row", "split", "x"] and saved["x"].shape == (300, 6)
        assert saved["split"].tolist() == ["train"] * 240 + ["test"] * 60
        assert saved["row"].tolist() == list(range(240)) + list(range(60))


# --------------------------------------------------------------------------- errors (untrained models)


def test_an_autoencoder_writes_the_means_only_and_says_so(tmp_path) -> None:
    run = npz_model(tmp_path, "ae")
    result = invoke("encode", run, tmp_path / "train.npz", "-o", tmp_path / "latents.npz", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "gives no variances (a deterministic code)" in result.stdout and "holds mu only" in result.stdout
    with np.load(tmp_path / "latents.npz") as saved:
        assert sorted(saved) == ["label", "mu", "row"]


def test_an_h5ad_keeps_its_obs_names(tmp_path) -> None:
    import anndata

    x = expression(40)[0]
    names = pd.DataFrame(index=[f"cell{i}" for i in range(40)])
    anndata.AnnData(x, obs=names, var=pd.DataFrame(index=FEATURES)).write_h5ad(tmp_path / "train.h5ad")
    from tests.data.test_new_data import saved_model

    run = saved_model(tmp_path, "vae", {"type": "anndata", "path": str(tmp_path / "train.h5ad")})
    result = invoke("reconstruct", run, tmp_path / "train.h5ad", "-o", tmp_path / "recon.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "recon.npz") as saved:
        assert sorted(saved) == ["features", "obs_names", "row", "x"] and saved["obs_names"].tolist() == list(
            names.index
        )
        assert saved["features"].tolist() == list(FEATURES)  # the columns of x, named


@pytest.fixture
def table_run(tmp_path: Path) -> Path:
    return table_model(tmp_path)


def new_table(tmp_path: Path, name: str = "new.csv", **changes: object) -> Path:
    x, labels = expression(20)
    frame = pd.DataFrame(x, columns=FEATURES).assign(cell_type=labels, dose=0.5)
    for column, value in changes.items():
        if value is None:
            frame = frame.drop(columns=column)
        else:
            frame[column] = value
    frame.to_csv(tmp_path / name, index=False)
    return tmp_path / name


@pytest.mark.parametrize("command", ["encode", "reconstruct"])
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"g2": None}, ["lacks 1 of them: 'g2'"]),
        ({"cell_type": "Platelet"}, ["the label column 'cell_type'", "'Platelet'", "'B cell', 'CD14+ Monocyte'"]),
        ({"cell_type": None}, ["conditional on 'label'", "lacks the label column 'cell_type'"]),
    ],
)
def test_bad_new_data_exits_2_naming_the_file_and_column_and_keeps_the_old_output(
    table_run, tmp_path, command, changes, expected
) -> None:
    data = new_table(tmp_path, **changes)
    out = tmp_path / "out.npz"
    out.write_bytes(b"the previous output")
    assert_user_error(invoke(command, table_run, data, "-o", out), str(data), *expected)
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_a_file_of_another_kind_and_bad_options_exit_2(table_run, tmp_path) -> None:
    np.savez(tmp_path / "new.npz", x=expression(5)[0])
    out = tmp_path / "out.npz"
    wrong = invoke("encode", table_run, tmp_path / "new.npz", "-o", out)
    assert_user_error(wrong, "trained on the `table` dataset", "ends in '.npz'", "dataset spec")
    data = new_table(tmp_path)
    assert_user_error(invoke("encode", table_run, data, "-o", tmp_path / "out.csv"), "-o", "as a .npz")
    assert_user_error(invoke("encode", table_run, data, "-o", out, "--device", "toaster"), "--device toaster")
    assert_user_error(invoke("encode", table_run, data, "-o", tmp_path / "nowhere" / "out.npz"), "does not exist")
    assert_user_error(invoke("encode", tmp_path / "missing", data, "-o", out), "no such model file")
    assert not out.exists()


def test_the_dataset_spec_form_of_new_data_through_the_command_line(table_run, tmp_path) -> None:
    spec = {"type": "table", "path": str(new_table(tmp_path)), "label": "cell_type", "columns": ["dose"]}
    (tmp_path / "data.json").write_text(json.dumps(spec))
    result = invoke("encode", table_run, tmp_path / "data.json", "-o", tmp_path / "latents.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "latents.npz") as saved:
        assert sorted(saved) == ["dose", "label", "mu", "row", "split", "var"] and saved["mu"].shape == (20, 2)
        assert set(saved["label"].tolist()) <= set(NAMES.tolist()) and set(saved["split"]) == {"train", "test"}
        assert torch.isfinite(torch.from_numpy(saved["var"])).all()


def test_a_model_of_images_saved_from_python_reconstructs_an_npz_of_images(tmp_path) -> None:
    small = {"latent_dim": 2, "encoder": {"type": "mlp", "hidden": [8]}, "decoder": {"type": "mlp", "hidden": [8]}}
    model = genreg.build_model({"type": "cvae", **small}, genreg.DataInfo((1, 6, 6), 3))
    run = genreg.save_model(model, tmp_path / "images.safetensors")
    images = np.random.default_rng(0).integers(0, 256, (5, 1, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "new.npz", images=images, labels=np.array([0, 2, 1, 1, 0]))
    result = invoke("reconstruct", run, tmp_path / "new.npz", "-o", tmp_path / "recon.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "recon.npz") as saved:
        assert saved["images"].shape == (5, 1, 6, 6) and 0 <= saved["images"].min() <= saved["images"].max() <= 1
        assert saved["label"].tolist() == [0, 2, 1, 1, 0]
    pd.DataFrame(images.reshape(5, -1)).to_csv(tmp_path / "new.csv", index=False)
    result = invoke("encode", run, tmp_path / "new.csv", "-o", tmp_path / "latents.npz")
    assert_user_error(result, "records no dataset", "saved from Python", "dataset spec")
