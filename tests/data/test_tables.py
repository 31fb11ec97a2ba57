"""Tests plugins/genreg_builtin/tables.py (issue 18): the ``table`` dataset reads CSV, TSV and Parquet files with
pandas and the ``anndata`` dataset ``.h5ad`` files, as vectors (N, F) beside labels and condition columns, split
like ``npz``; every bad input is a DataError naming the file, the column and the config field."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

import genreg
from genreg import limits
from genreg.errors import DataError, DataWarning, SpecError
from genreg_builtin.h5ad import AnnDataConfig, load_anndata
from genreg_builtin.tables import TableConfig, load_table
from tests.helpers import assert_user_error, invoke

ROWS = 60
TINY_VAE = {
    "type": "vae",
    "latent_dim": 2,
    "encoder": {"type": "mlp", "hidden": [8]},
    "decoder": {"type": "mlp", "hidden": [8]},
    "losses": [{"type": "gaussian"}, {"type": "kld"}],
}


def table(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """Three numeric features, an integer ``label`` of 3 classes, a text ``group``, a float ``dose``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % 3
    frame = pd.DataFrame(rng.normal(size=(rows, 3)) + labels[:, None], columns=["a", "b", "c"])
    return frame.assign(label=labels, group=np.where(np.arange(rows) % 2, "treated", "control"), dose=rng.random(rows))


def save(frame: pd.DataFrame, path: Path) -> str:
    """``frame`` written by the suffix of ``path``, without the row index."""
    if path.name.endswith((".parquet", ".pq")):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t" if ".tsv" in path.name else ",", index=False)
    return str(path)


def load(path: str, **fields: object) -> genreg.DataSplits:
    return load_table(TableConfig(path=path, **fields))


def rows_of(data: genreg.DataSplits) -> set[tuple[float, ...]]:
    images = torch.cat([data.train.images, data.test.images])
    return {tuple(row) for row in images.tolist()}


# --------------------------------------------------------------------------- table


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.csv.gz", "t.tsv.gz", "t.parquet", "t.pq", "T.CSV"])
def test_a_table_reads_its_numeric_columns_as_vectors_by_suffix(tmp_path: Path, name: str) -> None:
    frame = table()
    with pytest.warns(DataWarning, match=r"left out of the features: 'group' \(object\)"):
        data = load(save(frame, tmp_path / name))
    assert data.train.images.shape == (48, 4) and data.test.images.shape == (12, 4)  # a, b, c, dose
    assert data.train.images.dtype == torch.float32 and data.info.is_vectors
    assert data.info.features == ["a", "b", "c", "dose"] and data.info.num_classes == 3
    expected = frame[["a", "b", "c", "dose"]].to_numpy(np.float32)
    assert rows_of(data) == {tuple(row) for row in expected.tolist()}  # every row once, in the file's units


def test_a_saved_row_index_is_left_out_and_booleans_and_nullable_integers_are_numbers(tmp_path: Path) -> None:
    frame = table().drop(columns="group").assign(flag=lambda f: f["a"] > 0, count=lambda f: f["label"].astype("Int64"))
    frame.to_csv(tmp_path / "t.csv")  # with pandas' row index, a column without a header
    with pytest.warns(DataWarning, match=r"'Unnamed: 0' \(no header: a saved row index\?\)"):
        data = load(str(tmp_path / "t.csv"))
    assert data.info.features == ["a", "b", "c", "dose", "flag", "count"]
    data = load(save(frame, tmp_path / "t.parquet"))
    assert data.info.features == ["a", "b", "c", "dose", "flag", "count"]
    assert set(torch.cat([data.train.images, data.test.images])[:, 4].tolist()) == {0.0, 1.0}


def test_an_identifier_column_is_left_out_of_the_default_features(tmp_path: Path) -> None:
    """A sample number (distinct integers in order) is no measurement; shuffled distinct counts stay features."""
    frame = table().drop(columns="group").assign(sample_id=lambda f: 11_000 + np.arange(len(f)))
    frame["reads"] = np.random.default_rng(0).permutation(len(frame)) * 7 + 100  # distinct, not in order
    with pytest.warns(DataWarning, match=r"'sample_id' \(distinct integers in order, row by row: an identifier"):
        data = load(save(frame, tmp_path / "t.csv"))
    assert data.info.features == ["a", "b", "c", "dose", "reads"]
    assert load(save(frame, tmp_path / "u.csv"), features=["a", "sample_id"]).info.features == ["a", "sample_id"]


def test_explicit_features_in_their_order_and_condition_columns(tmp_path: Path) -> None:
    frame = table()
    data = load(save(frame, tmp_path / "t.csv"), features=["c", "a"], columns=["group", "dose"])
    assert data.info.features == ["c", "a"] and data.info.image_shape == (2,)
    assert data.info.columns == {"label": 3, "group": 2, "dose": 0}
    assert data.info.vocabularies["group"] == ["control", "treated"]
    both = torch.cat([data.train.images, data.test.images])
    assert {tuple(row) for row in both.tolist()} == {tuple(r) for r in frame[["c", "a"]].to_numpy(np.float32).tolist()}


def test_text_labels_take_a_sorted_vocabulary(tmp_path: Path) -> None:
    frame = table().assign(label=lambda f: np.array(["B cell", "T cell", "NK"])[f["label"]])
    data = load(save(frame, tmp_path / "t.parquet"), features=["a", "b"])
    assert data.info.vocabularies["label"] == ["B cell", "NK", "T cell"] and data.num_classes == 3
    assert torch.bincount(data.train.labels).tolist() == [16, 16, 16]  # stratified by the text classes


def test_label_null_or_absent_means_one_class(tmp_path: Path) -> None:
    path = save(table().drop(columns=["label", "group"]), tmp_path / "t.csv")
    data = load(path)  # the default label column 'label' is absent: unlabelled
    assert not data.info.labelled and data.num_classes == 1 and data.info.features == ["a", "b", "c", "dose"]
    with pytest.warns(DataWarning, match=r"'label' \(the name genreg keeps for the class"):
        data = load(save(table().drop(columns=["group"]), tmp_path / "u.csv"), label=None)
    assert not data.info.labelled and data.info.features == ["a", "b", "c", "dose"]


def test_a_named_label_column_is_used(tmp_path: Path) -> None:
    frame = table().rename(columns={"label": "kind"})
    data = load(save(frame, tmp_path / "t.csv"), label="kind", features=["a", "b", "c"])
    assert data.num_classes == 3 and torch.bincount(data.test.labels).tolist() == [4, 4, 4]


def test_a_test_file_is_the_test_split_whatever_its_column_order(tmp_path: Path) -> None:
    train, test = table(), table(30, seed=1)
    path = save(train.drop(columns="group"), tmp_path / "train.csv")
    test_path = save(test[["dose", "c", "label", "b", "a"]], tmp_path / "test.csv")
    data = load(path, test_path=test_path)
    assert data.train.images.shape == (60, 4) and data.test.images.shape == (30, 4)
    assert torch.equal(data.test.images, torch.from_numpy(test[["a", "b", "c", "dose"]].to_numpy(np.float32)))
    assert data.source == f"{path} and {test_path}"


def test_classes_take_one_vocabulary_over_both_files(tmp_path: Path) -> None:
    train = table().assign(group=np.array(["x", "y", "z"])[np.arange(ROWS) % 3])
    test = table(6).assign(group="z")
    config = {"features": ["a"], "columns": ["group"]}
    data = load(save(train, tmp_path / "a.csv"), test_path=save(test, tmp_path / "b.csv"), **config)
    assert data.info.vocabularies["group"] == ["x", "y", "z"] and set(data.test.columns["group"].tolist()) == {2}


def test_test_fraction_is_stratified_and_fixed_by_split_seed(tmp_path: Path) -> None:
    path = save(table().drop(columns="group"), tmp_path / "t.csv")
    data = load(path, test_fraction=0.5)
    assert len(data.train) == len(data.test) == 30 and torch.bincount(data.test.labels).tolist() == [10, 10, 10]
    again, other = load(path, test_fraction=0.5), load(path, test_fraction=0.5, split_seed=1)
    assert torch.equal(again.test.images, data.test.images) and not torch.equal(other.test.images, data.test.images)


def test_a_relative_path_is_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert TableConfig(path="t.csv", test_path="u.csv").test_path == str(tmp_path / "u.csv")
    assert AnnDataConfig(path="a.h5ad").path == str(tmp_path / "a.h5ad")


@pytest.mark.parametrize(
    "fields",
    [{"label": "group", "columns": ["group"]}, {"columns": ["label"]}, {"features": ["a", "label"]},
     {"features": ["a"], "columns": ["a"]}, {"columns": ["dose", "dose"]}, {"features": []}],
)  # fmt: skip
def test_a_column_plays_one_part(tmp_path: Path, fields: dict) -> None:
    with pytest.raises(SpecError):
        genreg.load_data({"type": "table", "path": str(tmp_path / "t.csv"), **fields})


def many_columns(tmp_path: Path) -> str:
    return save(pd.DataFrame(np.ones((4, 30)), columns=[f"x{i}" for i in range(30)]), tmp_path / "wide.csv")


@pytest.mark.parametrize(
    ("write", "fields", "says"),
    [
        (lambda d: str(d / "none.csv"), {}, "none.csv: file not found"),
        (lambda d: (d / "d.csv").mkdir() or str(d / "d.csv"), {}, "is a directory, not a regular file"),
        (lambda d: save(table(), d / "t.xlsx"), {},
         "reads files ending in .csv, .csv.gz, .tsv, .tsv.gz, .parquet, .pq, chosen by the suffix"),
        (lambda d: save(table(), d / "t.csv"), {"features": ["a", "group"]},
         "the feature column 'group' is not numeric (dtype object, e.g. 'control' at row 0)"),
        (lambda d: save(table().assign(b=lambda f: f["b"].where(f.index != 7)), d / "t.csv"), {"columns": ["group"]},
         "feature column 'b' holds 1 missing (NaN) or infinite value(s), the first at row 7"),
        (lambda d: save(table().assign(c=np.inf), d / "t.parquet"), {"features": ["a", "c"]},
         "feature column 'c' holds 60 missing (NaN) or infinite value(s), the first at row 0"),
        (lambda d: save(table().assign(c=1e39), d / "t.parquet"), {"features": ["a", "c"]},
         "float32 ends at 3.4e+38"),
        (lambda d: save(table(), d / "t.csv"), {"features": ["a", "z"]},
         "no column 'z' (named in `features`); columns present: 'a', 'b', 'c', 'label', 'group', 'dose'"),
        (many_columns, {"features": ["x1", "nope"], "label": None},
         "columns present: 'x0', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7', 'x8', 'x9', 'x10', 'x11', 'x12', 'x13', "
         "'x14', 'x15', 'x16', 'x17', 'x18', 'x19' (and 10 more)"),
        (lambda d: save(table(), d / "t.csv"), {"label": "kind"}, "no column 'kind' (named in `label`)"),
        (lambda d: save(table(), d / "t.csv"), {"columns": ["dose", "batch"], "features": ["a"]},
         "no column 'batch' (named in `columns`)"),
        (lambda d: save(table().assign(group=lambda f: f["group"].where(f.index != 3)), d / "t.csv"),
         {"features": ["a"], "columns": ["group"]},
         "column 'group' (named in `columns`) has 1 missing value(s), the first at row 3"),
        (lambda d: save(table().assign(label=lambda f: f["label"].where(f.index != 5)), d / "t.csv"),
         {"features": ["a"]}, "column 'label' (named in `label`) has 1 missing value(s), the first at row 5"),
        (lambda d: save(table()[["group"]], d / "t.csv"), {"label": None},
         "no numeric column to use as features (columns: 'group'); name the feature columns in `features`"),
        (lambda d: save(table().iloc[:0], d / "t.csv"), {}, "the table has no rows"),
        (lambda d: (d / "t.parquet").write_text("a,b\n1,2\n") and str(d / "t.parquet"), {},
         "not a valid Parquet file"),
    ],
    ids=["missing", "folder", "suffix", "not numeric", "nan", "inf", "beyond float32", "no feature",
         "many columns", "no label", "no condition", "missing condition", "missing label", "no numeric column",
         "no rows", "not parquet"],
)  # fmt: skip
def test_bad_tables_are_data_errors_naming_file_column_and_field(tmp_path: Path, write, fields, says) -> None:
    path = write(tmp_path)
    with pytest.raises(DataError) as caught:
        load(path, **fields)
    message = str(caught.value)
    assert message.startswith(path) and says in message, message


@pytest.mark.parametrize(
    ("test", "fields", "says"),
    [
        (table(20).drop(columns="c"), {}, "only in the training file: 'c'; only in the test file: none"),
        (table(20).assign(extra=1.0), {}, "only in the training file: none; only in the test file: 'extra'"),
        (table(20).drop(columns="c"), {"features": ["a", "c"]}, "only in the training file: 'c'"),
    ],
    ids=["test lacks one", "test has another", "explicit features"],
)  # fmt: skip
def test_train_and_test_files_with_different_features_are_refused(tmp_path: Path, test, fields, says) -> None:
    path, test_path = save(table(), tmp_path / "a.csv"), save(test, tmp_path / "b.csv")
    with pytest.raises(DataError, match="different feature columns") as caught:
        load(path, test_path=test_path, columns=["group"], **fields)
    assert str(caught.value).startswith(f"{path} and {test_path}") and says in str(caught.value)


def test_a_class_column_of_text_in_one_file_and_numbers_in_the_other_is_refused(tmp_path: Path) -> None:
    path = save(table(), tmp_path / "a.csv")
    test_path = save(table(9).assign(group=np.arange(9) % 2), tmp_path / "b.csv")
    with pytest.raises(DataError, match=r"column 'group' holds text in .*a\.csv but numbers in the other file"):
        load(path, test_path=test_path, features=["a"], columns=["group"])


@pytest.mark.parametrize(
    ("module", "dataset", "name", "extra"),
    [("pandas", "table", "t.csv", "table"), ("pyarrow", "table", "t.parquet", "table"),
     ("anndata", "anndata", "a.h5ad", "anndata")],
)  # fmt: skip
def test_a_missing_package_says_which_extra_to_install(tmp_path, monkeypatch, module, dataset, name, extra) -> None:
    path = save(table(), tmp_path / name) if dataset == "table" else write(cells(), tmp_path / name)
    monkeypatch.setitem(sys.modules, module, None)  # importing it raises ImportError
    with pytest.raises(DataError, match=rf"the `{dataset}` dataset reads its files with the {module} package, which "
                       rf"is not installed here \(.*\): pip install 'genreg\[{extra}\]'\.$"):  # fmt: skip
        genreg.load_data({"type": dataset, "path": path})


# --------------------------------------------------------------------------- anndata


def cells(rows: int = 40, genes: int = 6, x: object = None, seed: int = 0) -> anndata.AnnData:
    """Counts of ``genes`` genes, a categorical ``cell_type`` of 2 classes, a float ``size``, a ``counts`` layer."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.0, size=(rows, genes)).astype(np.float32)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(np.where(np.arange(rows) % 2, "T", "B")), "size": rng.random(rows)},
        index=[f"cell{i}" for i in range(rows)],
    )
    adata = anndata.AnnData(
        counts if x is None else x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(genes)])
    )
    adata.layers["counts"] = counts * 10
    return adata


def write(adata: anndata.AnnData, path: Path) -> str:
    adata.write_h5ad(path)
    return str(path)


def test_anndata_reads_dense_x_with_obs_label_and_columns(tmp_path: Path) -> None:
    adata = cells()
    data = load_anndata(AnnDataConfig(path=write(adata, tmp_path / "a.h5ad"), label="cell_type", columns=["size"]))
    assert data.train.images.shape == (32, 6) and data.test.images.shape == (8, 6)
    assert data.info.features == [f"g{j}" for j in range(6)] and data.info.vocabularies["label"] == ["B", "T"]
    assert data.info.columns == {"label": 2, "size": 0}
    assert rows_of(data) == {tuple(row) for row in adata.X.tolist()}


def test_anndata_densifies_sparse_x_and_defaults_to_one_class(tmp_path: Path) -> None:
    dense = cells().X
    path = write(cells(x=sparse.csr_matrix(dense.astype(np.float64))), tmp_path / "a.h5ad")
    data = load_anndata(AnnDataConfig(path=path))
    assert data.train.images.dtype == torch.float32 and not data.info.labelled and data.num_classes == 1
    assert rows_of(data) == {tuple(row) for row in dense.tolist()}


def test_anndata_reads_raw_and_layers(tmp_path: Path) -> None:
    adata = cells()
    adata.raw = cells(genes=9)  # more genes than X, as after selecting highly variable genes
    path = write(adata, tmp_path / "a.h5ad")
    raw = load_anndata(AnnDataConfig(path=path, layer="raw", test_path=path))
    assert raw.info.features == [f"g{j}" for j in range(9)] and torch.equal(raw.train.images, torch.tensor(adata.raw.X))
    counts = load_anndata(AnnDataConfig(path=path, layer="counts", test_path=path))
    assert counts.info.image_shape == (6,) and torch.equal(counts.train.images, torch.tensor(adata.layers["counts"]))


def test_an_anndata_test_file_has_its_genes_put_in_the_training_order(tmp_path: Path) -> None:
    train, test = cells(), cells(10, seed=1)
    path, test_path = write(train, tmp_path / "a.h5ad"), write(test[:, ::-1].copy(), tmp_path / "b.h5ad")
    data = load_anndata(AnnDataConfig(path=path, test_path=test_path, label="cell_type"))
    assert torch.equal(data.test.images, torch.tensor(test.X)) and data.info.features == list(train.var_names)


def renamed_genes(adata: anndata.AnnData) -> anndata.AnnData:
    adata.var_names = [f"h{j}" for j in range(adata.n_vars)]
    return adata


@pytest.mark.parametrize(
    ("change", "fields", "says"),
    [
        (lambda a: a, {"layer": "spliced"},
         "no layer 'spliced' (named in `layer`); this file has 'X' (the main matrix), no .raw, and in .layers: "
         "'counts'"),
        (lambda a: a, {"layer": "raw"}, "no layer 'raw' (named in `layer`)"),
        (lambda a: a, {"label": "celltype"},
         "no obs column 'celltype' (named in `label`); obs columns present: 'cell_type', 'size'"),
        (lambda a: a, {"columns": ["batch"]}, "no obs column 'batch' (named in `columns`)"),
        (lambda a: cells(x=np.where(np.arange(6) == 2, np.nan, a.X)), {},
         "the feature 'g2' of layer 'X' holds 40 missing (NaN) or infinite value(s), the first at row 0: nan"),
    ],
    ids=["no layer", "no raw", "no label", "no column", "nan"],
)  # fmt: skip
def test_bad_anndata_files_are_data_errors_naming_file_and_field(tmp_path: Path, change, fields, says) -> None:
    path = write(change(cells()), tmp_path / "a.h5ad")
    with pytest.raises(DataError) as caught:
        load_anndata(AnnDataConfig(path=path, **fields))
    assert str(caught.value).startswith(path) and says in str(caught.value), str(caught.value)


def test_an_anndata_label_with_missing_values_names_the_obs_column(tmp_path: Path) -> None:
    adata = cells()
    adata.obs.loc["cell4", "cell_type"] = np.nan
    path = write(adata, tmp_path / "a.h5ad")
    with pytest.raises(DataError, match=r"column 'cell_type' \(named in `label`\) has 1 missing value\(s\), the first "
                       r"at row 4"):  # fmt: skip
        load_anndata(AnnDataConfig(path=path, label="cell_type"))


def test_anndata_with_raw_lists_it_beside_the_layers(tmp_path: Path) -> None:
    adata = cells()
    adata.raw = adata.copy()
    with pytest.raises(DataError, match=r"'X' \(the main matrix\), 'raw' \(adata.raw.X\), and in .layers: 'counts'"):
        load_anndata(AnnDataConfig(path=write(adata, tmp_path / "a.h5ad"), layer="X_pca"))


def test_anndata_files_with_other_genes_are_refused(tmp_path: Path) -> None:
    path, test_path = write(cells(), tmp_path / "a.h5ad"), write(renamed_genes(cells(10)), tmp_path / "b.h5ad")
    with pytest.raises(DataError, match="different features in layer 'X' .*only in the training file: 'g0', 'g1'"):
        load_anndata(AnnDataConfig(path=path, test_path=test_path))


def test_a_file_that_is_not_h5ad_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "a.h5ad"
    path.write_text("cell,g0\n")
    with pytest.raises(DataError, match=f"^{path}: not a valid .h5ad file"):
        load_anndata(AnnDataConfig(path=str(path)))


def test_a_sparse_matrix_too_large_once_dense_is_refused_before_densifying(tmp_path, monkeypatch) -> None:
    path = write(cells(x=sparse.csr_matrix(cells().X)), tmp_path / "a.h5ad")
    monkeypatch.setattr(limits, "available_memory", lambda: (200, "available on this machine"))
    with pytest.raises(DataError, match=r"the layer 'X' as a dense float32 matrix of 40 x 6 needs about 960 bytes"):
        load_anndata(AnnDataConfig(path=path))


# --------------------------------------------------------------------------- command line


def write_spec(tmp_path: Path, data: dict) -> Path:
    spec = {"model": TINY_VAE, "data": data, "train": {"epochs": 1, "batch_size": 16}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return tmp_path / "spec.json"


@pytest.mark.slow
def test_genreg_run_trains_on_a_csv_table(tmp_path: Path) -> None:
    path = save(table().drop(columns="group"), tmp_path / "t.csv")
    spec = write_spec(tmp_path, {"type": "table", "path": path, "columns": ["dose"]})
    result = invoke("run", spec, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    model = genreg.load_model(tmp_path / "run" / "model.safetensors")
    assert model.data_info.image_shape == (3,) and model.data_info.features == ["a", "b", "c"]
    assert json.loads((tmp_path / "run" / "spec.json").read_text())["data"]["path"] == path


def test_genreg_run_on_a_bad_table_exits_2_naming_file_and_column(tmp_path: Path) -> None:
    path = save(table(), tmp_path / "t.csv")
    spec = write_spec(tmp_path, {"type": "table", "path": path, "features": ["a", "gene7"]})
    result = invoke("run", spec, "--out", tmp_path / "run", "--quiet")
    assert_user_error(result, path, "no column 'gene7' (named in `features`)")
    assert not (tmp_path / "run").exists()
