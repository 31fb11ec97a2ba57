"""Tests genreg/viz/samples.py: which conditions a sample grid asks for when a model reads a continuous
column and not the class label, which classes get a row when there are many, what a continuous column
without a recorded range spans, and the warning for a class without training images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import genreg
from genreg.errors import PictureWarning, UsageError
from genreg.model.conditions import Conditions
from genreg.viz.explore import manifold_figure
from genreg.viz.figures import save_figure
from genreg.viz.latent import strip_samples
from genreg.viz.samples import (
    grid_conditions,
    reconstruction_images,
    reconstructions_figure,
    sample_images,
    samples_figure,
    value_label,
)
from tests.helpers import EMBEDDING_CVAE
from tests.viz.vectors import SPECS, counts


def test_without_the_label_the_ink_spans_one_row(ink_only, tmp_path) -> None:
    images, rows, columns = sample_images(ink_only, 3)[:3]
    assert images.shape == (3, 1, 8, 8) and rows is None and columns == ["ink=0", "ink=0.5", "ink=1"]
    assert strip_samples(ink_only, 3)[1] == "samples (ink=0 to ink=1)"
    assert save_figure(manifold_figure(ink_only, n=3), tmp_path / "m.png").exists()  # no class to ask for


# --------------------------------------------------------------------------- issue 16, cases 7, 8 and 13


def many_classes(count: int, absent: dict | None = None) -> genreg.GenerativeModel:
    return genreg.build_model(EMBEDDING_CVAE, genreg.DataInfo((1, 4, 4), count, absent=absent or {})).eval()


def test_a_grid_of_many_classes_shows_ten_spread_evenly_and_says_so(tmp_path) -> None:
    """Case 7 of issue 16: a row per class drew a 577x59,720-pixel picture at 1,000 classes and was killed for
    memory at 100,000."""
    grid = sample_images(many_classes(100_000), 2)
    assert grid.images.shape == (20, 1, 4, 4)
    assert grid.row_labels == [f"class {k}" for k in (0, 11111, 22222, 33333, 44444, 55555, 66666, 77777, 88888, 99999)]
    assert (
        grid.title.startswith("classes 0, 11111, 22222,")
        and "10 of 100,000 (choose with --classes or --rows)" in grid.title
    )
    assert grid.conditions["label"][:4].tolist() == [0, 0, 11111, 11111]
    assert save_figure(samples_figure(many_classes(1000), 2), tmp_path / "s.png").exists()


def test_the_rows_of_a_grid_can_be_chosen_or_counted() -> None:
    model = many_classes(50)
    assert sample_images(model, 1, classes=[3, 7]).row_labels == ["class 3", "class 7"]
    assert sample_images(model, 1, rows=3).row_labels == ["class 0", "class 24", "class 49"]
    assert sample_images(model, 1, rows=60).title is None  # every class: nothing to say
    with pytest.raises(UsageError, match=r"--classes: give classes of this model, in 0..49; got \[3, 50\]"):
        sample_images(model, 1, classes=[3, 50])


def test_asking_for_a_class_without_training_images_warns() -> None:
    """Case 8 of issue 16: `genreg sample --label 5` on a class with no data answered without a word."""
    model = many_classes(10, absent={"label": [5]})
    with pytest.warns(PictureWarning, match=r"class\(es\) 5 of column 'label' had no training images"):
        sample_images(model, 1, fixed={"label": 5})
    with pytest.warns(PictureWarning, match="class"):
        sample_images(model, 1, classes=[4, 5])


class Dose(nn.Module):
    """A plugin's continuous conditioner that records its mean and std but no range for pictures."""

    continuous, dim = True, 1

    def __init__(self) -> None:
        super().__init__()
        self.mean, self.std = torch.tensor(3.0), torch.tensor(0.5)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return values.float().unsqueeze(1)


def test_a_continuous_part_without_a_range_spans_its_mean_and_std_with_a_warning() -> None:
    """Case 13 of issue 16: without `low`/`high` the picture silently held the column instead of spanning it."""
    with pytest.warns(PictureWarning, match=r"'dose' \(Dose\) has no `low` and `high`.*mean -/\+ 2 std, \[2, 4\]"):
        grid = grid_conditions(Conditions([Dose()], ["dose"]), 3, {})
    assert grid.varying == {"dose": [2.0, 3.0, 4.0]}


# --------------------------------------------------------------------------- data in other units, named classes


def test_a_reconstruction_picture_of_a_transformed_model_shows_the_datas_units(named, named_cvae, tmp_path) -> None:
    x, _ = counts()
    originals, decoded = reconstruction_images(named_cvae, named.test, 4)
    index = torch.linspace(0, len(named.test) - 1, 4).round().long()
    truth = torch.from_numpy(x[240:])[index]  # the test split, in the data's units: counts of tens to hundreds
    assert torch.allclose(originals, truth, rtol=1e-4, atol=1e-2)
    assert originals.min() >= 0 and originals.mean() > 50 and decoded.min() > -1 and decoded.mean() > 5
    expected = named_cvae.reconstruct(named.test.images[index], named.test.take(index).condition(), units="model")
    assert torch.allclose(decoded, named_cvae.out_of_model(expected))
    figure = reconstructions_figure(named_cvae, named.test, 4)
    drawn = torch.as_tensor(figure.axes[0].images[0].get_array().data)
    assert torch.allclose(drawn, torch.cat([originals, decoded]))  # the colorbar is in the data's units
    assert "data's units" in figure.axes[1].get_ylabel()
    assert save_figure(figure, tmp_path / "r.png").exists()


def test_rows_titles_and_warnings_name_the_classes_as_the_data_does(named, named_cvae) -> None:
    grid = sample_images(named_cvae, 2)
    assert grid.row_labels == ["B", "CD14+ Monocyte", "T"] and grid.title is None
    assert grid.images.shape == (6, 12) and grid.images.mean() > 5  # in the data's units, not the model's (~0)
    one = sample_images(named_cvae, 2, fixed={"label": 1})
    assert one.row_labels == ["CD14+ Monocyte"] and one.title == "samples of CD14+ Monocyte (label)"
    assert sample_images(named_cvae, 1, rows=2).title == "classes B, T: 2 of 3 (choose with --classes or --rows)"
    assert value_label("label", 2, named.info) == "T" and value_label("label", 2) == "class 2"
    assert value_label("ink", 0.25, named.info) == "ink=0.25"
    ids = genreg.DataInfo((4,), 2, vocabularies={"label": [3000, 7000], "dose": ["low", "high"]}, columns={"dose": 2})
    assert [value_label("label", 1, ids), value_label("dose", 0, ids)] == ["class 7000", "dose=low"]
    assert many_classes(3).data_info.labelled and sample_images(many_classes(3), 1).title is None
    absent = genreg.DataInfo((12,), 3, absent={"label": [2]}, vocabularies=named.info.vocabularies)
    model = genreg.build_model(SPECS["cvae"], absent).eval()
    with pytest.warns(PictureWarning, match=r"class\(es\) 'T' of column 'label' had no training vectors"):
        assert sample_images(model, 1, fixed={"label": 2}).title == "samples of T (label)"
