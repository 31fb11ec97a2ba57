"""Tests genreg/training/runner.py, what ``genreg run`` does: each example trains, writes a complete run
folder and reloads; a run resumes to the weights of an uninterrupted one (after an exception or a SIGKILL);
the same spec trains to the same weights; parts that do not fit the data are refused before training,
naming the data."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydantic
import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from genreg.errors import AssemblyError
from genreg.files.run_folder import RunFolder
from tests.helpers import (
    EXAMPLES,
    MISFITS,
    SMALL_RUN,
    assert_user_error,
    invoke,
    posix_only,
    run_cli,
    spec_file,
    write_npz,
)

FAST = ["--set", "model.encoder.hidden=[128]", "--set", "model.decoder.hidden=[128]", "--quiet"]


@pytest.mark.slow
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
    x = data.test.images[:16]
    y = data.test.condition(slice(0, 16)) if name.startswith("cvae") else None  # the label, and ink for cvae_ink
    assert torch.equal(model.encode(x, y), again.encode(x, y))
    z = model.encode(x, y)
    assert torch.equal(model.decode(z, y), again.decode(z, y))
    assert model.decode(z, y).shape == (16, 1, 28, 28)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return genreg.load_model(folder).state_dict()


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_same_spec_same_weights_on_cpu(tmp_path: Path) -> None:
    spec = str(EXAMPLES / "vae.json")
    for name in ("a", "b"):
        run_cli("run", spec, "--out", str(tmp_path / name), "--set", "train.epochs=1", *FAST)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- a SIGKILL


@pytest.mark.slow
@posix_only
def test_a_run_killed_at_a_random_moment_resumes_to_the_end(tmp_path):
    """A real ``genreg run`` process, killed by SIGKILL during its epochs, resumes from what it left."""
    spec = EXAMPLES / "vae.json"
    out = tmp_path / "run"
    args = [str(spec), "--out", str(out), "--set", "train.epochs=8", "--quiet", *SMALL_RUN]
    process = subprocess.Popen([sys.executable, "-m", "genreg", "run", *args], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.safetensors").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(random.Random(1).uniform(0.0, 0.3))
        process.kill()
    finally:
        stderr = process.communicate()[1]
    assert process.returncode == -signal.SIGKILL, stderr
    done = genreg.load_model(out / "checkpoint.safetensors")  # whatever the moment, the checkpoint loads
    assert done.spec["type"] == "vae"

    result = CliRunner().invoke(cli, ["run", *args, "--resume"])
    assert result.exit_code == 0, result.output
    assert [record["epoch"] for record in RunFolder(out).read_metrics()] == list(range(1, 9))
    assert genreg.load_model(out).spec == done.spec


# --------------------------------------------------------------------------- refused before training


@pytest.mark.parametrize("conditioner", ["onehot", "embedding"])
def test_labels_beyond_the_conditioners_classes_fail_before_training(tmp_path, no_training, conditioner):
    data = write_npz(tmp_path / "digits.npz")  # labels 0..4
    spec = genreg.load_spec(spec_file(tmp_path, {"type": "npz", "path": str(data)}))
    spec = genreg.load_spec(spec.model_dump(mode="json"), [f'model.conditioner={{"type": "{conditioner}"}}'])
    spec = genreg.load_spec(spec.model_dump(mode="json"), ["model.conditioner.num_classes=3"])
    with pytest.raises(AssemblyError) as caught:
        genreg.run(spec, tmp_path / "run", progress=False)
    assert str(caught.value) == (
        f"model.conditioner[0] (column 'label'): conditioner '{conditioner}': num_classes=3, but the dataset's "
        "column has 5 classes; set num_classes >= 5 "
        f"or null (the dataset's). The data, {data}, has 5 classes and images of 1x8x8."
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("slot", ["conditioner", "decoder"])
def test_the_cli_names_the_plugin_and_component_before_training(tmp_path, misfits, no_training, slot):
    part, message = MISFITS[slot]
    data = write_npz(tmp_path / "digits.npz")
    spec = spec_file(tmp_path, {"type": "npz", "path": str(data)}, {slot: part})
    out = tmp_path / "run"
    for command in (["validate", str(spec)], ["run", str(spec), "--out", str(out), "--quiet"]):
        assert_user_error(
            CliRunner().invoke(cli, command), message, f"The data, {data}, has 5 classes and images of 1x8x8."
        )
    assert not out.exists()


class NoFactorConfig(pydantic.BaseModel):
    """A schedule whose factory forgets to return something with factor(progress)."""


class NoFactorPlugin:
    @genreg.hookimpl
    def register_components(self, register):
        register("schedule", "no-factor", lambda config, epochs: object(), NoFactorConfig)


def test_a_learning_rate_schedule_that_cannot_serve_fails_before_the_folder_is_written(tmp_path: Path) -> None:
    genreg.register_plugin(NoFactorPlugin(), "no-factor")
    try:
        spec = ["--set", 'train.lr_schedule={"type": "no-factor"}']
        out = tmp_path / "run"
        expected = ("train.lr_schedule: schedule 'no-factor'", "no factor(progress) method")
        assert_user_error(invoke("validate", EXAMPLES / "ae.json", *spec), *expected)
        assert_user_error(invoke("run", EXAMPLES / "ae.json", *spec, "--out", out, "--quiet"), *expected)
        assert not out.exists()
    finally:
        genreg.unregister_plugin("no-factor")


@pytest.mark.slow
def test_a_folder_holding_only_its_spec_trains_again_from_epoch_1_with_or_without_resume(tmp_path: Path) -> None:
    """Case 9 of issue 15: a run stopped before its first checkpoint left only spec.json, which then refused both
    a rerun (`already holds a run`) and --resume (`checkpoint.safetensors does not exist`)."""
    from genreg.training.runner import prepare

    spec = genreg.load_spec(EXAMPLES / "ae.json", ["train.epochs=1", *SMALL_RUN[1::2]])
    resolved = prepare(spec).resolved
    for name in ("rerun", "resume", "other"):
        (tmp_path / name).mkdir()
        RunFolder(tmp_path / name).write_spec(resolved)
    assert [r["epoch"] for r in genreg.run(spec, tmp_path / "rerun", progress=False).history] == [1]
    assert [r["epoch"] for r in genreg.run(spec, tmp_path / "resume", resume=True, progress=False).history] == [1]
    assert (tmp_path / "resume" / "samples.png").exists()
    other = genreg.load_spec(EXAMPLES / "ae.json", ["train.epochs=1", "seed=7", *SMALL_RUN[1::2]])
    with pytest.raises(genreg.GenregError) as caught:
        genreg.run(other, tmp_path / "other", progress=False)
    assert "holds the spec.json of a run stopped before its first epoch, and its spec differs at seed" in str(
        caught.value
    )
    assert "pass --overwrite to replace it" in str(caught.value)
    assert RunFolder(tmp_path / "other").present() == ["spec.json"]


# --------------------------------------------------------------------------- issue 16, cases 6 and 7


def test_a_picture_that_fails_is_one_error_naming_it_and_the_others_are_drawn(tmp_path, monkeypatch) -> None:
    """Case 6 of issue 16: a picture that could not be drawn ended the run in a raw TypeError, its other
    picture not drawn."""
    from genreg.errors import PictureError
    from genreg.training import runner
    from tests.helpers import TINY_PARTS

    def broken(model: object) -> None:
        raise TypeError("Invalid shape (56, 42, 16) for image data")

    monkeypatch.setattr(runner, "samples_figure", broken)
    data = genreg.DataSplits(*(genreg.Split(torch.rand(6, 1, 4, 4), torch.arange(6) % 2) for _ in range(2)), 2)
    model = genreg.build_model({"type": "cvae", **TINY_PARTS}, data.info)
    with pytest.raises(PictureError) as caught:
        runner.RunOutputs(RunFolder(tmp_path), seed=0).draw(model, data, RunFolder.PICTURES)
    assert "samples.png could not be drawn (TypeError: Invalid shape (56, 42, 16) for image data)" in str(caught.value)
    assert f"`genreg sample {tmp_path / 'model.safetensors'} -o FILE`" in str(caught.value)
    assert "train.pictures: false" in str(caught.value)
    assert [path.name for path in tmp_path.iterdir()] == ["latent.png"]


def test_a_run_without_pictures_is_finished_without_them(tmp_path: Path) -> None:
    """Case 7 of issue 16: `train.pictures: false` skips them, and the folder counts as finished."""
    spec = genreg.load_spec(spec_file(tmp_path, {"type": "npz", "path": str(write_npz(tmp_path / "d.npz"))}))
    spec.train.pictures, spec.train.device = False, "cpu"
    genreg.run(spec, tmp_path / "run", progress=False)
    folder = RunFolder(tmp_path / "run")
    assert folder.present() == ["spec.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl"]
    assert folder.missing_pictures() == [] and folder.finished(1)


# --------------------------------------------------------------------------- issue 16, case 16


@pytest.mark.slow
def test_resume_with_more_epochs_refuses_a_learning_rate_curve_that_spans_the_run(tmp_path: Path) -> None:
    """Case 16 of issue 16: resumed with more epochs, a cosine schedule restarted its curve (epoch 2 ended at
    1.6e-7, epoch 3 began at 1.5e-4); the refusal comes before anything in the run folder changes."""
    spec = spec_file(tmp_path, {"type": "npz", "path": str(write_npz(tmp_path / "digits.npz"))})
    out, cosine = tmp_path / "run", ["--set", 'train.lr_schedule={"type": "cosine"}', "--quiet"]
    run_cli("run", spec, "--out", out, "--set", "train.epochs=2", *cosine)
    before = {name: (out / name).read_bytes() for name in RunFolder(out).present()}
    result = invoke("run", spec, "--out", out, "--resume", "--set", "train.epochs=5", *cosine)
    assert_user_error(
        result,
        f"cannot resume {out} with train.epochs 5: its train.lr_schedule ('cosine') depends on the run's length",
        "at the end of epoch 2 the trained curve is at lr 0, the one for 5 epochs at 0.00065",
        f"genreg run {out / 'spec.json'} --set train.epochs=5 --out NEW_FOLDER",
    )
    assert {name: (out / name).read_bytes() for name in RunFolder(out).present()} == before
    run_cli("run", spec, "--out", out, "--resume", "--set", "train.epochs=2", *cosine)  # the same length resumes
