"""Tests genreg/viz/latent.py: the comparison strip of samples of a model with two condition columns."""

from __future__ import annotations

import pytest

from genreg.viz.latent import strip_samples

pytestmark = pytest.mark.slow


def test_the_comparison_strip_shows_one_sample_per_class(ink_model) -> None:
    images, title = strip_samples(ink_model, 10)
    assert images.shape == (10, 1, 28, 28) and title == "samples (classes 0-9)"


def test_a_scatter_of_many_classes_is_one_colormap_without_a_legend() -> None:
    """Case 7 of issue 16: a colour and legend entry per class (1,000 of them) took gigabytes."""
    import torch

    import genreg
    from genreg.viz.figures import pyplot
    from genreg.viz.latent import latent_scatter_figure
    from tests.helpers import EMBEDDING_CVAE

    model = genreg.build_model(EMBEDDING_CVAE, genreg.DataInfo((1, 4, 4), 1000)).eval()
    split = genreg.Split(torch.rand(2000, 1, 4, 4), torch.arange(2000) % 1000)
    figure = latent_scatter_figure(model, split)
    scatter = figure.axes[0]
    assert len(scatter.collections) == 1 and scatter.get_legend() is None
    assert figure.axes[1].get_ylabel() == "class (1,000 present)"  # the colorbar
    pyplot().close(figure)
