"""Tests genreg/data/splits.py: a fixed binarisation of a split."""

from __future__ import annotations

import torch

import genreg


def test_fixed_binarization_only_touches_dynamic_data() -> None:
    grey = genreg.Split(torch.full((3, 1, 2, 2), 0.5), torch.zeros(3, dtype=torch.long))
    assert genreg.data.fixed_binarization(grey, "none") is grey
    once, again = genreg.data.fixed_binarization(grey, "dynamic"), genreg.data.fixed_binarization(grey, "dynamic")
    assert set(once.images.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(once.images, again.images)  # one fixed draw per seed
