"""`genreg run` end to end: each example trains, writes a complete run folder, reloads, resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from genreg.files.run_folder import RunFolder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST = ["--set", "model.encoder.hidden=[128]", "--set", "model.decoder.hidden=[128]", "--quiet"]


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", ["ae", "vae", "cvae", "cvae_ink"])
def test_example_trains_and_reloads(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    output = run_cli("run", str(EXAMPLES / f"{name}.json"), "--out", str(out), "--set", "train.epochs=3")
    assert "run folder" in output
    assert sorted(p.name for p in out.iterdir()) == sorted(RunFolder.OUTPUTS)
    history = RunFolder(out).read_metrics()
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    assert history[-1]["test"]["bce"] < history[0]["test"]["bce"]
    assert ("kld" in history[0]["test"]) == (name != "ae")

    resolved = json.loads((out / "spec.json").read_text())
    assert resolved["train"]["epochs"] == 3 and resolved["model"]["type"] == name.partition("_")[0]
    if name.startswith("cvae"):
        assert resolved["model"]["conditioner"][0]["num_classes"] == 10

    model = genreg.load_model(out / "model.safetensors")
    again = genreg.load_model(out)
    data = genreg.load_data(resolved["data"])
    x, y = data.test.images[:16], data.test.condition(slice(0, 16))  # the label, and ink for cvae_ink
    assert torch.equal(model.encode(x, y), again.encode(x, y))
    z = model.encode(x, y)
    assert torch.equal(model.decode(z, y), again.decode(z, y))
    assert model.decode(z, y).shape == (16, 1, 28, 28)


def test_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    spec = str(EXAMPLES / "ae.json")
    run_cli("run", spec, "--out", str(tmp_path), "--set", "train.epochs=1", *FAST)
    before = (tmp_path / "model.safetensors").read_bytes()
    result = CliRunner().invoke(cli, ["run", spec, "--out", str(tmp_path), "--set", "train.epochs=1", *FAST])
    assert result.exit_code == 2
    assert "already holds a run" in result.output and "--overwrite" in result.output
    assert (tmp_path / "model.safetensors").read_bytes() == before
    run_cli("run", spec, "--out", str(tmp_path), "--set", "train.epochs=1", "--set", "seed=1", "--overwrite", *FAST)
    assert (tmp_path / "model.safetensors").read_bytes() != before


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return genreg.load_model(folder).state_dict()


def test_resume_continues_to_the_same_weights(tmp_path: Path) -> None:
    spec = str(EXAMPLES / "cvae.json")
    run_cli("run", spec, "--out", str(tmp_path / "whole"), "--set", "train.epochs=3", *FAST)
    run_cli("run", spec, "--out", str(tmp_path / "parts"), "--set", "train.epochs=2", *FAST)
    run_cli("run", spec, "--out", str(tmp_path / "parts"), "--set", "train.epochs=3", "--resume", *FAST)
    whole, parts = weights(tmp_path / "whole"), weights(tmp_path / "parts")
    assert whole.keys() == parts.keys()
    for key in whole:
        assert torch.equal(whole[key], parts[key]), key
    assert [r["epoch"] for r in RunFolder(tmp_path / "parts").read_metrics()] == [1, 2, 3]


def test_resume_after_interruption(tmp_path: Path) -> None:
    """An exception after epoch 2 of 3 leaves a checkpoint; resuming matches an unbroken run."""
    raw = json.loads((EXAMPLES / "vae.json").read_text())
    spec = genreg.load_spec(raw, ["train.epochs=3", "model.encoder.hidden=[64]", "model.decoder.hidden=[64]"])
    whole = genreg.run(spec, tmp_path / "whole", progress=False)

    def stop_after_two(record: dict) -> None:
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    torch.manual_seed(spec.seed)
    data = genreg.load_data(spec.data)
    model = genreg.build_model(spec.model, data.info)
    (tmp_path / "broken").mkdir()
    with pytest.raises(KeyboardInterrupt):
        genreg.train(
            model,
            data,
            spec.train,
            seed=spec.seed,
            run_dir=tmp_path / "broken",
            callbacks=[genreg.EveryEpoch(stop_after_two)],
            progress=False,
        )
    (tmp_path / "broken" / "spec.json").write_text(json.dumps({**spec.model_dump(mode="json"), "model": model.spec}))
    resumed = genreg.run(spec, tmp_path / "broken", resume=True, progress=False)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_resume_refuses_a_changed_spec(tmp_path: Path) -> None:
    spec = str(EXAMPLES / "ae.json")
    run_cli("run", spec, "--out", str(tmp_path), "--set", "train.epochs=1", *FAST)
    result = CliRunner().invoke(
        cli,
        ["run", spec, "--out", str(tmp_path), "--resume", "--set", "train.lr=0.01", "--set", "train.epochs=2", *FAST],
    )
    assert result.exit_code == 2 and "train.lr" in result.output


def test_same_spec_same_weights_on_cpu(tmp_path: Path) -> None:
    spec = str(EXAMPLES / "vae.json")
    for name in ("a", "b"):
        run_cli("run", spec, "--out", str(tmp_path / name), "--set", "train.epochs=1", *FAST)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
