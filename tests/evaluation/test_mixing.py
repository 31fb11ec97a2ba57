"""Tests genreg/evaluation/mixing.py: k-NN accuracy and mixing entropy of a class column in a latent space, on
synthetic latents whose answer is known (separate blobs, labels independent of the codes)."""

from __future__ import annotations

import math

import pytest
import torch

from genreg.evaluation import mixing
from genreg.evaluation.metrics import chance_level, knn_accuracy
from genreg.evaluation.mixing import nearest_neighbours, neighbourhood_scores

KEYS = {"knn_accuracy", "chance", "mixing_entropy", "mixing_entropy_expected"}


def gaussian(n: int, d: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def random_labels(n: int, frequencies: list[float], seed: int = 1) -> torch.Tensor:
    """Classes drawn independently of any code, with the given frequencies."""
    return torch.multinomial(
        torch.tensor(frequencies), n, replacement=True, generator=torch.Generator().manual_seed(seed)
    )


def test_separate_blobs_are_read_perfectly_and_never_mix() -> None:
    z = torch.cat([gaussian(300), gaussian(300, seed=1) + 50])
    labels = torch.arange(600) // 300
    scores = neighbourhood_scores(z, labels)
    assert set(scores) == KEYS and all(isinstance(value, float) for value in scores.values())
    assert scores["knn_accuracy"] == 1.0 and scores["chance"] == 0.5
    assert scores["mixing_entropy"] == 0.0  # every neighbourhood is of the cell's own blob
    assert scores["mixing_entropy_expected"] > 0.9


def test_class_values_need_not_be_0_to_k() -> None:
    """Classes 3 and 7 (a column with absent classes): the entropy is over the 2 classes present."""
    z = gaussian(400)
    labels = random_labels(400, [0.5, 0.5])
    assert neighbourhood_scores(z, labels * 4 + 3) == neighbourhood_scores(z, labels)


@pytest.mark.parametrize("classes", [2, 4, 10])
def test_labels_independent_of_the_codes_mix_as_expected(classes: int) -> None:
    """Random labels: k-NN reads no more than chance, and the neighbourhoods are as mixed as k draws of the
    class frequencies (measured within 0.01 of the expectation; the frequencies' own entropy, 1 here, is not
    reached with k = 15: 0.95 for 2 classes, 0.85 for 10)."""
    z = gaussian(3000)
    scores = neighbourhood_scores(z, random_labels(3000, [1.0] * classes))
    assert scores["knn_accuracy"] == pytest.approx(scores["chance"], abs=0.04)
    assert scores["mixing_entropy"] == pytest.approx(scores["mixing_entropy_expected"], abs=0.05)
    assert 0.8 < scores["mixing_entropy_expected"] < 1.0


def test_the_expected_entropy_of_two_equal_classes_by_hand() -> None:
    """sum over n = 0..k of C(k, n) / 2^k * H(n / k) / log 2: the binomial expectation, k = 15."""
    k = 15
    h = [0.0 if n in (0, k) else -(n / k) * math.log(n / k) - (1 - n / k) * math.log(1 - n / k) for n in range(k + 1)]
    expected = sum(math.comb(k, n) / 2**k * h[n] for n in range(k + 1)) / math.log(2)
    labels = torch.arange(1000) % 2
    assert neighbourhood_scores(gaussian(1000), labels)["mixing_entropy_expected"] == pytest.approx(expected)


def test_unequal_classes_mix_to_less_than_1_and_random_labels_reach_it() -> None:
    frequencies = [0.1, 0.9]
    z = gaussian(4000)
    scores = neighbourhood_scores(z, random_labels(4000, frequencies))
    of_frequencies = -sum(p * math.log(p) for p in frequencies) / math.log(2)  # 0.47
    assert scores["mixing_entropy_expected"] < of_frequencies < 1
    assert scores["mixing_entropy"] == pytest.approx(scores["mixing_entropy_expected"], abs=0.05)
    assert scores["chance"] == pytest.approx(0.9, abs=0.02) and scores["knn_accuracy"] <= scores["chance"] + 0.02


def test_the_knn_accuracy_is_metrics_own() -> None:
    z, labels = gaussian(500), random_labels(500, [0.2, 0.3, 0.5])
    scores = neighbourhood_scores(z, labels, k=7, seed=3)
    assert scores["knn_accuracy"] == knn_accuracy(z, labels, k=7, seed=3)
    assert scores["chance"] == chance_level(labels)


def test_neighbours_are_the_nearest_other_points() -> None:
    z = gaussian(200, d=3)
    distances = torch.cdist(z.double(), z.double()).fill_diagonal_(math.inf)
    expected = distances.argsort(1)[:, :6]
    assert torch.equal(nearest_neighbours(z, 6), expected)
    duplicated = torch.cat([z, z])  # each point's twin is at distance 0, and the point itself is not its neighbour
    assert torch.equal(nearest_neighbours(duplicated, 1).flatten(), torch.arange(400).roll(200))


def test_chunks_give_the_same_neighbours_and_scores_as_one_chunk(monkeypatch) -> None:
    z, labels = gaussian(500), random_labels(500, [0.5, 0.3, 0.2])
    whole = nearest_neighbours(z, 15, rows=500)
    for rows in (1, 7, 64, 499):
        assert torch.equal(nearest_neighbours(z, 15, rows=rows), whole)
    scores = neighbourhood_scores(z, labels)
    monkeypatch.setattr(mixing, "DISTANCES", 500 * 3)  # 3 rows at a time
    assert neighbourhood_scores(z, labels) == scores


def test_more_cells_than_max_cells_are_subsampled_with_the_seed() -> None:
    z, labels = gaussian(600), random_labels(600, [0.5, 0.5])
    chosen = torch.randperm(600, generator=torch.Generator().manual_seed(4))[:200]
    scores = neighbourhood_scores(z, labels, seed=4, max_cells=200)
    assert scores == neighbourhood_scores(z[chosen], labels[chosen], seed=4)
    assert scores != neighbourhood_scores(z, labels, seed=5, max_cells=200)


@pytest.mark.parametrize(
    ("z", "labels", "k", "max_cells", "message"),
    [
        (gaussian(20), torch.zeros(19, dtype=torch.long), 5, 100, r"got \(20, 5\) and \(19,\)"),
        (torch.zeros(20), torch.arange(20) % 2, 5, 100, r"latent codes \(N, D\)"),
        (gaussian(20), torch.arange(20) % 2, 0, 100, "at least 1; got 0"),
        (gaussian(15), torch.arange(15) % 2, 15, 100, "need at least 16 cells; got 15"),
        (gaussian(20), torch.arange(20) % 2, 15, 10, r"need at least 16 cells; got 20 \(max_cells 10\)"),
        (gaussian(20), torch.ones(20, dtype=torch.long), 5, 100, "only one class"),
    ],
)
def test_bad_input_is_refused(z: torch.Tensor, labels: torch.Tensor, k: int, max_cells: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        neighbourhood_scores(z, labels, k=k, max_cells=max_cells)


def test_numpy_codes_and_labels_score_as_tensors_do() -> None:
    generator = torch.Generator().manual_seed(3)
    z, labels = torch.randn(60, 2, generator=generator), torch.arange(60) % 3
    assert neighbourhood_scores(z.numpy(), labels.numpy(), k=5) == neighbourhood_scores(z, labels, k=5)
