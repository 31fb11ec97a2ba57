"""Vector data and small models of it, for the picture tests of tests/viz and tests/cli/test_pictures.py.

The data are rows of a table: F features of real values around ``centre`` (not [0, 1]), a class label,
each class with its own mean profile. :func:`named_data` is counts instead (positive, skewed, tens to hundreds),
their classes named by strings (:data:`NAMES`) and their features by :data:`GENES`, fitted with the transform
``log1p, standardize``: the models' units are not the data's.
"""

from __future__ import annotations

import numpy as np

import genreg
from genreg.data import DatasetConfig, as_split, finish
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


#: The classes of :func:`counts`, as the data names them: sorted, so class k is NAMES[k].
NAMES = ["B", "CD14+ Monocyte", "T"]
GENES = [f"gene{i}" for i in range(FEATURES)]
TRANSFORM = ["log1p", "standardize"]


def counts(rows: int = 300, features: int = FEATURES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x (rows, features) float32 Poisson counts around 10..500, labels (rows,) strings of :data:`NAMES`)."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, CLASSES, rows)
    profiles = rng.gamma(2.0, 100.0, size=(CLASSES, features)) + 10
    return rng.poisson(profiles[classes]).astype(np.float32), np.array(NAMES)[classes]


def named_data(rows: int = 300, labelled: bool = True, transform: list[str] | None = None) -> genreg.DataSplits:
    """:func:`counts` as data splits (the first 80% to train on), fitted with ``transform`` (:data:`TRANSFORM` by
    default), their features named :data:`GENES`; without labels if not ``labelled``."""
    x, names = counts(rows)
    cut = rows * 4 // 5
    train = as_split(x[:cut], names[:cut] if labelled else None, "test")
    test = as_split(x[cut:], names[cut:] if labelled else None, "test")
    config = DatasetConfig(transform=TRANSFORM if transform is None else transform)
    return finish(train, test, config, "test", features=GENES)


def vector_model(kind: str, data: genreg.DataSplits, epochs: int = 2) -> genreg.GenerativeModel:
    """A ``kind`` ("cvae" or "vae") of 2-D latent trained ``epochs`` epochs on ``data``, in eval mode."""
    model = genreg.build_model(SPECS[kind], data.info)
    genreg.train(model, data, genreg.TrainConfig(epochs=epochs, batch_size=64, device="cpu"), seed=0, progress=False)
    return model.eval()
