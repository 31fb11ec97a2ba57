"""Tests genreg/data/sparse.py and the sparse path: a mostly-zero count matrix stays sparse (CSR) in memory, from
an .h5ad through the split to training and evaluation; each batch is made dense when gathered, and training on
it is the same computation as training on the dense matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import sparse

import genreg
from genreg.cli import cli
from genreg.data import as_split
from genreg.data.sparse import SparseRows, dense
from genreg.errors import DataError, DataWarning
from genreg_builtin import h5ad
from genreg_builtin.backed import BackedRows
from genreg_builtin.h5ad import AnnDataConfig, load_anndata

anndata = pytest.importorskip("anndata")
pd = pytest.importorskip("pandas")

CELLS, GENES = 300, 40


def count_matrix(cells: int = CELLS, genes: int = GENES, density: float = 0.1, seed: int = 0) -> sparse.csr_matrix:
    """Sparse counts (cells, genes), ``density`` of them non-zero, every row with a count."""
    rng = np.random.default_rng(seed)
    matrix = sparse.random(cells, genes, density=density, format="lil", dtype=np.float32, random_state=rng)
    matrix[np.arange(cells), rng.integers(0, genes, cells)] = 1.0
    matrix = matrix.tocsr()
    matrix.data = np.ceil(matrix.data * 20).astype(np.float32)
    return matrix


def test_gathered_rows_are_the_dense_rows_in_any_order_and_take_keeps_them_sparse() -> None:
    matrix = count_matrix()
    rows, full = SparseRows.from_scipy(matrix), matrix.toarray()
    assert rows.shape == (CELLS, GENES) and len(rows) == CELLS and rows.dim() == 2
    index = torch.tensor([5, 0, 299, 5, -1])
    np.testing.assert_array_equal(rows[index].numpy(), full[[5, 0, 299, 5, -1]])
    np.testing.assert_array_equal(rows.index_select(0, index).numpy(), full[[5, 0, 299, 5, -1]])
    np.testing.assert_array_equal(rows[10:20].numpy(), full[10:20])
    np.testing.assert_array_equal(rows[[3]].numpy(), full[[3]])
    np.testing.assert_array_equal(rows.to_dense().numpy(), full)
    taken = rows.take(torch.tensor([7, 2, 2]))
    assert isinstance(taken, SparseRows) and taken.values.numel() == sum(matrix[i].nnz for i in (7, 2, 2))
    np.testing.assert_array_equal(taken.to_dense().numpy(), full[[7, 2, 2]])
    np.testing.assert_allclose(rows.row_totals().numpy(), full.sum(1), rtol=1e-6)
    assert rows.nbytes < full.nbytes / 2  # 10% stored: indices and values cost less than half the dense matrix
    with pytest.raises(IndexError, match="out of range for 300 rows"):
        rows[torch.tensor([300])]


def test_as_split_keeps_a_scipy_matrix_sparse_and_names_a_stored_nan() -> None:
    matrix = count_matrix()
    split = as_split(matrix, np.arange(CELLS) % 3, "cells.h5ad")
    assert isinstance(split.images, SparseRows)
    part = split.take(torch.arange(0, CELLS, 2))
    assert isinstance(part.images, SparseRows) and len(part) == CELLS // 2
    np.testing.assert_array_equal(dense(part.images).numpy(), matrix.toarray()[::2])
    matrix = matrix.copy()
    row = 4
    matrix.data[matrix.indptr[row]] = np.nan
    column = matrix.indices[matrix.indptr[row]]
    with pytest.raises(DataError, match=f"the first at row {row}, feature {column}"):
        as_split(matrix, None, "cells.h5ad")


def write_cells(path, matrix: sparse.csr_matrix, seed: int = 0) -> str:
    """An .h5ad of counts with cell types and batches in .obs."""
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(rng.choice(["B", "T", "NK"], matrix.shape[0])),
            "batch": pd.Categorical(rng.choice(["a", "b"], matrix.shape[0])),
        },
        index=[f"cell{i}" for i in range(matrix.shape[0])],
    )
    var = pd.DataFrame(index=[f"gene{j}" for j in range(matrix.shape[1])])
    anndata.AnnData(matrix, obs=obs, var=var).write_h5ad(path)
    return str(path)


def cells_config(path: str, **settings) -> AnnDataConfig:
    return AnnDataConfig(path=path, label="cell_type", columns=["batch"], **settings)


def test_the_anndata_dataset_keeps_a_sparse_layer_sparse_unless_told_or_transformed(tmp_path) -> None:
    path = write_cells(tmp_path / "cells.h5ad", count_matrix())
    kept = load_anndata(cells_config(path))
    assert isinstance(kept.train.images, SparseRows) and isinstance(kept.test.images, SparseRows)
    made_dense = load_anndata(cells_config(path, sparse="dense"))
    assert isinstance(made_dense.train.images, torch.Tensor)
    torch.testing.assert_close(dense(kept.train.images), made_dense.train.images)
    torch.testing.assert_close(dense(kept.test.images), made_dense.test.images)
    assert torch.equal(kept.train.columns["batch"], made_dense.train.columns["batch"])
    logged = load_anndata(cells_config(path, transform="log1p"))  # a transform: dense
    assert isinstance(logged.train.images, torch.Tensor)
    thick = write_cells(tmp_path / "thick.h5ad", count_matrix(density=0.5))  # half stored: dense by default
    assert isinstance(load_anndata(cells_config(thick)).train.images, torch.Tensor)
    assert isinstance(load_anndata(cells_config(thick, sparse="keep")).train.images, SparseRows)


COUNT_CVAE = {
    "type": "cvae",
    "latent_dim": 3,
    "encoder": {"type": "mlp", "hidden": [16], "input": "log1p"},
    "decoder": {"type": "mlp", "hidden": [16]},
    "losses": [{"type": "negative-binomial"}, {"type": "kld"}],
    "conditioner": {"type": "onehot", "column": "batch"},
}


def trained_history(data: genreg.DataSplits) -> list[dict]:
    torch.manual_seed(0)
    model = genreg.build_model(COUNT_CVAE, data.info)
    genreg.training.runner.check_data(model, data)
    config = genreg.TrainConfig(epochs=2, batch_size=32, device="cpu")
    return [row["test"] for row in genreg.train(model, data, config, seed=0, progress=False).history]


def test_training_on_sparse_rows_is_training_on_the_dense_matrix(tmp_path) -> None:
    path = write_cells(tmp_path / "cells.h5ad", count_matrix())
    sparse_history = trained_history(load_anndata(cells_config(path)))
    dense_history = trained_history(load_anndata(cells_config(path, sparse="dense")))
    for ours, theirs in zip(sparse_history, dense_history, strict=True):
        assert ours.keys() == theirs.keys()
        for name in ours:
            assert ours[name] == pytest.approx(theirs[name], rel=1e-5), name


def test_a_backed_layer_is_read_from_disk_as_batches_need_it_and_trains_as_the_dense_matrix(tmp_path) -> None:
    path = write_cells(tmp_path / "cells.h5ad", count_matrix())
    backed = load_anndata(cells_config(path, sparse="backed"))
    made_dense = load_anndata(cells_config(path, sparse="dense"))
    assert isinstance(backed.train.images, BackedRows) and isinstance(backed.test.images, BackedRows)
    torch.testing.assert_close(dense(backed.train.images), made_dense.train.images)
    np.testing.assert_array_equal(backed.train.images[[4, 1, 4]].numpy(), made_dense.train.images[[4, 1, 4]].numpy())
    for ours, theirs in zip(trained_history(backed), trained_history(made_dense), strict=True):
        for name in ours:
            assert ours[name] == pytest.approx(theirs[name], rel=1e-5), name


def test_auto_reads_from_disk_and_says_so_when_even_the_sparse_matrix_does_not_fit(tmp_path, monkeypatch) -> None:
    path = write_cells(tmp_path / "cells.h5ad", count_matrix())
    monkeypatch.setattr(h5ad, "available_memory", lambda: (10_000, "available on this machine"))
    with pytest.warns(DataWarning, match="read from disk as batches need it"):
        data = load_anndata(cells_config(path))
    assert isinstance(data.train.images, BackedRows)
    with pytest.raises(DataError, match="`transform` needs it in memory"):
        load_anndata(cells_config(path, transform="log1p"))
    monkeypatch.setattr(h5ad, "available_memory", lambda: (10**12, "available on this machine"))
    assert isinstance(load_anndata(cells_config(path)).train.images, SparseRows)


def test_a_count_likelihood_checks_sparse_rows_naming_the_row(tmp_path) -> None:
    matrix = count_matrix()
    matrix.data[matrix.indptr[7]] = 2.5
    data = load_anndata(cells_config(write_cells(tmp_path / "cells.h5ad", matrix), test_fraction=0.5, split_seed=1))
    model = genreg.build_model(COUNT_CVAE, data.info)
    with pytest.raises(DataError, match="got 2.5 at row"):
        genreg.training.runner.check_data(model, data)


@pytest.mark.slow
def test_genreg_run_and_eval_a_sparse_h5ad(tmp_path) -> None:
    path = write_cells(tmp_path / "cells.h5ad", count_matrix())
    spec = {
        "name": "sparse",
        "model": COUNT_CVAE,
        "data": {"type": "anndata", "path": path, "label": "cell_type", "columns": ["batch"]},
        "train": {"epochs": 2, "batch_size": 32},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    runner = CliRunner()
    run = runner.invoke(cli, ["run", str(tmp_path / "spec.json"), "--out", str(tmp_path / "runs")])
    assert run.exit_code == 0, run.output
    folder = tmp_path / "runs"
    assert (folder / "latent.png").exists() and (folder / "samples.png").exists()
    result = runner.invoke(cli, ["eval", str(folder), "--iw-samples", "10"])
    assert result.exit_code == 0, result.output
    measured = json.loads((folder / "eval.json").read_text())
    assert np.isfinite(measured["neg_elbo"]) and measured["reconstruction_r2"] is not None
    assert set(measured["columns"]) == {"label", "batch"} and measured["columns"]["batch"]["role"] == "conditioned"


def test_genreg_encode_refuses_new_counts_a_count_likelihood_cannot_read(tmp_path) -> None:
    path = write_cells(tmp_path / "cells.h5ad", count_matrix())
    spec = {
        "name": "counts",
        "model": COUNT_CVAE,
        "data": {"type": "anndata", "path": path, "label": "cell_type", "columns": ["batch"]},
        "train": {"epochs": 1, "batch_size": 64, "pictures": False},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    runner = CliRunner()
    assert runner.invoke(cli, ["run", str(tmp_path / "spec.json"), "--out", str(tmp_path / "run")]).exit_code == 0
    matrix = count_matrix()
    matrix.data[matrix.indptr[3]] = -2.0
    bad = write_cells(tmp_path / "negative.h5ad", matrix)
    result = runner.invoke(cli, ["encode", str(tmp_path / "run"), bad, "-o", str(tmp_path / "z.npz")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "got -2 at row 3" in result.output and "of the new data" in result.output
    assert not (tmp_path / "z.npz").exists()


def test_keep_with_a_transform_and_backed_with_a_test_file_are_refused_naming_the_fields(tmp_path) -> None:
    path = write_cells(tmp_path / "cells.h5ad", count_matrix())
    with pytest.raises(DataError, match="`sparse: keep` holds the layer 'X' sparse, and `transform` \\(log1p\\)"):
        load_anndata(cells_config(path, sparse="keep", transform="log1p"))
    with pytest.raises(DataError, match="drop `test_path` and hold out a `test_fraction`"):
        load_anndata(cells_config(path, sparse="backed", test_path=path))


def test_the_python_api_takes_a_scipy_sparse_matrix_as_its_dense_rows(tmp_path) -> None:
    data = load_anndata(cells_config(write_cells(tmp_path / "cells.h5ad", count_matrix())))
    torch.manual_seed(0)
    model = genreg.build_model(COUNT_CVAE, data.info)
    genreg.training.runner.check_data(model, data)
    matrix, batch = count_matrix()[:10], {"batch": ["a"] * 10}
    torch.testing.assert_close(model.encode(matrix, batch), model.encode(matrix.toarray(), batch))
    torch.testing.assert_close(model.reconstruct(matrix, batch), model.reconstruct(matrix.toarray(), batch))
    rows = SparseRows.from_scipy(matrix)
    torch.testing.assert_close(model.encode(rows, batch), model.encode(matrix.toarray(), batch))
    mu, var = genreg.posterior_of(model, matrix, batch, batch_size=4)
    torch.testing.assert_close(mu, genreg.posterior_of(model, matrix.toarray(), batch)[0])
