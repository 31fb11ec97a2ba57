"""Tests genreg/cli/pictures.py: ``genreg sample``, ``genreg transfer`` and ``genreg latent``.

Most of these run on one real run of a cVAE conditioned on a class label and a continuous column (the
ink of a digit; the ``ink_run`` fixture): samples held at a value or spanning the column's range,
counterfactual decoding to other values of it, the latent scatter coloured by it. The grid tests read
what a picture shows from the arguments its images were drawn with, not from its pixels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import genreg
import genreg.viz.explore as explore
import genreg.viz.samples as samples
from genreg.cli import cli
from genreg.viz.figures import grid_figure
from genreg.viz.samples import sample_images
from tests.helpers import assert_user_error, invoke

PNG = b"\x89PNG"


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


# --------------------------------------------------------------------------- genreg sample


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    small = {"latent_dim": 2, "encoder": {"type": "mlp", "hidden": [8]}, "decoder": {"type": "mlp", "hidden": [8]}}
    info = genreg.DataInfo((1, 6, 6), 3)
    cvae = genreg.save_model(genreg.build_model({"type": "cvae", **small}, info), folder / "cvae.safetensors")
    vae = genreg.save_model(genreg.build_model({"type": "vae", **small}, info), folder / "vae.safetensors")
    return {"cvae": cvae, "vae": vae, "folder": folder}


def test_sample_writes_a_png(model_files, tmp_path):
    out = tmp_path / "grid.png"
    result = invoke("sample", model_files["cvae"], "-n", "2", "--label", "1", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {out}\n"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "empty", "not genreg"])
def test_sample_bad_model_file_exits_2_naming_the_file(model_files, tmp_path, case):
    path = tmp_path / f"{case.replace(' ', '_')}.safetensors"
    good = model_files["cvae"].read_bytes()
    if case == "garbage":
        path.write_bytes(b"\x13\x37 this is not a safetensors file" * 4)
    elif case == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "not genreg":
        from safetensors.torch import save_file

        save_file({"weight": torch.zeros(2)}, str(path))
    out = tmp_path / "out.png"
    result = invoke("sample", path, "-o", out)
    expected = {
        "missing": "no such model file",
        "garbage": "is not a readable safetensors file",
        "truncated": "is not a readable safetensors file",
        "empty": "is not a readable safetensors file",
        "not genreg": "is a safetensors file but not a genreg one",
    }[case]
    assert_user_error(result, str(path), expected)
    assert not out.exists()


def test_sample_label_errors(model_files, tmp_path):
    out = tmp_path / "out.png"
    assert_user_error(
        invoke("sample", model_files["cvae"], "--label", "3", "-o", out), "--label 3: must be a class in 0..2"
    )
    assert_user_error(invoke("sample", model_files["vae"], "--label", "0", "-o", out), "this model is not conditional")
    assert not out.exists()


@pytest.mark.slow
def test_the_thickness_picture_has_a_row_per_class_and_a_column_per_ink(ink_model, ink_run, grids, tmp_path) -> None:
    result = invoke("sample", ink_run, "-n", 5, "-o", tmp_path / "thick.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "thick.png").read_bytes()[:4] == PNG
    (call,) = grids
    part = ink_model.conditioner.part("ink")
    inks = torch.linspace(float(part.low), float(part.high), 5).tolist()
    assert call["ncol"] == 5 and call["images"].shape == (50, 1, 28, 28)
    assert call["row_labels"] == [f"class {k}" for k in range(10)]
    assert call["column_labels"] == [f"ink={ink:.3g}" for ink in inks]
    images, rows, columns = sample_images(ink_model, 5)[:3]
    assert images.shape == (50, 1, 28, 28) and rows == call["row_labels"] and columns == call["column_labels"]


@pytest.mark.slow
def test_sample_at_one_ink_value_draws_a_row_per_class(ink_run, grids, tmp_path) -> None:
    result = invoke("sample", ink_run, "--condition", "ink=0.15", "-n", 4, "-o", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f.png").read_bytes()[:4] == PNG
    (call,) = grids
    assert call["images"].shape == (40, 1, 28, 28) and call["column_labels"] is None  # draws, not ink values
    assert call["row_labels"] == [f"class {k}" for k in range(10)]


@pytest.mark.slow
def test_label_and_ink_fixed_give_one_row_of_draws(ink_model, ink_run, grids, tmp_path) -> None:
    result = invoke("sample", ink_run, "--label", 3, "--condition", "ink=0.1", "-n", 6, "-o", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    assert grids[0]["images"].shape == (6, 1, 28, 28) and grids[0]["row_labels"] == ["class 3"]
    _, rows, columns = sample_images(ink_model, 4, fixed={"label": 7})[:3]  # one class, the ink spanning
    assert rows == ["class 7"] and len(columns) == 4


@pytest.mark.slow
def test_grid_and_interpolation_take_every_column(ink_run, tmp_path) -> None:
    grid, line = tmp_path / "grid.png", tmp_path / "line.png"
    result = invoke("sample", ink_run, "--grid", "-n", 4, "--condition", "label=3", "--condition", "ink=0.2",
                    "-o", grid)  # fmt: skip
    assert result.exit_code == 0, result.output
    result = invoke("sample", ink_run, "--interpolate", 0, 9, "--condition", "ink=0.05", "-o", line)
    assert result.exit_code == 0, result.output
    assert grid.read_bytes()[:4] == PNG and line.read_bytes()[:4] == PNG
    result = invoke("sample", ink_run, "--grid", "--condition", "ink=0.2", "-o", grid)
    assert result.exit_code == 2 and "pass --label with a class in 0..9" in result.output


@pytest.mark.slow
def test_sample_grid_and_interpolation(study_runs: dict[str, Path], tmp_path: Path) -> None:
    grid, line = tmp_path / "grid.png", tmp_path / "line.png"
    assert invoke("sample", str(study_runs["vae"]), "--grid", "-n", "5", "-o", str(grid)).exit_code == 0
    assert invoke("sample", str(study_runs["vae"]), "--interpolate", "0", "999", "-o", str(line)).exit_code == 0
    assert grid.stat().st_size > 1000 and line.stat().st_size > 1000
    result = invoke("sample", str(study_runs["vae"]), "--interpolate", "0", "1000", "-o", str(line))
    assert result.exit_code == 2 and "out of range" in result.output
    result = invoke("sample", str(study_runs["vae"]), "--grid", "--interpolate", "0", "1", "-o", str(line))
    assert result.exit_code == 2 and "choose one" in result.output


def test_an_unconditional_model_refuses_a_condition(mnist, tmp_path) -> None:
    path = genreg.save_model(
        genreg.build_model({"type": "vae", "latent_dim": 2}, mnist.info), tmp_path / "v.safetensors"
    )
    result = invoke("sample", path, "--condition", "ink=0.1", "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "not conditional" in result.output


# --------------------------------------------------------------------------- genreg transfer


@pytest.mark.slow
def test_transfer_to_ink_values_heads_each_column(ink_model, ink_run, grids, tmp_path) -> None:
    result = invoke("transfer", ink_run, "--to", "ink=0.05,0.2", "-n", 3, "-o", tmp_path / "t.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t.png").read_bytes()[:4] == PNG
    (call,) = grids
    assert call["ncol"] == 3 and call["images"].shape == (9, 1, 28, 28)
    assert call["column_labels"] == ["image", "ink=0.05", "ink=0.2"]
    assert len(call["row_labels"]) == 3 and all(
        row.startswith("class ") and "ink=" in row for row in call["row_labels"]
    )


@pytest.mark.slow
def test_transfer_to_all_classes_keeps_each_images_ink(ink_run, grids, tmp_path) -> None:
    result = invoke("transfer", ink_run, "-n", 2, "-o", tmp_path / "t.png")
    assert result.exit_code == 0, result.output
    assert grids[0]["column_labels"] == ["image", *(f"class {k}" for k in range(10))]


CVAE = {"type": "cvae", "latent_dim": 8, "encoder": {"hidden": [256]}, "decoder": {"hidden": [256]}}


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory) -> Path:
    """A one-epoch run of a label-only cVAE."""
    folder = tmp_path_factory.mktemp("run")
    spec = {"model": {**CVAE, "latent_dim": 2}, "data": {"type": "mnist-sample"}, "train": {"epochs": 1}}
    (folder / "spec.json").write_text(json.dumps(spec))
    result = CliRunner().invoke(cli, ["run", str(folder / "spec.json"), "--out", str(folder / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    return folder / "run"


@pytest.mark.slow
def test_transfer_writes_one_row_per_image_and_one_column_per_class(cvae_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "transfer.png"
    result = CliRunner().invoke(cli, ["transfer", str(cvae_run), "-n", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [(["--to", "12"], "--to 12: must be 'all' or a class in 0..9"), (["--to", "seven"], "--to seven")],
)
def test_transfer_bad_target_exits_2(cvae_run: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["transfer", str(cvae_run), *args, "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_transfer_refuses_more_images_than_the_split_holds(cvae_run: Path, tmp_path: Path) -> None:
    """`-n 1000000000` was capped at the split's 1,000 test images silently, drawn 60,044 pixels tall in 29 s."""
    result = CliRunner().invoke(cli, ["transfer", str(cvae_run), "-n", "1000000000", "-o", str(tmp_path / "x.png")])
    assert_user_error(result, f"-n 1,000,000,000: the test split of {cvae_run} has 1,000 images; ask for fewer.")
    assert not (tmp_path / "x.png").exists()


def test_transfer_refuses_an_unconditional_model(tmp_path: Path, mnist) -> None:
    model = genreg.build_model({"type": "vae", "latent_dim": 2}, mnist.info)
    path = genreg.save_model(model, tmp_path / "vae.safetensors")
    result = CliRunner().invoke(cli, ["transfer", str(path), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "not conditional" in result.output


# --------------------------------------------------------------------------- genreg latent, and every picture


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--color-by", "ink"], ["--split", "train"]])
def test_latent_scatter_coloured_by_a_column(ink_run, tmp_path, args: list[str]) -> None:
    out = tmp_path / "latent.png"
    result = invoke("latent", ink_run, *args, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == PNG


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sample", "transfer", "latent"])
def test_a_picture_into_a_missing_folder_exits_2_and_leaves_nothing(ink_run, tmp_path, command: str) -> None:
    out = tmp_path / "missing" / "x.png"
    result = invoke(command, ink_run, "-o", out)
    assert result.exit_code == 2, result.output
    assert f"-o {out}: the folder {out.parent} does not exist; create it, or choose another place." in result.output
    assert "Traceback" not in result.output and not out.parent.exists()


@pytest.mark.parametrize("name", ["out", "out.txt", "model.safetensors"])
@pytest.mark.parametrize("command", [["sample"], ["latent"], ["sample", "--grid"]])
def test_a_picture_file_without_a_picture_extension_is_refused_first(tmp_path, name, command) -> None:
    """Case 15 of issue 15: `-o out`, `-o out.txt` and `-o RUN/model.safetensors` ended in a traceback (and the
    last could have replaced the model file with a picture)."""
    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "before_layout" / "vae_run", run)
    model = (run / "model.safetensors").read_bytes()
    result = invoke(command[0], run, *command[1:], "-o", run / name)
    assert_user_error(result, f"-o {run / name}: a picture is written in the format its extension names", "png")
    assert (run / "model.safetensors").read_bytes() == model
    assert not (run / "out").exists() and not (run / "out.txt").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["sample", "-n", 10**9],
            "would be 60,000,000,060 x 60,000,000,030 pixels, but a picture can be at most 65,535",
        ),
        (["sample", "--grid", "-n", 10**9], "at most 1,091 images per row or column"),
        (
            ["sample", "--seed", 10**29],
            "Invalid value for '--seed': 100000000000000000000000000000 is not in the range",
        ),
        (["transfer", "--seed", -1], "Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295"),
        (["eval", "--iw-samples", 10**9], "Invalid value for '--iw-samples': 1000000000 is not in the range"),
    ],
)
def test_sizes_too_large_for_any_machine_are_refused_naming_the_limit(model_files, tmp_path, args, says) -> None:
    """Case 17 of issue 15: each ended in a traceback after trying to allocate, or ran out of memory."""
    command, *options = args
    extra = ["-o", tmp_path / "x.png"] if command != "eval" else []
    result = invoke(command, model_files["vae"], *options, *extra)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert says in result.output, result.output
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- issue 16: numbers, and many classes


def test_sample_to_npz_writes_the_images_and_their_conditions(model_files, tmp_path) -> None:
    """Case 10 of issue 16: `-o samples.npz` was refused; users want the numbers."""
    import numpy as np

    run_out = tmp_path / "samples.npz"
    result = invoke("sample", model_files["cvae"], "-n", 2, "-o", run_out)
    assert result.exit_code == 0, result.output
    with np.load(run_out) as saved:
        assert sorted(saved) == ["images", "label"]
        images = saved["images"]
        assert images.shape == (6, 1, 6, 6) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
        assert saved["label"].tolist() == [0, 0, 1, 1, 2, 2]
    grid = invoke("sample", model_files["cvae"], "--grid", "-n", 3, "--label", 1, "-o", tmp_path / "m.npz")
    assert grid.exit_code == 0, grid.output
    with np.load(tmp_path / "m.npz") as saved:
        assert saved["images"].shape == (9, 1, 6, 6) and saved["z"].shape == (9, 2) and set(saved["label"]) == {1}


@pytest.mark.parametrize("command", ["sample", "transfer", "latent"])
def test_an_unknown_extension_lists_the_formats_and_arrays(model_files, tmp_path, command: str) -> None:
    """Case 10 of issue 16."""
    result = invoke(command, model_files["cvae"], "-o", tmp_path / "out.tmp")
    assert_user_error(result, "'.tmp' is none of", "png", "(or .npz, .npy: the arrays themselves)")


def test_sample_rows_are_chosen_with_classes_or_rows(model_files, grids, tmp_path) -> None:
    """Case 7 of issue 16: a picture shows at most --rows classes, or those --classes names."""
    assert invoke("sample", model_files["cvae"], "-n", 1, "--classes", "2,0", "-o", tmp_path / "a.png").exit_code == 0
    assert invoke("sample", model_files["cvae"], "-n", 1, "--rows", 2, "-o", tmp_path / "b.png").exit_code == 0
    assert [call["row_labels"] for call in grids] == [["class 2", "class 0"], ["class 0", "class 2"]]
    assert "choose with --classes or --rows" in grids[1]["title"]
    bad = invoke("sample", model_files["cvae"], "--classes", "0,x", "-o", tmp_path / "c.png")
    assert_user_error(bad, "--classes 0,x: give class indices separated by commas")
    both = invoke("sample", model_files["cvae"], "--classes", "0", "--label", 1, "-o", tmp_path / "c.png")
    assert_user_error(both, "leave it out with --label")


@pytest.mark.slow
def test_transfer_and_latent_write_their_numbers(cvae_run: Path, tmp_path: Path) -> None:
    """Case 10 of issue 16 (transfer and latent), and case 7: --to all shows at most --columns classes."""
    import numpy as np

    result = invoke("transfer", cvae_run, "-n", 2, "--columns", 3, "-o", tmp_path / "t.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "t.npz") as saved:
        assert saved["images"].shape == (6, 1, 28, 28) and saved["label"].tolist() == [0, 4, 9, 0, 4, 9]
        assert (
            saved["originals"].shape == (2, 1, 28, 28)
            and saved["index"].tolist()[::3] == saved["original_index"].tolist()
        )
    result = invoke("latent", cvae_run, "-o", tmp_path / "l.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "l.npz") as saved:
        assert saved["mu"].shape == (1000, 2) and saved["label"].shape == (1000,)


# --------------------------------------------------------------------------- vectors: a table's rows


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory) -> Path:
    """A two-epoch run of a cVAE of 300 vectors of 12 features around 100, in 3 classes, from a .npz file."""
    import numpy as np

    from tests.viz.vectors import SPECS, table

    folder = tmp_path_factory.mktemp("vectors")
    x, labels = table()
    np.savez(folder / "table.npz", x=x, labels=labels)
    spec = {"model": SPECS["cvae"], "data": {"type": "npz", "path": str(folder / "table.npz")}, "train": {"epochs": 2}}
    (folder / "spec.json").write_text(json.dumps(spec))
    result = invoke("run", folder / "spec.json", "--out", folder / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_a_run_of_vectors_draws_its_samples_and_latent_pictures(vector_run) -> None:
    """`genreg run` of vectors trained, then failed: samples.png could not be drawn (an image grid of vectors)."""
    for name in ("samples.png", "latent.png"):
        assert (vector_run / name).read_bytes()[:4] == PNG and (vector_run / name).stat().st_size > 10_000


def test_sample_of_vectors_to_npz_writes_what_model_sample_draws(vector_run, tmp_path) -> None:
    import numpy as np

    from tests.viz.vectors import FEATURES

    result = invoke("sample", vector_run, "-n", 3, "--seed", 5, "-o", tmp_path / "x.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "x.npz") as saved:
        assert sorted(saved) == ["label", "x"] and saved["x"].shape == (9, FEATURES) and saved["x"].dtype == np.float32
        assert saved["label"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        model = genreg.load_model(vector_run)
        torch.manual_seed(5)
        assert np.allclose(saved["x"], model.sample(labels=saved["label"]).numpy())
    too_many = invoke("transfer", vector_run, "-n", 61, "-o", tmp_path / "t.npz")
    assert_user_error(too_many, f"-n 61: the test split of {vector_run} has 60 vectors; ask for fewer.")


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "-n", 2],
        ["sample", "--grid", "-n", 3, "--label", 1],
        ["sample", "--interpolate", 0, 5, "-n", 4],
        ["transfer", "-n", 3],
        ["latent", "--split", "train"],
    ],
)
@pytest.mark.parametrize("suffix", [".png", ".npz"])
def test_every_picture_of_vectors_and_its_numbers_are_written(vector_run, tmp_path, args, suffix) -> None:
    import numpy as np

    from tests.viz.vectors import FEATURES

    out = tmp_path / f"out{suffix}"
    result = invoke(args[0], vector_run, *args[1:], "-o", out)
    assert result.exit_code == 0, result.output
    if suffix == ".png":
        assert out.read_bytes()[:4] == PNG
        return
    with np.load(out) as saved:
        key, size = ("mu", 2) if args[0] == "latent" else ("x", FEATURES)  # the latent codes, or vectors
        assert saved[key].ndim == 2 and saved[key].shape[1] == size, {name: a.shape for name, a in saved.items()}


# --------------------------------------------------------------------------- classes named by strings, other units


@pytest.fixture(scope="module")
def named_run(tmp_path_factory) -> Path:
    """A two-epoch run of a cVAE of 300 count vectors of 12 features, labelled "B", "CD14+ Monocyte" and "T",
    fitted with the transform log1p, standardize."""
    import numpy as np

    from tests.viz.vectors import SPECS, TRANSFORM, counts

    folder = tmp_path_factory.mktemp("named")
    x, labels = counts()
    np.savez(folder / "counts.npz", x=x, labels=labels)
    data = {"type": "npz", "path": str(folder / "counts.npz"), "transform": TRANSFORM}
    spec = {"model": SPECS["cvae"], "data": data, "train": {"epochs": 2, "pictures": False}}
    (folder / "spec.json").write_text(json.dumps(spec))
    result = invoke("run", folder / "spec.json", "--out", folder / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_sample_of_a_named_class_writes_samples_in_the_datas_units(named_run, tmp_path) -> None:
    import numpy as np

    from tests.viz.vectors import NAMES, counts

    result = invoke("sample", named_run, "--label", "B", "-n", 50, "--seed", 3, "-o", tmp_path / "s.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "s.npz") as saved:
        assert sorted(saved) == ["label", "label_names", "x"] and saved["x"].shape == (50, 12)
        assert set(saved["label"]) == {0} and saved["label_names"].tolist() == NAMES
        x = saved["x"]
    model = genreg.load_model(named_run)
    torch.manual_seed(3)
    assert np.allclose(x, model.sample(50, labels="B").numpy(), rtol=1e-5, atol=1e-4)
    data = counts()[0]
    assert x.min() > -1 and 0.2 * data.mean() < x.mean() < 5 * data.mean()  # counts, not standardised values
    in_model = model.into_model(torch.from_numpy(x))
    assert abs(float(in_model.mean())) < 3  # the model's units are standardised


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["sample", "--label", "NK"], "--label NK: column 'label' has no class 'NK': the model knows the 3 values"),
        (["sample", "--condition", "label=1"], "--condition label=1: column 'label' has no class '1'"),
        (["sample", "--classes", "T,NK"], "--classes T,NK: column 'label' has no class 'NK'"),
        (["transfer", "--to", "NK"], "--to NK: must be 'all', a class of the label, or COLUMN=v1,v2,..."),
        (["transfer", "--to", "label=B,NK"], "--to label=B,NK: column 'label' has no class 'NK'"),
    ],
)
def test_a_class_the_model_does_not_know_exits_2_listing_its_classes(named_run, tmp_path, args, says) -> None:
    result = invoke(args[0], named_run, *args[1:], "-o", tmp_path / "x.png")
    assert_user_error(result, says, "'B', 'CD14+ Monocyte', 'T'")
    assert not (tmp_path / "x.png").exists()


def test_classes_and_targets_are_given_as_the_data_names_them(named_run, tmp_path) -> None:
    import numpy as np

    for args, labels in [
        (["sample", "--classes", "T,B", "-n", 2], [2, 2, 0, 0]),
        (["sample", "--condition", "label=CD14+ Monocyte", "-n", 2], [1, 1]),
        (["transfer", "--to", "CD14+ Monocyte", "-n", 2], [1, 1]),
        (["transfer", "--to", "label=T,B", "-n", 1], [2, 0]),
        (["transfer", "--classes", "B,T", "-n", 1], [0, 2]),
    ]:
        result = invoke(args[0], named_run, *args[1:], "-o", tmp_path / "x.npz")
        assert result.exit_code == 0, result.output
        with np.load(tmp_path / "x.npz") as saved:
            assert saved["label"].tolist() == labels, args
    for command in (["sample", "--label", "T"], ["latent"], ["transfer", "-n", 2]):
        assert invoke(command[0], named_run, *command[1:], "-o", tmp_path / "x.png").exit_code == 0
        assert (tmp_path / "x.png").read_bytes()[:4] == PNG
