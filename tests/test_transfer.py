"""Counterfactual decoding: real images re-decoded under other classes keep one latent and take the new class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli

CVAE = {"type": "cvae", "latent_dim": 8, "encoder": {"hidden": [256]}, "decoder": {"hidden": [256]}}


@pytest.fixture(scope="module")
def cvae(mnist: genreg.DataSplits) -> genreg.GenerativeModel:
    torch.manual_seed(0)
    model = genreg.build_model(CVAE, mnist.info)
    genreg.train(model, mnist, genreg.TrainConfig(epochs=2, batch_size=64, device="cpu"), progress=False)
    return model.eval()


def test_every_column_of_a_row_decodes_the_same_latent(cvae, mnist) -> None:
    x, y = mnist.test.images[:5], mnist.test.labels[:5]
    targets = torch.tensor([3, 7])
    images = cvae.transfer(x, y, targets)
    z = cvae.encode(x, y)
    for column, target in enumerate(targets.tolist()):
        assert torch.allclose(images[:, column], cvae.decode(z, torch.full((5,), target)), atol=1e-6)
    assert not torch.equal(images[:, 0], images[:, 1])


def test_transfer_refuses_classes_outside_the_model(cvae, mnist) -> None:
    with pytest.raises(ValueError, match=r"column 'label' has class 10, .* classes 0..9"):
        cvae.transfer(mnist.test.images[:2], mnist.test.labels[:2], torch.tensor([10]))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    spec = {"model": {**CVAE, "latent_dim": 2}, "data": {"type": "mnist-sample"}, "train": {"epochs": 1}}
    (folder / "spec.json").write_text(json.dumps(spec))
    result = CliRunner().invoke(cli, ["run", str(folder / "spec.json"), "--out", str(folder / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_cli_writes_one_row_per_image_and_one_column_per_class(run_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "transfer.png"
    result = CliRunner().invoke(cli, ["transfer", str(run_folder), "-n", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--to", "12"], "--to 12: must be 'all' or a class in 0..9"), (["--to", "seven"], "--to seven")],
)
def test_cli_bad_target_exits_2(run_folder: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["transfer", str(run_folder), *args, "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_cli_refuses_an_unconditional_model(tmp_path: Path, mnist) -> None:
    model = genreg.build_model({"type": "vae", "latent_dim": 2}, mnist.info)
    path = genreg.save_model(model, tmp_path / "vae.safetensors")
    result = CliRunner().invoke(cli, ["transfer", str(path), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "not conditional" in result.output
