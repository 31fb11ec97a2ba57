"""Vector data and small models of it, for the picture tests of tests/viz and tests/cli/test_pictures.py.

The data are rows of a table: F features of real values around ``centre`` (not [0, 1]), a class label,
each class with its own mean profile.
"""

from __future__ import annotations

import numpy as np

import genreg
from genreg.data import as_split, finish
from genreg_builtin.datasets import NpzConfig

FEATURES, CLASSES = 12, 3
MLP = {"encoder": {"type": "mlp", "hidden": [32]}, "decoder": {"type": "mlp", "hidden": [32]}}
LOSSES = [{"type": "gaussian"}, {"type": "kld"}]
SPECS = {
    "cvae": {"type": "cvae", "latent_dim": 2, **MLP, "conditioner": {"type": "onehot"}, "losses": LOSSES},
    "vae": {"type": "vae", "latent_dim": 2, **MLP, "losses": LOSSES},
}


def table(rows: int = 300, features: int = FEATURES, centre: float = 100.0, seed: int = 0):
    """(x (rows, features) float32 around ``centre``, labels (rows,) in 0..CLASSES-1)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, rows)
    profiles = 5 * rng.normal(size=(CLASSES, features))
    return (centre + profiles[labels] + rng.normal(size=(rows, features))).astype(np.float32), labels


def vector_data(rows: int = 300, features: int = FEATURES, centre: float = 100.0) -> genreg.DataSplits:
    """:func:`table` as data splits: the first 80% to train on, the rest to test."""
    x, labels = table(rows, features, centre)
    cut = rows * 4 // 5
    train, test = as_split(x[:cut], labels[:cut], "test"), as_split(x[cut:], labels[cut:], "test")
    return finish(train, test, NpzConfig(path="unused.npz"), "test")


def vector_model(kind: str, data: genreg.DataSplits, epochs: int = 2) -> genreg.GenerativeModel:
    """A ``kind`` ("cvae" or "vae") of 2-D latent trained ``epochs`` epochs on ``data``, in eval mode."""
    model = genreg.build_model(SPECS[kind], data.info)
    genreg.train(model, data, genreg.TrainConfig(epochs=epochs, batch_size=64, device="cpu"), seed=0, progress=False)
    return model.eval()
