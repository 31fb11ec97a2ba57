"""Pictures of a model with a class label and a continuous column (the ink of a digit).

Samples held at a value or spanning the column's range, counterfactual decoding to other values
of it, the latent scatter coloured by it, and the errors for condition values a model cannot take.
The grid tests read what a picture shows from the arguments its images were drawn with, not
from its pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import genreg
import genreg.viz.explore as explore
import genreg.viz.samples as samples
from genreg.cli import cli
from genreg.cli.arguments import check_label, transfer_targets
from genreg.errors import ConditionError, UsageError
from genreg.viz.explore import manifold_figure
from genreg.viz.figures import grid_figure, save_figure
from genreg.viz.latent import strip_samples
from genreg.viz.samples import sample_images

MLP = {"type": "mlp", "hidden": [64]}
INK_CVAE = {
    "type": "cvae",
    "latent_dim": 2,
    "encoder": MLP,
    "decoder": MLP,
    "conditioner": [{"type": "onehot"}, {"type": "continuous", "column": "ink", "hidden": 8}],
}
PNG = b"\x89PNG"


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of the label + ink cVAE, for the CLI to read (model file and recorded data)."""
    folder = tmp_path_factory.mktemp("ink")
    spec = {
        "model": INK_CVAE,
        "data": {"type": "mnist-sample"},
        "train": {"epochs": 4, "batch_size": 64, "device": "cpu"},
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    result = invoke("run", folder / "spec.json", "--out", folder / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return folder / "run"


@pytest.fixture(scope="module")
def model(run_folder: Path) -> genreg.GenerativeModel:
    return genreg.load_model(run_folder)


@pytest.fixture
def grids(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every grid drawn by genreg.viz.samples or genreg.viz.explore, recorded; the figure is still drawn."""
    calls: list[dict] = []

    def record(images: torch.Tensor, ncol: int, **labels: list[str] | None) -> object:
        calls.append({"images": images.detach().cpu(), "ncol": ncol, **labels})
        return grid_figure(images, ncol, **labels)

    monkeypatch.setattr(samples, "grid_figure", record)
    monkeypatch.setattr(explore, "grid_figure", record)
    return calls


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Each value's rank 0..n-1 (the values here are distinct, so ties need no averaging)."""
    return values.argsort().argsort().double()


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks."""
    return float(torch.corrcoef(torch.stack([ranks(a), ranks(b)]))[0, 1])


def test_spearman_reads_order_not_scale() -> None:
    x = torch.tensor([0.1, 0.5, 0.2, 3.0, 0.3])
    assert spearman(x, x.exp()) == pytest.approx(1.0)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)
    assert spearman(torch.arange(4.0), torch.tensor([1.0, 0.0, 3.0, 2.0])) == pytest.approx(0.6)


def test_generated_ink_rises_with_the_asked_ink(mnist: genreg.DataSplits) -> None:
    """Continuous condition: after short training, the mean ink of generated digits rises with the asked ink."""
    torch.manual_seed(0)
    model = genreg.build_model(INK_CVAE, mnist.info)
    genreg.train(model, mnist, genreg.TrainConfig(epochs=4, batch_size=64, device="cpu"), progress=False)
    part = model.eval().conditioner.part("ink")
    asked = torch.linspace(float(part.low), float(part.high), 9)
    torch.manual_seed(1)
    measured = torch.stack(
        [
            model.sample(condition={"label": torch.arange(100) % 10, "ink": torch.full((100,), ink)}).mean()
            for ink in asked
        ]
    )
    rho = spearman(asked, measured)
    assert rho >= 0.9, f"Spearman {rho:.3f}: asked {asked.tolist()}, generated {measured.tolist()}"


# ---------------------------------------------------------------- genreg sample


def test_the_thickness_picture_has_a_row_per_class_and_a_column_per_ink(model, run_folder, grids, tmp_path) -> None:
    result = invoke("sample", run_folder, "-n", 5, "-o", tmp_path / "thick.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "thick.png").read_bytes()[:4] == PNG
    (call,) = grids
    part = model.conditioner.part("ink")
    inks = torch.linspace(float(part.low), float(part.high), 5).tolist()
    assert call["ncol"] == 5 and call["images"].shape == (50, 1, 28, 28)
    assert call["row_labels"] == [f"class {k}" for k in range(10)]
    assert call["column_labels"] == [f"ink={ink:.3g}" for ink in inks]
    images, rows, columns = sample_images(model, 5)
    assert images.shape == (50, 1, 28, 28) and rows == call["row_labels"] and columns == call["column_labels"]


def test_sample_at_one_ink_value_draws_a_row_per_class(run_folder, grids, tmp_path) -> None:
    result = invoke("sample", run_folder, "--condition", "ink=0.15", "-n", 4, "-o", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f.png").read_bytes()[:4] == PNG
    (call,) = grids
    assert call["images"].shape == (40, 1, 28, 28) and call["column_labels"] is None  # draws, not ink values
    assert call["row_labels"] == [f"class {k}" for k in range(10)]


def test_label_and_ink_fixed_give_one_row_of_draws(model, run_folder, grids, tmp_path) -> None:
    result = invoke("sample", run_folder, "--label", 3, "--condition", "ink=0.1", "-n", 6, "-o", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    assert grids[0]["images"].shape == (6, 1, 28, 28) and grids[0]["row_labels"] == ["class 3"]
    _, rows, columns = sample_images(model, 4, fixed={"label": 7})  # one class, the ink spanning
    assert rows == ["class 7"] and len(columns) == 4


def test_grid_and_interpolation_take_every_column(run_folder, tmp_path) -> None:
    grid, line = tmp_path / "grid.png", tmp_path / "line.png"
    result = invoke("sample", run_folder, "--grid", "-n", 4, "--condition", "label=3", "--condition", "ink=0.2",
                    "-o", grid)  # fmt: skip
    assert result.exit_code == 0, result.output
    result = invoke("sample", run_folder, "--interpolate", 0, 9, "--condition", "ink=0.05", "-o", line)
    assert result.exit_code == 0, result.output
    assert grid.read_bytes()[:4] == PNG and line.read_bytes()[:4] == PNG
    result = invoke("sample", run_folder, "--grid", "--condition", "ink=0.2", "-o", grid)
    assert result.exit_code == 2 and "pass --label with a class in 0..9" in result.output


def test_columns_left_out_take_class_0_or_the_training_mean(model) -> None:
    condition = model.conditioner.constant(2, {"label": 3})
    assert condition["label"].tolist() == [3, 3]
    assert condition["ink"].tolist() == pytest.approx([float(model.conditioner.part("ink").mean)] * 2)
    with pytest.raises(ConditionError, match="no condition column 'dose'; it reads label, ink"):
        sample_images(model, 2, fixed={"dose": 1})


def test_the_comparison_strip_shows_one_sample_per_class(model) -> None:
    images, title = strip_samples(model, 10)
    assert images.shape == (10, 1, 28, 28) and title == "samples (classes 0-9)"


# ---------------------------------------------------------------- genreg transfer and genreg latent


def test_transfer_to_ink_values_heads_each_column(model, run_folder, grids, tmp_path) -> None:
    result = invoke("transfer", run_folder, "--to", "ink=0.05,0.2", "-n", 3, "-o", tmp_path / "t.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t.png").read_bytes()[:4] == PNG
    (call,) = grids
    assert call["ncol"] == 3 and call["images"].shape == (9, 1, 28, 28)
    assert call["column_labels"] == ["image", "ink=0.05", "ink=0.2"]
    assert len(call["row_labels"]) == 3 and all(
        row.startswith("class ") and "ink=" in row for row in call["row_labels"]
    )


def test_transfer_to_all_classes_keeps_each_images_ink(run_folder, grids, tmp_path) -> None:
    result = invoke("transfer", run_folder, "-n", 2, "-o", tmp_path / "t.png")
    assert result.exit_code == 0, result.output
    assert grids[0]["column_labels"] == ["image", *(f"class {k}" for k in range(10))]


@pytest.mark.parametrize("args", [["--color-by", "ink"], ["--split", "train"]])
def test_latent_scatter_coloured_by_a_column(run_folder, tmp_path, args: list[str]) -> None:
    out = tmp_path / "latent.png"
    result = invoke("latent", run_folder, *args, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == PNG


# ---------------------------------------------------------------- bad condition values


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["sample", "--condition", "dose=1"], "--condition dose=1: this model has no condition column 'dose'; "
                                              "it reads label (classes 0..9), ink (a number;"),
        (["sample", "--condition", "label=10"], "--condition label=10: column 'label' takes a class in 0..9"),
        (["sample", "--condition", "ink=nan"], "--condition ink=nan: column 'ink' takes a finite number"),
        (["sample", "--condition", "ink=thick"], "column 'ink' takes a finite number, got 'thick'"),
        (["sample", "--condition", "ink"], "--condition ink: write COLUMN=VALUE"),
        (["sample", "--label", "2", "--condition", "label=4"], "column 'label' is already given by --label 2"),
        (["sample", "--label", "12"], "--label 12: must be a class in 0..9"),
        (["transfer", "--to", "dose=1"], "--to dose=1: this model has no condition column 'dose'"),
        (["transfer", "--to", "ink=0.1,nan"], "--to ink=0.1,nan: column 'ink' takes a finite number, got 'nan'"),
        (["transfer", "--to", "ink="], "--to ink=: give at least one value"),
        (["transfer", "--to", "label=3,12"], "--to label=3,12: column 'label' takes a class in 0..9, got '12'"),
        (["transfer", "--to", "12"], "--to 12: must be 'all' or a class in 0..9, or COLUMN=v1,v2,..."),
        (["latent", "--color-by", "dose"], "cannot colour by 'dose': the split has no such column; "
                                           "its columns: label, ink"),
    ],
)  # fmt: skip
def test_bad_condition_input_exits_2_naming_the_column(run_folder, tmp_path, args: list[str], says: str) -> None:
    command, *options = args
    out = tmp_path / "x.png"
    result = invoke(command, run_folder, *options, "-o", out)
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not out.exists()


def test_an_unconditional_model_refuses_a_condition(mnist, tmp_path) -> None:
    path = genreg.save_model(
        genreg.build_model({"type": "vae", "latent_dim": 2}, mnist.info), tmp_path / "v.safetensors"
    )
    result = invoke("sample", path, "--condition", "ink=0.1", "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "not conditional" in result.output


# ---------------------------------------------------------------- a model conditioned on the ink alone


@pytest.fixture
def ink_only() -> genreg.GenerativeModel:
    """Untrained, on 8x8 images: what matters here is which conditions the pictures ask for."""
    spec = {**INK_CVAE, "conditioner": {"type": "continuous", "column": "ink"}}
    return genreg.build_model(spec, genreg.DataInfo((1, 8, 8), 3, {"ink": 0})).eval()


def test_without_the_label_the_ink_spans_one_row(ink_only, tmp_path) -> None:
    images, rows, columns = sample_images(ink_only, 3)
    assert images.shape == (3, 1, 8, 8) and rows is None and columns == ["ink=0", "ink=0.5", "ink=1"]
    assert strip_samples(ink_only, 3)[1] == "samples (ink=0 to ink=1)"
    assert save_figure(manifold_figure(ink_only, n=3), tmp_path / "m.png").exists()  # no class to ask for


def test_without_the_label_label_options_are_refused(ink_only) -> None:
    with pytest.raises(UsageError, match=r"--label 1: this model is not conditioned on the label \(it reads ink\)"):
        check_label(ink_only, 1)
    with pytest.raises(ConditionError, match="--to all: this model is not conditioned on the label; give COLUMN="):
        transfer_targets(ink_only, "all")


@pytest.mark.parametrize("command", ["sample", "transfer", "latent"])
def test_a_picture_into_a_missing_folder_exits_2_and_leaves_nothing(run_folder, tmp_path, command: str) -> None:
    out = tmp_path / "missing" / "x.png"
    result = invoke(command, run_folder, "-o", out)
    assert result.exit_code == 2, result.output
    assert f"could not write {out} (No such file or directory)" in result.output
    assert "Traceback" not in result.output and not out.parent.exists()


def test_compare_and_eval_measure_a_model_with_two_columns(run_folder, trained, tmp_path) -> None:
    """Conditional accuracy asks for each class with the ink at its training mean."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENREG_CACHE", str(trained.cache))  # the session's reference classifier
        result = invoke("compare", run_folder, "-o", tmp_path / "compare.png", "--iw-samples", 20)
    assert result.exit_code == 0, result.output
    assert "conditional accuracy" in result.output and (tmp_path / "compare.png").read_bytes()[:4] == PNG
