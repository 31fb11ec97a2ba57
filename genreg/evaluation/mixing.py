"""Whether the classes of one column mix or stay apart in a latent space: its cells' nearest neighbours.

A cVAE conditioned on the experimental batch of single cells should leave no batch in its latent space (the
batches mix) while the cell types stay apart. Both are read off each cell's k nearest neighbours there: how
well a k-NN classifier reads the column's class (high: the classes stay apart), and how mixed the column's
classes are among the neighbours (the entropy of batch mixing of Haghverdi et al. 2018).
"""

from __future__ import annotations

import math

import torch

from genreg.evaluation.metrics import chance_level, knn_accuracy

#: distances alive at once in the neighbour search (float32: 64 MB), ``rows x N`` of them
DISTANCES = 2**24


def neighbourhood_scores(
    z: torch.Tensor, labels: torch.Tensor, k: int = 15, seed: int = 0, max_cells: int = 20000
) -> dict[str, float]:
    """How one class column sits in the latent codes ``z``: k-NN accuracy and mixing entropy, each in [0, 1].

    ``z`` is (N, D) latent codes (e.g. posterior means), ``labels`` (N,) the integer classes of one column (torch
    tensors or numpy arrays). With
    N above ``max_cells``, ``max_cells`` cells drawn without replacement (a ``torch.Generator`` seeded with
    ``seed``) stand for them all, in every figure. Returns

    - ``knn_accuracy``: the 5-fold cross-validated accuracy of a k-NN classifier of the class (Euclidean,
      majority of ``k``; :func:`~genreg.evaluation.metrics.knn_accuracy`), and ``chance``, that of always guessing
      the most frequent class (:func:`~genreg.evaluation.metrics.chance_level`).
    - ``mixing_entropy``: for each cell, the Shannon entropy of the classes of its ``k`` nearest neighbours
      (Euclidean in ``z``, itself left out), divided by log C, C the classes present, averaged over the cells:
      1 is neighbourhoods holding every class equally, 0 every neighbourhood of one class. This is the entropy
      of batch mixing of Haghverdi et al. 2018 ("Batch effects in single-cell RNA-sequencing data are corrected
      by matching mutual nearest neighbors", Nature Biotechnology 36:421), as scVI was scored with it (Lopez et
      al. 2018, "Deep generative modeling for single-cell transcriptomics", Nature Methods 15:1053), per cell
      and normalised.
    - ``mixing_entropy_expected``: what perfectly mixed neighbourhoods would show: the expected normalised
      entropy of ``k`` neighbours whose classes are drawn at random with the column's class frequencies. With
      unequal classes it is below 1 (at most the normalised entropy of the frequencies), and k neighbours
      under-read any entropy, so it is below that too (0.95 for two equal classes and k = 15): compare
      ``mixing_entropy`` with it, not with 1.

    Raises ``ValueError`` when ``z`` is not (N, D) with N = ``len(labels)``, ``k`` < 1, there are fewer than
    k + 1 cells (or ``max_cells`` is below k + 1), or fewer than 2 classes among them.
    """
    z, labels = torch.as_tensor(z), torch.as_tensor(labels)  # numpy arrays too
    _check(z, labels, k, max_cells)
    z, labels = z.detach().float().cpu(), labels.long().cpu()
    if len(z) > max_cells:
        chosen = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))[:max_cells]
        z, labels = z[chosen], labels[chosen]
    classes, codes = torch.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError("mixing entropy compares classes: the labels hold only one class.")
    frequencies = torch.bincount(codes).double() / len(codes)
    return {
        "knn_accuracy": knn_accuracy(z, codes, k=k, seed=seed),
        "chance": chance_level(codes),
        "mixing_entropy": float(_neighbour_entropy(z, codes, k, len(classes)).mean()),
        "mixing_entropy_expected": _expected_entropy(frequencies, k),
    }


def _check(z: torch.Tensor, labels: torch.Tensor, k: int, max_cells: int) -> None:
    if z.dim() != 2 or labels.dim() != 1 or len(z) != len(labels):
        raise ValueError(
            f"give latent codes (N, D) and one label per cell (N,); got {tuple(z.shape)} and {tuple(labels.shape)}."
        )
    if k < 1:
        raise ValueError(f"k is the number of neighbours of each cell, at least 1; got {k}.")
    if min(len(z), max_cells) < k + 1:
        raise ValueError(f"{k} neighbours per cell need at least {k + 1} cells; got {len(z)} (max_cells {max_cells}).")


def nearest_neighbours(z: torch.Tensor, k: int, rows: int | None = None) -> torch.Tensor:
    """The indices of each point's ``k`` nearest other points, (N, k), nearest first (Euclidean in ``z``, (N, D)).

    Distances are computed ``rows`` points at a time against all N (by default as many rows as hold
    :data:`DISTANCES` distances), so memory is O(rows x N), never N x N; each distance is computed on its own
    (not through a matrix product), so the result does not depend on ``rows``.
    """
    rows = rows or max(1, DISTANCES // len(z))
    parts = []
    for start in range(0, len(z), rows):
        distances = torch.cdist(z[start : start + rows], z, compute_mode="donot_use_mm_for_euclid_dist")
        own = torch.arange(len(distances))
        distances[own, own + start] = math.inf  # a point is not its own neighbour
        parts.append(distances.topk(k, largest=False).indices)
    return torch.cat(parts)


def _neighbour_entropy(z: torch.Tensor, codes: torch.Tensor, k: int, classes: int) -> torch.Tensor:
    """Each cell's entropy of its ``k`` neighbours' classes (``codes`` 0..classes-1) over log ``classes``: (N,)."""
    neighbours = codes[nearest_neighbours(z, k)]  # (N, k)
    counts = torch.zeros(len(z), classes, dtype=torch.float64).scatter_add_(
        1, neighbours, torch.ones_like(neighbours, dtype=torch.float64)
    )
    return _entropy(counts / k).sum(1) / math.log(classes)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """-p log p, elementwise, 0 where p is 0."""
    return -torch.special.xlogy(p, p)


def _expected_entropy(frequencies: torch.Tensor, k: int) -> float:
    """E[H(n / k)] / log C for class counts n of k draws with ``frequencies`` (C,): by linearity, the sum over
    classes of E[-(n_c / k) log(n_c / k)], each n_c ~ Binomial(k, p_c)."""
    counts = torch.arange(k + 1, dtype=torch.float64)
    binomial = torch.distributions.Binomial(k, probs=frequencies.unsqueeze(1))
    weights = binomial.log_prob(counts).exp()  # (C, k + 1)
    return float((weights * _entropy(counts / k)).sum() / math.log(len(frequencies)))
