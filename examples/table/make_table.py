"""Write table.npz and table.csv: a synthetic table of 3,000 rows x 30 real-valued features in 3 groups.

    python examples/table/make_table.py [--out table.npz]

Each row is a point of a 2-D latent space drawn around its group's centre, mapped through a fixed random
two-layer network to 30 features, plus Gaussian noise of standard deviation 0.3: a stand-in for a table of
measurements (the truth is known, so a model's latent can be checked against it). The arrays: ``x``
(3000, 30) float32, ``labels`` (3000,) the group 0..2, and ``true_z`` (3000, 2) the latent point.

The CSV (beside the .npz, same name) holds the same rows as a lab's table would: a ``group`` column of names
("control", "dose-low", "dose-high") and the 30 features ``m00`` .. ``m29`` in units of their own (feature f
scaled by 1 to 50 and shifted by 0 to 500), so that a model of it needs the dataset's ``transform``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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


GROUP_NAMES = ("control", "dose-low", "dose-high")


def as_csv(table: dict[str, np.ndarray], seed: int = 1) -> str:
    """The table's rows as CSV text: ``group`` by name, then the features in units of their own (see above)."""
    rng = np.random.default_rng(seed)
    scale, shift = rng.uniform(1, 50, FEATURES), rng.uniform(0, 500, FEATURES)
    measured = table["x"].astype(np.float64) * scale + shift
    header = ",".join(["group", *(f"m{f:02d}" for f in range(FEATURES))])
    rows = [
        ",".join([GROUP_NAMES[g], *(f"{v:.3f}" for v in row)]) for g, row in zip(table["labels"], measured, strict=True)
    ]
    return "\n".join([header, *rows]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="table.npz")
    args = parser.parse_args()
    table = make_table()
    np.savez(args.out, **table)
    csv = Path(args.out).with_suffix(".csv")
    csv.write_text(as_csv(table))
    print(f"wrote {args.out} and {csv}: {ROWS} rows x {FEATURES} features, {GROUPS} groups")


if __name__ == "__main__":
    main()
