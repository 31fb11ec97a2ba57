"""A bundled sample of real single-cell RNA-seq data: 700 blood cells x 765 genes, 10 cell types.

Data credit: ``data/pbmc68k_reduced.h5ad`` is the 10x Genomics "Fresh 68k PBMCs" data set (Zheng et al.,
"Massively parallel digital transcriptional profiling of single cells", Nature Communications 8, 14049, 2017;
10x Genomics data are licensed CC BY 4.0), reduced to 700 cells and 765 highly variable genes as shipped
inside the scanpy package (BSD-3-Clause) as ``scanpy/datasets/10x_pbmc68k_reduced.h5ad``.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from typing import Literal

from pydantic import Field

from genreg.data import DatasetConfig, DataSplits
from genreg_builtin.h5ad import AnnDataConfig, load_anndata

# Like the bundled digits, the split never changes, whatever seed a spec uses: results stay comparable.
_SPLIT_SEED = 0
_TEST_FRACTION = 0.2


class PbmcSampleConfig(DatasetConfig):
    """700 bundled blood cells x 765 genes (10x PBMC 68k, as scanpy ships it), 10 cell types; needs genreg[anndata].

    ``layer``: ``raw`` (the default), log-normalised expression log(1 + counts per 10,000), non-negative; or
    ``X``, the same genes as per-gene z-scores. ``label``: the ``.obs`` column of classes, by default
    ``bulk_labels``, the 10 cell types (strings such as "CD14+ Monocyte"); null for no labels. ``columns``:
    more ``.obs`` columns as conditions: ``phase`` (G1, S, G2M), ``louvain`` (clusters), or the continuous
    ``n_genes``, ``n_counts``, ``percent_mito``, ``S_score``, ``G2M_score``. A fixed stratified 80/20 split
    (seed 0), whatever the spec's seed.
    """

    layer: Literal["raw", "X"] = Field("raw", description="'raw': log-normalised expression; 'X': z-scores")
    label: str | None = Field("bulk_labels", description="the .obs column of classes (the 10 cell types)")
    columns: list[str] = Field([], description="more .obs columns as conditions (phase, louvain, n_counts, ...)")


def load_pbmc_sample(config: PbmcSampleConfig) -> DataSplits:
    """The bundled cells, read with the ``anndata`` dataset's loader; raises what it raises (a DataError naming
    the file, the layer or the column, and how to install anndata when it is missing)."""
    resource = files("genreg_builtin") / "data" / "pbmc68k_reduced.h5ad"
    with as_file(resource) as path:
        fields = {name: getattr(config, name) for name in DatasetConfig.model_fields}  # binarize, transform
        settings = {"layer": config.layer, "label": config.label, "columns": config.columns}
        split = {"test_fraction": _TEST_FRACTION, "split_seed": _SPLIT_SEED}
        data = load_anndata(AnnDataConfig(path=str(path), **settings, **split, **fields))
    data.source = "pbmc-sample (genreg_builtin/data/pbmc68k_reduced.h5ad)"
    return data
