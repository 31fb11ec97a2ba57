"""Tests genreg/viz/heatmaps.py and every picture of a model of vectors (a table's rows): samples,
reconstructions, the manifold, interpolations, transfer, the latent scatter and the comparison strip.

A picture of vectors is a heatmap (a row per sample, a column per feature) in labelled blocks, above
each block's mean profile; the tests read what it shows from the figure's own artists.
"""

from __future__ import annotations

import pytest
import torch

import genreg
from genreg import limits
from genreg.cli.arguments import transfer_targets
from genreg.errors import UsageError
from genreg.viz.arrays import interpolation_arrays, manifold_arrays, samples_arrays, transfer_arrays
from genreg.viz.explore import interpolation_figure, manifold_figure, transfer_figure
from genreg.viz.figures import check_grid, pyplot
from genreg.viz.heatmaps import MAX_TICKS, SHOWN_FEATURES, color_scale, heatmap_figure, telling_features
from genreg.viz.latent import comparison_figure, latent_scatter_figure, project_2d, strip_samples
from genreg.viz.samples import reconstructions_figure, sample_images, samples_figure
from tests.viz.vectors import CLASSES, FEATURES, GENES, NAMES, SPECS, counts, named_data, vector_data, vector_model


@pytest.fixture(scope="module")
def data() -> genreg.DataSplits:
    return vector_data()


@pytest.fixture(scope="module")
def cvae(data: genreg.DataSplits) -> genreg.GenerativeModel:
    return vector_model("cvae", data)


@pytest.fixture(scope="module")
def vae(data: genreg.DataSplits) -> genreg.GenerativeModel:
    return vector_model("vae", data)


@pytest.fixture
def figures():
    """Figures to close after the test."""
    made: list = []
    yield made
    for figure in made:
        pyplot().close(figure)


def heatmap(figure) -> torch.Tensor:
    """The array the figure's heatmap draws (rows, features)."""
    return torch.as_tensor(figure.axes[0].images[0].get_array().data)


def profile_axis(figure):
    (axis,) = [ax for ax in figure.axes if ax.get_ylabel() == "mean value"]
    return axis


def tick_labels(axis) -> list[str]:
    return [label.get_text() for label in axis.get_yticklabels()]


def test_vector_samples_of_a_cvae_are_a_heatmap_in_class_blocks_above_a_profile_per_class(cvae, figures) -> None:
    torch.manual_seed(0)
    grid = sample_images(cvae, 4)
    torch.manual_seed(0)
    figures.append(figure := samples_figure(cvae, 4))
    drawn = heatmap(figure)
    assert drawn.shape == (CLASSES * 4, FEATURES) and torch.allclose(drawn, grid.images)
    assert grid.conditions["label"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]  # rows grouped by class
    assert tick_labels(figure.axes[0]) == ["class 0", "class 1", "class 2"]
    assert figure.axes[0].get_yticks().tolist() == [1.5, 5.5, 9.5]  # each label at its block's middle
    assert figure.axes[0].get_ylabel() == "4 samples each"
    lines = profile_axis(figure).get_lines()
    assert [line.get_label() for line in lines] == ["class 0", "class 1", "class 2"]
    for k, line in enumerate(lines):
        assert torch.allclose(torch.as_tensor(line.get_ydata()), grid.images[4 * k : 4 * k + 4].mean(0))
    assert figure.axes[1].get_ylabel() == "value (the data's units)"  # the colorbar
    assert profile_axis(figure).get_xticks().tolist() == list(range(FEATURES))


def test_vector_samples_of_a_vae_are_one_numbered_block_and_one_profile(vae, figures) -> None:
    figures.append(figure := samples_figure(vae, 3))
    assert heatmap(figure).shape == (9, FEATURES) and figure.axes[0].get_ylabel() == "sample"
    assert [line.get_label() for line in profile_axis(figure).get_lines()] == ["mean of 9 samples"]


def test_vector_reconstructions_are_two_blocks_of_the_same_samples(cvae, data, figures) -> None:
    figures.append(figure := reconstructions_figure(cvae, data.test, n=5))
    drawn = heatmap(figure)
    index = torch.linspace(0, len(data.test) - 1, 5).round().long()
    assert drawn.shape == (10, FEATURES) and torch.equal(drawn[:5], data.test.images[index])
    assert tick_labels(figure.axes[0]) == ["input", "reconstruction"]
    assert len(profile_axis(figure).get_lines()) == 2


def test_the_manifold_of_vectors_is_a_block_per_z2_in_grid_order(cvae, figures) -> None:
    numbers = manifold_arrays(cvae, 3, {"label": 1})
    figures.append(figure := manifold_figure(cvae, 3, {"label": 1}))
    assert torch.allclose(heatmap(figure), numbers["x"]) and numbers["x"].shape == (9, FEATURES)
    assert tick_labels(figure.axes[0]) == ["z2=+1.64", "z2=+0.00", "z2=-1.64"]
    assert figure.axes[0].get_ylabel() == "z1 from -1.64 to 1.64 in each block"
    assert len(figure.axes) == 2  # the heatmap and its colorbar: no profile of a grid


def test_an_interpolation_of_vectors_runs_from_sample_a_to_sample_b(cvae, data, figures) -> None:
    figures.append(figure := interpolation_figure(cvae, data.test, 0, 5, steps=4))
    drawn = heatmap(figure)
    assert drawn.shape == (6, FEATURES)
    assert torch.equal(drawn[0], data.test.images[0]) and torch.equal(drawn[-1], data.test.images[5])
    assert tick_labels(figure.axes[0]) == ["vector 0", "4 steps", "vector 5"]
    assert torch.allclose(interpolation_arrays(cvae, data.test, 0, 5, 4)["x"], drawn)
    with pytest.raises(UsageError, match=r"^vector index b=60 is out of range: the split has 60 vectors \(0..59\)\.$"):
        interpolation_figure(cvae, data.test, 0, 60)


def test_transfer_of_vectors_is_a_block_per_target_after_the_samples(cvae, data, figures) -> None:
    targets, headers = {"label": torch.tensor([2, 0])}, ["class 2", "class 0"]
    figures.append(figure := transfer_figure(cvae, data.test, targets, headers, n=3))
    drawn = heatmap(figure)
    numbers = transfer_arrays(cvae, data.test, targets, headers, n=3)
    assert drawn.shape == (9, FEATURES) and torch.equal(drawn[:3], numbers["originals"])
    assert torch.allclose(drawn[3:6], numbers["x"][0::2]) and torch.allclose(drawn[6:], numbers["x"][1::2])
    assert tick_labels(figure.axes[0]) == ["as given", "as class 2", "as class 0"]
    assert numbers["label"].tolist() == [2, 0, 2, 0, 2, 0]


def test_the_numbers_of_vectors_are_x_in_the_datas_units_with_their_conditions(cvae, vae) -> None:
    torch.manual_seed(3)
    numbers = samples_arrays(cvae, 2)
    assert sorted(numbers) == ["label", "x"] and numbers["x"].shape == (6, FEATURES)
    torch.manual_seed(3)
    assert torch.allclose(numbers["x"], cvae.sample(labels=numbers["label"]))
    assert sorted(samples_arrays(vae, 2)) == ["x"] and samples_arrays(vae, 2)["x"].shape == (4, FEATURES)


def test_the_latent_scatter_and_the_comparison_of_models_of_vectors(cvae, vae, data, figures) -> None:
    figures.append(scatter := latent_scatter_figure(cvae, data.test))
    assert sum(len(dots.get_offsets()) for dots in scatter.axes[0].collections) == len(data.test)
    assert scatter.axes[0].get_legend().get_title().get_text() == "class"
    figures.append(compared := comparison_figure({"cvae": (cvae, data.test), "vae": (vae, data.test)}, n_samples=4))
    strips = [ax for ax in compared.axes if ax.images]
    assert [tuple(ax.images[0].get_array().shape) for ax in strips] == [(CLASSES, FEATURES), (4, FEATURES)]
    assert strip_samples(cvae, 4)[1] == "samples (classes 0-2)"


def test_the_colours_are_the_datas_own_diverging_around_zero_only_for_data_on_both_sides() -> None:
    standardised = torch.linspace(-3, 2.5, 1001)
    assert color_scale(standardised)[:3] == ("RdBu_r", pytest.approx(-2.945), pytest.approx(2.945))
    raw = torch.linspace(95, 130, 1001)
    scale = color_scale(raw)
    assert scale.cmap == "viridis" and scale.vmin == pytest.approx(95.35) and scale.vmax == pytest.approx(129.65)
    assert scale.extend == "both"
    assert color_scale(torch.linspace(-2, 130, 1001)).cmap == "viridis"  # a little noise below 0
    assert color_scale(torch.full((4, 3), 7.0))[1:3] == (6.5, 7.5)  # constant values: a range around them


def test_many_features_and_many_blocks_get_few_ticks(figures) -> None:
    vectors = torch.randn(200, 50)
    figures.append(figure := heatmap_figure(vectors, [(f"class {k}", 2) for k in range(100)]))
    figure.canvas.draw()
    assert heatmap(figure).shape == (200, 50)
    assert len(tick_labels(figure.axes[0])) <= MAX_TICKS and tick_labels(figure.axes[0])[:2] == ["class 0", "class 3"]
    features = [tick for tick in profile_axis(figure).get_xticks() if 0 <= tick < 50]
    assert 5 <= len(features) <= 12 and all(float(tick).is_integer() for tick in features)
    assert len(profile_axis(figure).get_lines()) == 100 and figure.axes[3].get_legend() is None


def test_of_many_features_those_that_tell_the_blocks_apart_are_drawn(figures) -> None:
    """765 genes drawn whole hide the cell types; a marker-gene heatmap shows the genes whose means differ."""
    torch.manual_seed(0)
    vectors = torch.randn(30, 765)
    vectors[:10, 3] += 8  # a marker of the first block
    vectors[20:, 700] -= 8  # and of the third
    names = [f"gene{k}" for k in range(765)]
    figures.append(figure := heatmap_figure(vectors, [("a", 10), ("b", 10), ("c", 10)], title="t", features=names))
    drawn = heatmap(figure)
    assert drawn.shape == (30, SHOWN_FEATURES) and "gene3" in feature_labels(figure)
    assert "gene700" in feature_labels(figure) and feature_labels(figure).index("gene3") == 0  # kept in order
    assert figure.axes[0].get_title() == "t\nthe 40 of 765 features whose block means vary most"
    assert torch.equal(drawn[:, 0], vectors[:, 3])
    assert telling_features(vectors, None).tolist() == sorted(telling_features(vectors, None).tolist())


def test_a_heatmap_that_needs_more_memory_than_there_is_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "available_memory", lambda: (10**9, "left under this process's limit"))
    with pytest.raises(UsageError, match=r"^a picture of 1,000,000 vectors of 20,000 features needs about"):
        check_grid(1000, 1000, (20_000,))
    check_grid(10, 8, (20_000,))  # a usual picture of the same vectors fits


# --------------------------------------------------------------------------- named features and classes, other units


def feature_labels(figure) -> list[str]:
    axis = figure.axes[-2] if len(figure.axes) > 2 else figure.axes[0]  # the profile's, else the heatmap's
    return [label.get_text() for label in axis.get_xticklabels()]


def test_named_features_label_the_feature_axis(named_cvae, figures) -> None:
    torch.manual_seed(0)
    figures.append(figure := samples_figure(named_cvae, 2))
    assert feature_labels(figure) == GENES and profile_axis(figure).get_xlabel() == "feature"
    assert tick_labels(figure.axes[0]) == NAMES  # a block per class, named as the data names it
    assert [text.get_text() for text in figure.axes[3].get_legend().get_texts()] == NAMES
    many = [f"a rather long gene name {i}" for i in range(60)]
    figures.append(wide := heatmap_figure(torch.randn(4, 60), features=many))
    shown = [label.get_text() for label in profile_axis(wide).get_xticklabels()]
    assert len(shown) == 20 and shown[0] == "a rather long gen…" and shown[1] == "a rather long gen…"
    assert [tick for tick in profile_axis(wide).get_xticks()][:2] == [0, 3]
    assert profile_axis(wide).get_xlabel() == "feature, every 3rd of 60 named"
    figures.append(plain := heatmap_figure(torch.randn(4, 12)))
    assert profile_axis(plain).get_xlabel() == "feature (0..11)"


def test_every_picture_of_a_transformed_model_shows_the_samples_in_the_datas_units(named, named_cvae, figures) -> None:
    x, _ = counts()
    test = torch.from_numpy(x[240:])  # the test split in the data's units
    figures.append(figure := interpolation_figure(named_cvae, named.test, 0, 5, steps=3))
    drawn = heatmap(figure)
    assert torch.allclose(drawn[0], test[0], rtol=1e-4, atol=1e-2) and torch.allclose(drawn[-1], test[5], rtol=1e-4)
    assert drawn[1:-1].mean() > 5 and tick_labels(figure.axes[0]) == ["vector 0", "3 steps", "vector 5"]
    assert figure.axes[0].get_ylabel() == f"decoded as {NAMES[int(named.test.labels[0])]}"
    targets, headers = transfer_targets(named_cvae, "label=T,B")
    assert headers == ["T", "B"] and targets["label"].tolist() == [2, 0]
    numbers = transfer_arrays(named_cvae, named.test, targets, headers, n=3)
    index = numbers["original_index"]
    assert torch.allclose(numbers["originals"], test[index], rtol=1e-4, atol=1e-2) and numbers["x"].mean() > 5
    assert numbers["label_names"].tolist() == NAMES
    z = named_cvae.encode(named.test.images[index], named.test.take(index).condition(), units="model")
    under = {"label": torch.tensor([2, 0]).repeat(3)}
    assert torch.allclose(numbers["x"], named_cvae.decode(z.repeat_interleave(2, 0), under), rtol=1e-4, atol=1e-3)
    figures.append(transfer := transfer_figure(named_cvae, named.test, targets, headers, n=3))
    assert tick_labels(transfer.axes[0]) == ["as given", "as T", "as B"] and feature_labels(transfer) == GENES
    figures.append(grid := manifold_figure(named_cvae, n=2, fixed={"label": 1}))
    assert grid.axes[0].get_title() == "latent grid decoded as CD14+ Monocyte: 2 x 2 codes"
    assert heatmap(grid).mean() > 5


def test_the_latent_scatter_names_the_classes_and_unlabelled_data_has_none(named, named_cvae, figures) -> None:
    figures.append(scatter := latent_scatter_figure(named_cvae, named.test))
    legend = scatter.axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == NAMES
    unlabelled = named_data(labelled=False)
    vae = genreg.build_model(SPECS["vae"], unlabelled.info).eval()
    figures.append(plain := latent_scatter_figure(vae, unlabelled.test, title="vae: test-set latent means by class"))
    assert plain.axes[0].get_legend() is None and len(plain.axes) == 1  # no legend, no colorbar
    assert plain.axes[0].get_title() == "vae: test-set latent means (the data has no labels)"
    figures.append(compared := comparison_figure({"cvae": (named_cvae, named.test), "vae": (vae, unlabelled.test)}))
    assert [text.get_text() for text in compared.legends[0].get_texts()] == NAMES
    assert strip_samples(named_cvae, 3)[1] == "samples (classes B, CD14+ Monocyte, T)"
    grid = sample_images(vae, 2)
    assert grid.row_labels is None and "label_names" not in samples_arrays(vae, 1)


def test_a_split_of_one_sample_is_drawn(named_cvae, named, figures) -> None:
    """A 1-sample test split crashed the latent picture of a latent of more than 2 dimensions (PCA of 1 point)."""
    model = genreg.build_model({**SPECS["cvae"], "latent_dim": 5}, named.info).eval()
    one = named.test.take(slice(0, 1))
    figures.append(figure := latent_scatter_figure(model, one))
    assert figure.axes[0].get_xlabel() == "PC1" and figure.axes[0].get_ylabel() == "PC2"
    figures.append(latent_scatter_figure(named_cvae, one))
    points, labels = project_2d(torch.randn(3, 5))
    assert points.shape == (3, 2) and labels[0].startswith("PC1 (")
