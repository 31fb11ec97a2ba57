"""Tests genreg/viz/samples.py: which conditions a sample grid asks for when a model reads a continuous
column and not the class label."""

from __future__ import annotations

from genreg.viz.explore import manifold_figure
from genreg.viz.figures import save_figure
from genreg.viz.latent import strip_samples
from genreg.viz.samples import sample_images


def test_without_the_label_the_ink_spans_one_row(ink_only, tmp_path) -> None:
    images, rows, columns = sample_images(ink_only, 3)
    assert images.shape == (3, 1, 8, 8) and rows is None and columns == ["ink=0", "ink=0.5", "ink=1"]
    assert strip_samples(ink_only, 3)[1] == "samples (ink=0 to ink=1)"
    assert save_figure(manifold_figure(ink_only, n=3), tmp_path / "m.png").exists()  # no class to ask for
