"""Simulated single-cell counts whose truth is known: the built-in ``simulated-counts`` dataset.

Cells of known cell types, measured in known batches, so that a model's latent space can be scored against the
truth (do the cell types stay apart, do the batches mix?). The generative process is that of Splatter's
``splatSimulateGroups`` with batches (Zappia, Phipson & Oshlack 2017, "Splatter: simulation of single-cell RNA
sequencing data", Genome Biology 18:174), its parameter names in brackets:

1. Gene means lambda_g ~ Gamma(shape ``gene_mean_shape`` [mean.shape, 0.6]). Splatter's rate [mean.rate] cancels
   in step 4 and is left out.
2. Cell-type differential expression: for each type t, a factor per gene from Splatter's ``getLNormFactors``: a
   gene is differentially expressed with probability ``de_fraction`` [de.prob, 0.1]; its factor is drawn
   log-normal with location ``de_location`` and scale ``de_scale`` [de.facLoc, de.facScale] and inverted
   (down-regulation) with probability 0.5 [de.downProb], the direction reversed for a draw below 1 (as Splatter
   does); other genes keep factor 1. The default location, 1.0 (a typical DE gene 2.7-fold up or down), is
   Splatter's 0.1 raised so that 8 types stay apart at droplet depths (a few percent of counts non-zero), as
   blood cell types do; its scale is Splatter's 0.4.
3. Batch effects: for each batch b, a factor for *every* gene, drawn the same way (selection probability 1,
   inverted with probability 0.5), location and scale both ``batch_effect`` [batch.facLoc, batch.facScale: 0.1
   each by default in Splatter, 0.3 here, a batch effect a VAE's latent plainly shows]. ``batch_effect: 0`` gives
   every factor 1: no batch effect.
4. Cell c, of type t in batch b: proportions p_cg = lambda_g f_tg f_bg / sum_g (lambda_g f_tg f_bg), library size
   L_c ~ LogNormal(log m, ``library_spread`` [lib.loc, lib.scale]), mean mu_cg = L_c p_cg.
5. Counts: Splatter's biological coefficient of variation bcv_cg = (``bcv_common`` + 1 / sqrt(mu_cg))
   sqrt(``bcv_df`` / X_g), X_g ~ chi-squared(``bcv_df``) once per gene [bcv.common 0.1, bcv.df 60], and
   x_cg ~ Poisson(Gamma(shape 1 / bcv^2, scale mu_cg bcv^2)), i.e. negative binomial of mean mu_cg and inverse
   dispersion 1 / bcv_cg^2; ``counts: "poisson"`` draws Poisson(mu_cg) instead (no biological variation).

What is simplified or left out: the median library size m is not a parameter but solved (by bisection on the
expected share of non-zero counts, over the cells' types, batches and library sizes) so that about ``density``
of the counts are non-zero (10x droplet data: a few percent), unless ``library_size`` gives m itself (Splatter's
lib.loc 11, m = 60,000, gives dense counts); no expression outlier genes [out.prob], no dropout (Splatter's
default is none), no paths; cell types and batches are balanced and independent (cell i's type is a random
permutation of i mod T, its batch another of i mod B), where Splatter draws groups with probabilities [group.prob]
and batches as blocks of cells [batchCells].

A cell with no count at all cannot be modelled by a count likelihood (its proportions are undefined), so a cell
whose draw is all zeros gets one count, in a gene drawn from its own proportions p_c: at the default density this
happens to almost no cell (its chance is the product over 2,000 genes of P(x = 0)).

The counts are drawn exactly, row chunk by row chunk, without drawing a gamma variate per value: each value's
negative-binomial (or Poisson) inverse CDF is walked from 0 with one uniform draw, which stops at 0 for most values
(95% at the default density); means above :data:`DIRECT_MEAN` are drawn with numpy's samplers instead. A chunk's
working arrays are small (:data:`CHUNK_VALUES` values), so memory is the result's (one dense float32 copy, or a
CSR matrix) plus a little. Everything is drawn with ``numpy.random.Generator`` streams seeded by ``seed``: the
same seed gives the same cells, dense or sparse.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from genreg.data import DatasetConfig, DataSplits, as_split, finish
from genreg.errors import DataError
from genreg.limits import check_memory
from genreg_builtin.datasets import _stratified_split

__all__ = [
    "SimulatedCounts",
    "SimulatedCountsConfig",
    "batch_names",
    "cell_type_names",
    "gene_names",
    "load_simulated_counts",
    "simulate_counts",
    "to_anndata",
    "write_h5ad",
]

#: Values (cells x genes) drawn per chunk: a chunk's float64 working arrays are 16 MB each.
CHUNK_VALUES = 2**21
#: Means above this are drawn by numpy's Poisson or negative-binomial sampler rather than by the inverse CDF.
DIRECT_MEAN = 30.0
#: Steps of an inverse-CDF walk at most (a value the walk has not placed by then keeps this count; below a mean of
#: :data:`DIRECT_MEAN` the chance of that is far below 1e-12).
MAX_STEPS = 2000
#: Gauss-Hermite nodes over the log-normal library sizes, for the expected density.
NODES = 16
#: The stream ids of the seed's generators: parameters, cells, counts.
_PARAMETERS, _CELLS, _COUNTS = 0, 1, 2

Counts = Literal["negative-binomial", "poisson"]


class SimulatedCounts(NamedTuple):
    """What :func:`simulate_counts` returns: ``counts`` (cells, genes) float32 of whole numbers (a scipy CSR matrix,
    or a dense numpy array), and each cell's ``cell_type`` (0..T-1) and ``batch`` (0..B-1), int64."""

    counts: Any
    cell_type: np.ndarray
    batch: np.ndarray


# --------------------------------------------------------------------------- the dataset's config


class SimulatedCountsConfig(DatasetConfig):
    """Simulated single-cell counts with known cell types and batch effects (Splatter's model, simplified).

    Counts (cells, genes) as float32 whole numbers, every cell with at least one count; ``label``: the cell type,
    strings "type 0" .. "type T-1"; the class column ``batch``: "batch 0" .. "batch B-1"; features "gene_0000" ..;
    a stratified held-out ``test_fraction`` by cell type. See :mod:`genreg_builtin.simulation` for the process
    (Zappia et al. 2017, Genome Biology 18:174) and what it simplifies. ``seed`` fixes the cells and the split.
    """

    cells: int = Field(10_000, ge=2, le=100_000_000, description="number of cells (rows)")
    genes: int = Field(2_000, ge=2, le=1_000_000, description="number of genes (features)")
    cell_types: int = Field(8, ge=1, le=10_000, description="cell types, the label (balanced)")
    batches: int = Field(3, ge=1, le=10_000, description="batches, the class column 'batch' (balanced)")
    density: float | None = Field(
        0.05,
        gt=0,
        lt=1,
        description="the share of non-zero counts aimed at: the median library size is solved for it; null when "
        "library_size is given",
    )
    library_size: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="the median library size (total count of a cell) instead of a density target (Splatter: e^11)",
    )
    library_spread: float = Field(
        0.2, ge=0, le=5, allow_inf_nan=False, description="sd of the log library size (Splatter's lib.scale)"
    )
    gene_mean_shape: float = Field(
        0.6, gt=0, le=100, allow_inf_nan=False, description="gamma shape of the gene means (Splatter's mean.shape)"
    )
    de_fraction: float = Field(
        0.1, ge=0, le=1, description="share of genes differentially expressed in each cell type (de.prob)"
    )
    de_location: float = Field(
        1.0, ge=0, le=10, allow_inf_nan=False, description="log-normal location of the DE factors (de.facLoc)"
    )
    de_scale: float = Field(
        0.4, ge=0, le=10, allow_inf_nan=False, description="log-normal scale of the DE factors (de.facScale)"
    )
    batch_effect: float = Field(
        0.3,
        ge=0,
        le=10,
        allow_inf_nan=False,
        description="location and scale of every gene's log-normal batch factor (batch.facLoc, batch.facScale); "
        "0: none",
    )
    counts: Counts = Field("negative-binomial", description="'negative-binomial' (Splatter's BCV) or 'poisson'")
    bcv_common: float = Field(
        0.1, ge=0, le=10, allow_inf_nan=False, description="common biological coefficient of variation (bcv.common)"
    )
    bcv_df: float = Field(
        60.0, gt=0, le=1e6, allow_inf_nan=False, description="degrees of freedom of the BCV's chi-squared (bcv.df)"
    )
    seed: int = Field(0, ge=0, description="seed of the simulation and of the held-out split")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="held-out share, stratified by cell type")

    @model_validator(mode="after")
    def _one_depth(self) -> SimulatedCountsConfig:
        """``library_size`` replaces the density target: giving both is an error; giving neither too."""
        if self.library_size is not None and "density" in self.model_fields_set and self.density is not None:
            raise ValueError(
                "give `density` (the share of non-zero counts; the library size is solved for it) or "
                "`library_size` (the median total count of a cell), not both"
            )
        if self.library_size is None and self.density is None:
            raise ValueError("give `density` (the share of non-zero counts) or `library_size`")
        return self

    def simulation(self) -> dict[str, Any]:
        """The keyword arguments of :func:`simulate_counts` this config stands for."""
        names = [name for name in SimulatedCountsConfig.model_fields if name not in DatasetConfig.model_fields]
        values = {name: getattr(self, name) for name in names if name != "test_fraction"}
        if self.library_size is not None:
            values["density"] = None
        return values


# --------------------------------------------------------------------------- names


def _numbered(prefix: str, n: int, width: int = 1) -> np.ndarray:
    """``prefix`` followed by 0..n-1, zero-padded to one width, so that sorting the names keeps their order."""
    digits = max(width, len(str(n - 1)))
    return np.array([f"{prefix}{i:0{digits}d}" for i in range(n)])


def cell_type_names(n: int) -> np.ndarray:
    """ "type 0" .. "type n-1" (zero-padded past 10 types: "type 00"), the label's values."""
    return _numbered("type ", n)


def batch_names(n: int) -> np.ndarray:
    """ "batch 0" .. "batch n-1" (zero-padded past 10), the values of the column ``batch``."""
    return _numbered("batch ", n)


def gene_names(n: int) -> np.ndarray:
    """ "gene_0000" .. (at least four digits), the feature names."""
    return _numbered("gene_", n, width=4)


# --------------------------------------------------------------------------- the simulation


def _lnorm_factors(
    rng: np.random.Generator, shape: tuple[int, ...], selected: float, down: float, location: float, scale: float
) -> np.ndarray:
    """Splatter's ``getLNormFactors``: each entry selected with probability ``selected``, its factor log-normal
    (``location``, ``scale``) and inverted with probability ``down``, the direction reversed for a factor below 1;
    unselected entries are 1."""
    chosen = rng.random(shape) < selected
    inverted = rng.random(shape) < down
    factors = rng.lognormal(location, scale, shape)
    inverted ^= factors < 1
    factors = np.where(inverted, 1.0 / factors, factors)
    return np.where(chosen, factors, 1.0)


class _Model(NamedTuple):
    """The simulation's fixed parameters: proportions per (type, batch), the BCV's per-gene factor, the cells."""

    proportions: np.ndarray  # (T, B, G) float64, each row summing to 1
    chi: np.ndarray  # (G,) sqrt(bcv_df / X_g)
    cell_type: np.ndarray  # (N,) int64
    batch: np.ndarray  # (N,) int64
    log_library: np.ndarray  # (N,) standard normal draws: log L_c = log m + spread * this


def _model(config: SimulatedCountsConfig) -> _Model:
    """Draw the simulation's parameters and cells (the counts aside) from ``config``'s seed."""
    c = config
    genes = c.genes
    parameters, cell_stream = (np.random.default_rng([c.seed, stream]) for stream in (_PARAMETERS, _CELLS))
    means = parameters.gamma(c.gene_mean_shape, 1.0, genes)
    means = np.maximum(means, np.finfo(np.float64).tiny)  # a shape far below 1 can underflow to 0
    de = _lnorm_factors(parameters, (c.cell_types, genes), c.de_fraction, 0.5, c.de_location, c.de_scale)
    effect = _lnorm_factors(parameters, (c.batches, genes), 1.0, 0.5, c.batch_effect, c.batch_effect)
    chi = np.sqrt(c.bcv_df / parameters.chisquare(c.bcv_df, genes))
    cellwise = means * de[:, None, :] * effect[None, :, :]  # (T, B, G)
    proportions = cellwise / cellwise.sum(axis=2, keepdims=True)
    cell_type = cell_stream.permutation(np.arange(c.cells, dtype=np.int64) % c.cell_types)
    batch = cell_stream.permutation(np.arange(c.cells, dtype=np.int64) % c.batches)
    log_library = cell_stream.standard_normal(c.cells)
    return _Model(proportions, chi, cell_type, batch, log_library)


def _spread(mu: np.ndarray, chi: np.ndarray, bcv_common: float) -> np.ndarray:
    """(bcv sqrt(mu))^2 = ((bcv_common sqrt(mu) + 1) chi)^2 for bcv = (bcv_common + 1 / sqrt(mu)) chi, of mu's
    dtype: the negative binomial's mu / r, r = 1 / bcv^2 its shape (finite where mu = 0, where r is 0)."""
    spread = np.sqrt(mu)
    spread *= bcv_common
    spread += 1
    spread *= chi.astype(mu.dtype, copy=False)
    return np.square(spread, out=spread)


def _zero_probability(mu: np.ndarray, spread: np.ndarray | None) -> np.ndarray:
    """P(x = 0), of mu's dtype: exp(-mu) for a Poisson (``spread`` None), (1 + mu / r)^-r = exp(-mu log1p(s) / s)
    for a negative binomial of shape r = mu / s (1 where mu = 0)."""
    if spread is None:
        return np.exp(-mu)
    zero = np.log1p(spread)
    zero *= mu
    zero /= spread
    np.negative(zero, out=zero)
    return np.exp(zero, out=zero)


def _expected_density(model: _Model, library_size: float, config: SimulatedCountsConfig) -> float:
    """The expected share of non-zero counts at median library size ``library_size``, over the cells' (type, batch)
    mix, and library sizes by Gauss-Hermite quadrature of their log-normal."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(NODES)
    weights = weights / weights.sum()
    types, batches = model.proportions.shape[:2]
    mix = np.bincount(model.cell_type * batches + model.batch, minlength=types * batches).astype(np.float64)
    mix = mix / mix.sum()
    p = model.proportions.reshape(types * batches, -1)[mix > 0]  # (K, G)
    mix = mix[mix > 0]
    nonzero = 0.0
    for node, weight in zip(nodes, weights, strict=True):
        mu = library_size * math.exp(config.library_spread * node) * p
        spread = None if config.counts == "poisson" else _spread(mu, model.chi, config.bcv_common)
        nonzero += weight * float(mix @ (1.0 - _zero_probability(mu, spread)).mean(axis=1))
    return nonzero


def _solve_library_size(model: _Model, config: SimulatedCountsConfig) -> float:
    """The median library size whose expected density is ``density`` (bisection on its log; the density rises
    with it)."""
    low, high = math.log(1e-6), math.log(1e12)
    for _ in range(60):
        middle = 0.5 * (low + high)
        if _expected_density(model, math.exp(middle), config) < config.density:
            low = middle
        else:
            high = middle
        if high - low < 1e-4:
            break
    return math.exp(0.5 * (low + high))


def _draw(rng: np.random.Generator, mu: np.ndarray, spread: np.ndarray | None) -> np.ndarray:
    """Counts of means ``mu`` (rows, G) float32: Poisson (``spread`` None) or negative binomial of shape
    r = mu / spread (see :func:`_spread`), as float32.

    One uniform u per value, against P(x = 0) in float32: most values stop there, at 0. Below :data:`DIRECT_MEAN`
    the others walk their CDF on from 0 in float64, stopping at the first k whose CDF reaches u (the pmf by its
    recurrence: p_k = p_{k-1} mu / k for a Poisson, p_{k-1} (k - 1 + r) / k mu / (r + mu) for a negative
    binomial); larger means are drawn by numpy's samplers."""
    out = np.zeros(mu.shape, dtype=np.float32)
    flat_mu, flat_out = mu.reshape(-1), out.reshape(-1)
    flat_spread = None if spread is None else spread.reshape(-1)
    u = rng.random(flat_mu.shape, dtype=np.float32)
    zero = _zero_probability(flat_mu, flat_spread)
    direct = flat_mu > DIRECT_MEAN
    walking = np.flatnonzero((u >= zero) & ~direct)
    u, pmf, m = u[walking].astype(np.float64), zero[walking].astype(np.float64), flat_mu[walking].astype(np.float64)
    cdf = pmf.copy()
    r = None if flat_spread is None else m / flat_spread[walking]
    ratio = m if r is None else m / (r + m)
    for k in range(1, MAX_STEPS + 1):
        if not len(walking):
            break
        pmf *= ratio / k if r is None else ratio * (k - 1 + r) / k
        cdf += pmf
        placed = (u < cdf) | (k == MAX_STEPS)
        flat_out[walking[placed]] = k
        going = ~placed
        walking, u, pmf, cdf, ratio = walking[going], u[going], pmf[going], cdf[going], ratio[going]
        if r is not None:
            r = r[going]
    if direct.any():
        where = np.flatnonzero(direct)
        big = flat_mu[where].astype(np.float64)
        if flat_spread is None:
            flat_out[where] = rng.poisson(big)
        else:
            shape = big / flat_spread[where]
            flat_out[where] = rng.negative_binomial(shape, shape / (shape + big))
    return out


def _chunks(model: _Model, library_size: float, config: SimulatedCountsConfig):
    """Yield (start, stop, counts (stop - start, G) float32) over the cells, in row chunks."""
    genes = model.proportions.shape[2]
    rows = max(1, CHUNK_VALUES // genes)
    rng = np.random.default_rng([config.seed, _COUNTS])
    libraries = (library_size * np.exp(config.library_spread * model.log_library)).astype(np.float32)
    proportions = model.proportions.astype(np.float32)
    for start in range(0, len(model.cell_type), rows):
        stop = min(start + rows, len(model.cell_type))
        p = proportions[model.cell_type[start:stop], model.batch[start:stop]]  # (rows, G)
        mu = p * libraries[start:stop, None]
        spread = None if config.counts == "poisson" else _spread(mu, model.chi, config.bcv_common)
        block = _draw(rng, mu, spread)
        empty = np.flatnonzero(block.sum(axis=1) == 0)
        if len(empty):  # one count in a gene drawn from the cell's own proportions
            cumulative = np.cumsum(p[empty], axis=1, dtype=np.float64)
            picks = (cumulative < rng.random((len(empty), 1)) * cumulative[:, -1:]).sum(axis=1)
            block[empty, np.minimum(picks, genes - 1)] = 1
        yield start, stop, block


def simulate_counts(
    cells: int = 10_000,
    genes: int = 2_000,
    cell_types: int = 8,
    batches: int = 3,
    *,
    density: float | None = 0.05,
    library_size: float | None = None,
    library_spread: float = 0.2,
    gene_mean_shape: float = 0.6,
    de_fraction: float = 0.1,
    de_location: float = 1.0,
    de_scale: float = 0.4,
    batch_effect: float = 0.3,
    counts: Counts = "negative-binomial",
    bcv_common: float = 0.1,
    bcv_df: float = 60.0,
    seed: int = 0,
    sparse: bool = True,
) -> SimulatedCounts:
    """Simulate single-cell counts of known cell types and batches (see the module's docstring for the process).

    Returns :class:`SimulatedCounts` ``(counts, cell_type, batch)``: ``counts`` (cells, genes) float32 whole
    numbers, a ``scipy.sparse.csr_matrix`` (``sparse``, the default; needs scipy) or a dense numpy array, every
    row with a count; ``cell_type`` and ``batch`` (cells,) int64, classes 0..T-1 and 0..B-1 (name them with
    :func:`cell_type_names` and :func:`batch_names`). ``density`` is the share of non-zero counts aimed at (the
    median library size is solved for it); ``library_size``, when given, sets that median instead (``density`` is
    then not used). The other parameters are :class:`SimulatedCountsConfig`'s. The same ``seed`` gives the same cells,
    dense or sparse.
    """
    settings = {name: value for name, value in locals().items() if name != "sparse"}
    if library_size is not None:
        settings["density"] = None
    config = SimulatedCountsConfig(**settings)  # checks every value, as a spec's would be
    model = _model(config)
    if library_size is None:
        library_size = _solve_library_size(model, config)
    chunks = _chunks(model, library_size, config)
    if not sparse:
        x = np.empty((cells, genes), dtype=np.float32)
        for start, stop, block in chunks:
            x[start:stop] = block
        return SimulatedCounts(x, model.cell_type, model.batch)
    from scipy import sparse as scipy_sparse

    data, indices, row_counts = [], [], []
    for _, _, block in chunks:
        rows, columns = np.nonzero(block)
        data.append(block[rows, columns])
        indices.append(columns.astype(np.int32))
        row_counts.append(np.bincount(rows, minlength=len(block)))
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(row_counts))]).astype(np.int64)
    if indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32)
    matrix = scipy_sparse.csr_matrix((np.concatenate(data), np.concatenate(indices), indptr), shape=(cells, genes))
    return SimulatedCounts(matrix, model.cell_type, model.batch)


# --------------------------------------------------------------------------- files


def to_anndata(counts: Any, cell_type: np.ndarray, batch: np.ndarray) -> Any:
    """An ``anndata.AnnData`` of the cells: ``X`` the counts as a CSR matrix of float32, ``.obs`` columns
    ``cell_type`` ("type 0" ..) and ``batch`` ("batch 0" ..) as categoricals, var names "gene_0000" ..; what
    scanpy and scvi-tools read (``scvi.model.SCVI.setup_anndata(adata, batch_key="batch")``). Needs anndata."""
    import anndata
    import pandas as pd
    from scipy import sparse as scipy_sparse

    x = scipy_sparse.csr_matrix(counts, dtype=np.float32)
    types, batches = int(cell_type.max()) + 1, int(batch.max()) + 1
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(cell_type, categories=cell_type_names(types)),
            "batch": pd.Categorical.from_codes(batch, categories=batch_names(batches)),
        },
        index=_numbered("cell_", x.shape[0], width=6),
    )
    var = pd.DataFrame(index=gene_names(x.shape[1]))
    return anndata.AnnData(X=x, obs=obs, var=var)


def write_h5ad(path: str | Path, counts: Any, cell_type: np.ndarray, batch: np.ndarray) -> Path:
    """Write the cells (see :func:`to_anndata`) to the ``.h5ad`` at ``path``; returns the path. The ``anndata``
    dataset reads it back with ``{"type": "anndata", "path": ..., "label": "cell_type", "columns": ["batch"]}``."""
    path = Path(path)
    to_anndata(counts, cell_type, batch).write_h5ad(path)
    return path


# --------------------------------------------------------------------------- the dataset


def load_simulated_counts(config: SimulatedCountsConfig) -> DataSplits:
    """The simulated cells as a dataset: vectors (cells, genes) of float32 counts, ``label`` the cell type
    ("type 0" ..), the class column ``batch`` ("batch 0" ..), features "gene_0000" .., and a held-out
    ``test_fraction`` stratified by cell type, chosen with ``seed``; kept sparse (CSR, see
    :mod:`genreg.data.sparse`) unless a ``transform`` asks for them dense. Raises :class:`DataError` when the
    matrix would not fit in memory."""
    n, g = config.cells, config.genes
    dense = bool(config.transform_steps)
    size = n * g * 4 if dense else int(n * g * config.density * 8 * 1.2)  # CSR: values and indices, some slack
    what = f"simulated-counts: {n:,} cells x {g:,} genes as {'dense float32' if dense else 'CSR'}"
    check_memory(size, what, "simulate fewer cells or genes, or use a machine with more memory.", DataError)
    x, cell_type, batch = simulate_counts(**config.simulation(), sparse=not dense)
    source = (
        f"simulated-counts ({n:,} cells x {g:,} genes, {config.cell_types} cell types, {config.batches} batches, "
        f"seed {config.seed})"
    )
    types, batches = cell_type_names(config.cell_types)[cell_type], batch_names(config.batches)[batch]
    data = as_split(x, types, source, {"batch": batches}, keys=("vectors", "cell type"))
    del x  # the split holds it (as a tensor sharing its memory)
    train, test = _stratified_split(data, config.test_fraction, config.seed)
    return finish(train, test, config, source, features=gene_names(g).tolist())
