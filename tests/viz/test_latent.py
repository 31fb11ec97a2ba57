"""Tests genreg/viz/latent.py: the comparison strip of samples of a model with two condition columns."""

from __future__ import annotations

import pytest

from genreg.viz.latent import strip_samples

pytestmark = pytest.mark.slow


def test_the_comparison_strip_shows_one_sample_per_class(ink_model) -> None:
    images, title = strip_samples(ink_model, 10)
    assert images.shape == (10, 1, 28, 28) and title == "samples (classes 0-9)"
