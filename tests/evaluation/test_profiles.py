"""Tests genreg/evaluation/profiles.py: a cVAE's samples of each class compared with that class's mean profile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genreg
from genreg.data import DatasetConfig, as_split, finish
from genreg.evaluation.profiles import _correlations, profile_agreement

CVAE = {
    "type": "cvae",
    "latent_dim": 2,
    "encoder": {"type": "mlp", "hidden": [32]},
    "decoder": {"type": "mlp", "hidden": [32]},
    "losses": [{"type": "gaussian"}, {"type": "kld"}],
}


def groups(rows: int = 300) -> genreg.DataSplits:
    """Three groups of 8 features in the hundreds, each raising its own pair of features; string labels."""
    rng = np.random.default_rng(0)
    kinds = np.arange(rows) % 3
    x = 100 + 5 * rng.normal(size=(rows, 8))
    x[np.arange(rows), 2 * kinds] += 40
    x[np.arange(rows), 2 * kinds + 1] += 40
    split = as_split(x.astype(np.float32), np.array(["a", "b", "c"])[kinds], "groups")
    return finish(split.take(slice(0, 240)), split.take(slice(240, None)), DatasetConfig(transform="standardize"), "g")


def test_correlations_are_pearsons_r_of_every_pair_of_rows() -> None:
    a, b = torch.randn(3, 10), torch.randn(3, 10)
    expected = np.corrcoef(a.numpy(), b.numpy())[:3, 3:]
    assert np.allclose(_correlations(a, b).numpy(), expected, atol=1e-12)


@pytest.mark.slow
def test_a_trained_cvae_draws_each_class_with_its_own_profile() -> None:
    data = groups()
    model = genreg.build_model(CVAE, data.info)
    untrained = profile_agreement(model, [data.train, data.test], n_per_class=200)
    config = genreg.TrainConfig(epochs=40, batch_size=32, device="cpu")
    genreg.train(model, data, config, seed=0, progress=False)
    trained = profile_agreement(model, [data.train, data.test], n_per_class=200)
    assert trained["profile_classes"] == ["a", "b", "c"] and trained["profile_matched"] == 1.0
    assert trained["profile_r"] > 0.9 > untrained["profile_r"]  # measured 0.99 against 0.05
    assert len(trained["profile_r_per_class"]) == 3


def test_only_a_model_of_vectors_conditioned_on_the_label_is_compared() -> None:
    data = groups()
    vae = genreg.build_model({**CVAE, "type": "vae"}, data.info)
    with pytest.raises(ValueError, match="a model of vectors conditioned on it"):
        profile_agreement(vae, [data.test])
