"""Write table.npz: a synthetic table of 3,000 rows x 30 real-valued features in 3 groups (issue 18's example).

    python examples/table/make_table.py [--out table.npz]

Each row is a point of a 2-D latent space drawn around its group's centre, mapped through a fixed random
two-layer network to 30 features, plus Gaussian noise of standard deviation 0.3: a stand-in for a table of
measurements (the truth is known, so a model's latent can be checked against it). The arrays: ``x``
(3000, 30) float32, ``labels`` (3000,) the group 0..2, and ``true_z`` (3000, 2) the latent point.
"""

from __future__ import annotations

import argparse

import numpy as np

ROWS, FEATURES, GROUPS, NOISE = 3000, 30, 3, 0.3


def make_table(seed: int = 0) -> dict[str, np.ndarray]:
    """The table's arrays (see the module docstring), the same for the same seed."""
    rng = np.random.default_rng(seed)
    labels = np.arange(ROWS) % GROUPS
    centres = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    true_z = centres[labels] + rng.normal(size=(ROWS, 2))
    hidden = np.tanh(true_z @ rng.normal(size=(2, 16)))
    x = hidden @ rng.normal(size=(16, FEATURES)) + NOISE * rng.normal(size=(ROWS, FEATURES))
    return {"x": x.astype(np.float32), "labels": labels, "true_z": true_z.astype(np.float32)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="table.npz")
    args = parser.parse_args()
    np.savez(args.out, **make_table())
    print(f"wrote {args.out}: {ROWS} rows x {FEATURES} features, {GROUPS} groups")


if __name__ == "__main__":
    main()
