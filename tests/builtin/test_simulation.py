"""Tests plugins/genreg_builtin/simulation.py: the ``simulated-counts`` dataset and ``simulate_counts``.

Science: counts are whole, non-negative, every cell has one; the share of non-zero counts lands on the density
asked for; the same seed gives the same cells (dense or sparse); cell types have different mean profiles; the
batches differ only when ``batch_effect`` > 0; the exact sampler's counts have the negative binomial's (and the
Poisson's) mean, variance and zero probability; and an ``.h5ad`` written by ``write_h5ad`` reads back through the
``anndata`` dataset as the same cells, the same split.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch

import genreg
from genreg.data.sparse import SparseRows
from genreg.data.sparse import dense as dense_rows  # a split's samples (kept sparse) as one tensor
from genreg.training.runner import check_data
from genreg_builtin import simulation
from genreg_builtin.simulation import SimulatedCountsConfig, simulate_counts

SMALL = {"cells": 1200, "genes": 300}


def dense(**settings: object) -> simulation.SimulatedCounts:
    return simulate_counts(**{**SMALL, **settings}, sparse=False)


def profiles(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each group's pooled expression proportions: its counts summed over its cells, over their total."""
    pooled = np.stack([x[groups == g].sum(0) for g in np.unique(groups)])
    return pooled / pooled.sum(1, keepdims=True)


def spread_between(x: np.ndarray, groups: np.ndarray) -> float:
    """Mean L1 distance between the groups' pooled profiles."""
    p = profiles(x, groups)
    return float(np.mean([np.abs(p[i] - p[j]).sum() for i in range(len(p)) for j in range(i + 1, len(p))]))


def spread_of_noise(x: np.ndarray, groups: np.ndarray, seed: int = 0) -> float:
    """The same, for groups of the same sizes drawn at random: what sampling noise alone gives."""
    return spread_between(x, np.random.default_rng(seed).permutation(groups))


def test_the_same_seed_gives_the_same_cells_dense_or_sparse_and_another_seed_others() -> None:
    first, again = simulate_counts(**SMALL, seed=3), simulate_counts(**SMALL, seed=3)
    assert (first.counts != again.counts).nnz == 0
    assert np.array_equal(first.cell_type, again.cell_type) and np.array_equal(first.batch, again.batch)
    as_dense = dense(seed=3)
    assert np.array_equal(first.counts.toarray(), as_dense.counts)
    other = simulate_counts(**SMALL, seed=4)
    assert (first.counts != other.counts).nnz > 0


def test_shapes_types_and_balanced_classes() -> None:
    counts, cell_type, batch = simulate_counts(1000, 250, cell_types=5, batches=4)
    assert counts.shape == (1000, 250) and counts.format == "csr" and counts.dtype == np.float32
    assert cell_type.shape == batch.shape == (1000,) and cell_type.dtype == batch.dtype == np.int64
    assert np.bincount(cell_type).tolist() == [200] * 5
    assert np.bincount(batch).tolist() == [250] * 4


@pytest.mark.parametrize(("genes", "density"), [(300, 0.05), (1000, 0.05), (300, 0.2)])
def test_the_share_of_non_zero_counts_lands_on_the_density_asked_for(genes: int, density: float) -> None:
    counts = simulate_counts(2000, genes, density=density).counts
    assert counts.nnz / (2000 * genes) == pytest.approx(density, rel=0.05)


def test_poisson_counts_land_on_their_density_too() -> None:
    counts = simulate_counts(**SMALL, counts="poisson", density=0.1).counts
    assert counts.nnz / (SMALL["cells"] * SMALL["genes"]) == pytest.approx(0.1, rel=0.05)


def test_a_library_size_replaces_the_density_target() -> None:
    counts = simulate_counts(**SMALL, library_size=500.0, library_spread=0.0).counts
    totals = np.asarray(counts.sum(1)).ravel()
    assert np.median(totals) == pytest.approx(500, rel=0.05)


def test_counts_are_whole_non_negative_and_no_cell_is_empty() -> None:
    x = dense().counts
    assert x.dtype == np.float32 and (x >= 0).all() and np.array_equal(x, np.round(x))
    assert (x.sum(1) > 0).all()


def test_a_cell_drawn_empty_gets_one_count_in_a_gene_of_its_own_proportions() -> None:
    """So shallow that most draws are empty: each such cell holds exactly one count, never zero."""
    x, cell_type, _ = simulate_counts(2000, 20, density=0.005, sparse=False)
    totals = x.sum(1)
    assert (totals >= 1).all()
    assert (totals == 1).mean() > 0.5  # most cells were given their one count
    # the count goes where the cell's type expresses: a type's pooled profile still differs from the others'
    assert spread_between(x, cell_type) > 0


DEEP = 2000.0  # counts per cell: enough that 150 cells' pooled profile is far from its sampling noise


def test_cell_types_differ_in_their_mean_profiles() -> None:
    x, cell_type, _ = dense(batch_effect=0.0, library_size=DEEP)
    assert spread_between(x, cell_type) > 3 * spread_of_noise(x, cell_type)
    same = dense(batch_effect=0.0, de_fraction=0.0, library_size=DEEP)
    assert spread_between(same.counts, same.cell_type) < 1.5 * spread_of_noise(same.counts, same.cell_type)


def test_a_batch_effect_is_there_when_asked_for_and_absent_at_zero() -> None:
    x, _, batch = dense(batch_effect=0.3, library_size=DEEP)
    assert spread_between(x, batch) > 3 * spread_of_noise(x, batch)
    x, _, batch = dense(batch_effect=0.0, library_size=DEEP)
    assert spread_between(x, batch) < 1.5 * spread_of_noise(x, batch)


@pytest.mark.parametrize("mean", [0.05, 0.8, 6.0, 25.0, 60.0])
def test_the_sampler_draws_the_negative_binomial_and_poisson_it_says(mean: float) -> None:
    """Splatter's BCV with chi 1 and bcv_common 0.1: shape r = mean / (0.1 sqrt(mean) + 1)^2; variance mean +
    mean^2 / r, P(0) = (1 + mean / r)^-r. Means above DIRECT_MEAN take numpy's samplers."""
    n = 200_000
    rng = np.random.default_rng(0)
    mu = np.full((1, n), mean, dtype=np.float32)
    spread = simulation._spread(mu, np.ones(n), 0.1)
    r = mean / float(spread[0, 0])
    x = simulation._draw(rng, mu, spread).astype(np.float64)
    assert x.mean() == pytest.approx(mean, rel=0.02, abs=0.002)
    assert x.var() == pytest.approx(mean + mean**2 / r, rel=0.05)
    assert np.mean(x == 0) == pytest.approx((1 + mean / r) ** -r, abs=0.005)
    y = simulation._draw(rng, mu, None).astype(np.float64)
    assert y.mean() == pytest.approx(mean, rel=0.02, abs=0.002)
    assert y.var() == pytest.approx(mean, rel=0.05, abs=0.002)
    assert np.mean(y == 0) == pytest.approx(np.exp(-mean), abs=0.005)


def test_a_dense_simulation_holds_little_more_than_its_result() -> None:
    """Memory-light: the cells are drawn in row chunks into one float32 array, so the peak of numpy's allocations
    stays below two copies of the result."""
    cells, genes = 20_000, 1_000
    tracemalloc.start()
    try:
        x = simulate_counts(cells, genes, sparse=False).counts
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert x.nbytes == cells * genes * 4
    assert peak < 2 * x.nbytes, peak / x.nbytes


# --------------------------------------------------------------------------- the dataset


@pytest.fixture(scope="module")
def cells() -> genreg.DataSplits:
    return genreg.load_data({"type": "simulated-counts", **SMALL})


def test_the_dataset_names_cell_types_batches_and_genes_and_stratifies_by_type(cells: genreg.DataSplits) -> None:
    info = cells.info
    assert info.image_shape == (300,) and len(cells.train) + len(cells.test) == 1200
    assert info.class_names() == [f"type {k}" for k in range(8)]
    assert cells.train.vocabularies["batch"] == ["batch 0", "batch 1", "batch 2"]
    assert info.features[:2] == ["gene_0000", "gene_0001"] and len(info.features) == 300
    assert torch.bincount(cells.test.labels).tolist() == [30] * 8  # 150 cells per type, 20% held out
    assert isinstance(cells.train.images, SparseRows)  # kept sparse: no transform asks for it dense
    x = torch.cat([dense_rows(cells.train.images), dense_rows(cells.test.images)])
    assert x.dtype == torch.float32 and torch.equal(x, x.round()) and (x.sum(1) > 0).all()


def test_the_dataset_is_the_function_s_cells(cells: genreg.DataSplits) -> None:
    x, cell_type, batch = dense()
    rows = {row.tobytes(): k for k, row in enumerate(x)}
    found = [rows[row.tobytes()] for row in dense_rows(cells.test.images).numpy()]
    assert np.array_equal(cells.test.labels.numpy(), cell_type[found])
    assert np.array_equal(cells.test.columns["batch"].numpy(), batch[found])


def test_a_count_likelihood_accepts_the_dataset(cells: genreg.DataSplits) -> None:
    spec = {
        "type": "cvae",
        "latent_dim": 4,
        "encoder": {"type": "mlp", "hidden": [16]},
        "decoder": {"type": "mlp", "hidden": [16]},
        "losses": [{"type": "negative-binomial"}, {"type": "kld"}],
        "conditioner": {"type": "onehot", "column": "batch"},
    }
    model = genreg.build_model(spec, cells.info)
    check_data(model, cells)  # raises a DataError for non-integers or an empty row
    assert float(model.losses[0].library_size) > 0


def test_density_and_library_size_together_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="not both"):
        SimulatedCountsConfig(density=0.1, library_size=1000.0)
    with pytest.raises(pydantic.ValidationError, match="`density`"):
        SimulatedCountsConfig(density=None)
    config = SimulatedCountsConfig(library_size=1000.0)
    assert config.simulation()["density"] is None and config.simulation()["library_size"] == 1000.0
    with pytest.raises(pydantic.ValidationError):
        SimulatedCountsConfig(density=1.5)


def test_an_h5ad_written_reads_back_through_the_anndata_dataset_as_the_same_cells(
    tmp_path: Path, cells: genreg.DataSplits
) -> None:
    anndata = pytest.importorskip("anndata")
    path = simulation.write_h5ad(tmp_path / "cells.h5ad", *simulate_counts(**SMALL))
    adata = anndata.read_h5ad(path)
    assert adata.X.format == "csr" and adata.X.dtype == np.float32
    assert list(adata.obs["cell_type"].cat.categories) == [f"type {k}" for k in range(8)]
    assert list(adata.obs["batch"].cat.categories) == ["batch 0", "batch 1", "batch 2"]
    again = genreg.load_data({"type": "anndata", "path": str(path), "label": "cell_type", "columns": ["batch"]})
    # the same rows, split by the same stratified draw (seed 0, 20%), with the same names
    assert torch.equal(dense_rows(again.train.images), dense_rows(cells.train.images))
    assert torch.equal(dense_rows(again.test.images), dense_rows(cells.test.images))
    assert torch.equal(again.test.labels, cells.test.labels)
    assert torch.equal(again.test.columns["batch"], cells.test.columns["batch"])
    assert again.info.class_names() == cells.info.class_names() and again.info.features == cells.info.features
