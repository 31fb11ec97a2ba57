"""Tests plugins/genreg_builtin/trackers.py: what TensorBoard and MLflow hold after a run, read back with
their own readers; and examples/vae_watched.json, which runs every built-in callback at once."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import genreg
from genreg.cli import cli
from genreg.files.model_files import read_metadata
from genreg.files.run_folder import RunFolder
from genreg.training.runner import prepare
from genreg_builtin import trackers
from tests.helpers import EXAMPLES

EXAMPLE = str(EXAMPLES / "vae.json")


SMALL = [
    "model.encoder.hidden=[64]",
    "model.decoder.hidden=[64]",
    "model.losses.1.schedule.epochs=1",
    "train.batch_size=1000",
]


PICTURES = ("samples", "reconstructions", "latent")


def spec_with(callbacks: list[dict], epochs: int) -> object:
    return genreg.load_spec(EXAMPLE, [*SMALL, f"train.epochs={epochs}", f"train.callbacks={json.dumps(callbacks)}"])


def mlflow_client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def only_run(uri: str, experiment: str):
    """The one MLflow run of ``experiment`` (failing if there are more)."""
    client = mlflow_client(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in mlflow_client(uri).get_metric_history(run_id, key)]


def scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = accumulator(log_dir).Scalars(tag)
    return [(e.step, e.value) for e in events]


def accumulator(log_dir: Path):
    from tensorboard.backend.event_processing import event_accumulator as ea

    reader = ea.EventAccumulator(str(log_dir), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
    reader.Reload()
    return reader


def as_float32(pairs: list[tuple[int, float]]) -> list[tuple[int, np.float32]]:
    return [(step, np.float32(value)) for step, value in pairs]


def from_metrics(folder: Path, split: str, term: str) -> list[tuple[int, float]]:
    return [(r["epoch"], r[split][term]) for r in RunFolder(folder).read_metrics()]


@dataclass
class Tracked:
    folder: Path
    uri: str


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Tracked:
    """One 2-epoch VAE run with both trackers, pictures every epoch."""
    base = tmp_path_factory.mktemp("tracked")
    uri = "file:" + str(base / "mlruns")
    callbacks = [
        {"type": "tensorboard", "images_every": 1, "samples": 4},
        {"type": "mlflow", "tracking_uri": uri, "experiment": "tests"},
    ]
    genreg.run(spec_with(callbacks, epochs=2), base / "run", progress=False)
    return Tracked(base / "run", uri)


@pytest.mark.slow
def test_tensorboard_holds_each_epochs_losses_and_pictures(tracked: Tracked) -> None:
    log_dir = tracked.folder / "tensorboard"
    for split, term in [("train", "loss"), ("train", "bce"), ("train", "kld"), ("test", "loss"), ("test", "kld")]:
        expected = from_metrics(tracked.folder, split, term)
        assert [step for step, _ in expected] == [1, 2]
        assert as_float32(scalars(log_dir, f"{split}/{term}")) == as_float32(expected)
    lrs = [(r["epoch"], r["lr"]) for r in RunFolder(tracked.folder).read_metrics()]
    assert as_float32(scalars(log_dir, "lr")) == as_float32(lrs)

    reader = accumulator(log_dir)
    assert set(PICTURES) <= set(reader.Tags()["images"])
    for tag in PICTURES:
        events = reader.Images(tag)
        assert [e.step for e in events] == [1, 2]
        pixels = [np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("L")) for e in events]
        for event, image in zip(events, pixels, strict=True):
            assert image.shape == (event.height, event.width)
            assert min(image.shape) >= 100 and image.std() > 10  # a picture, not a blank
    samples = [np.asarray(Image.open(io.BytesIO(e.encoded_image_string))) for e in reader.Images("samples")]
    assert samples[0].shape != samples[1].shape or not np.array_equal(*samples)  # the model changed in between


@pytest.mark.slow
def test_mlflow_holds_params_metrics_and_the_run_files(tracked: Tracked, tmp_path: Path) -> None:
    found = only_run(tracked.uri, "tests")
    run_id = found.info.run_id
    assert (tracked.folder / trackers.RUN_ID_FILE).read_text().strip() == run_id
    assert found.info.status == "FINISHED" and found.info.run_name == "vae"
    assert found.data.tags["genreg.folder"] == str(tracked.folder.resolve())
    for split, term in [("train", "loss"), ("train", "kld"), ("test", "bce"), ("test", "loss")]:
        assert history(tracked.uri, run_id, f"{split}/{term}") == from_metrics(tracked.folder, split, term)
    params = found.data.params
    assert params["train.lr"] == "0.001" and params["model.type"] == "vae" and params["train.epochs"] == "2"
    assert params["model.losses.0.type"] == "bce" and params["model.encoder.hidden.0"] == "64"
    assert params["train.callbacks.1.experiment"] == "tests"

    client = mlflow_client(tracked.uri)
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"samples.png", "latent.png", "model.safetensors", "spec.json"} <= names
    picture = client.download_artifacts(run_id, "samples.png", str(tmp_path))
    with Image.open(picture) as image:
        assert min(image.size) >= 100
    model = client.download_artifacts(run_id, "model.safetensors", str(tmp_path))
    assert Path(model).read_bytes() == (tracked.folder / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_resume_goes_on_in_the_same_trackers_and_overwrite_starts_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default store (./mlruns); tensorboard, added on resume, gets the earlier epoch too."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    genreg.run(spec_with([{"type": "mlflow"}], epochs=1), "run", progress=False)
    first = (tmp_path / "run" / trackers.RUN_ID_FILE).read_text().strip()
    both = [{"type": "mlflow"}, {"type": "tensorboard", "images_every": 10, "samples": 2}]
    genreg.run(spec_with(both, epochs=2), "run", resume=True, progress=False)

    uri = "file:" + str(tmp_path / "mlruns")
    found = only_run(uri, "genreg")
    assert found.info.run_id == first == (tmp_path / "run" / trackers.RUN_ID_FILE).read_text().strip()
    assert found.info.status == "FINISHED"
    assert history(uri, first, "train/loss") == from_metrics(tmp_path / "run", "train", "loss")
    assert [step for step, _ in history(uri, first, "test/kld")] == [1, 2]
    assert found.data.params["train.epochs"] == "1"  # MLflow keeps a parameter's first value
    assert found.data.params["train.callbacks.1.type"] == "tensorboard"  # a key the resumed spec added
    log_dir = tmp_path / "run" / "tensorboard"
    assert as_float32(scalars(log_dir, "test/loss")) == as_float32(from_metrics(tmp_path / "run", "test", "loss"))
    assert [e.step for e in accumulator(log_dir).Images("latent")] == [2]  # not an images epoch: at run end

    overwrite = genreg.load_spec(EXAMPLE, [*SMALL, "seed=1", "train.epochs=1", f"train.callbacks={json.dumps(both)}"])
    genreg.run(overwrite, "run", overwrite=True, progress=False)
    second = (tmp_path / "run" / trackers.RUN_ID_FILE).read_text().strip()
    assert second != first
    client = mlflow_client(uri)
    assert client.get_run(second).data.params["seed"] == "1" and client.get_run(first).data.params["seed"] == "0"
    expected = from_metrics(tmp_path / "run", "train", "loss")
    assert history(uri, second, "train/loss") == expected
    assert as_float32(scalars(log_dir, "train/loss")) == as_float32(expected)  # the old run's curve is purged


@pytest.mark.parametrize(("callback", "package"), [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_tracker_whose_package_is_missing_fails_validation(
    callback: str, package: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(trackers, "installed", lambda name: name != package)
    command = f"pip install 'genreg[{callback}]'"
    with pytest.raises(genreg.SpecError) as caught:
        spec_with([{"type": callback}], epochs=1)
    message = str(caught.value)
    assert "train.callbacks[0]" in message and command in message and f"needs the {package} package" in message

    spec = tmp_path / "spec.json"
    raw = json.loads(Path(EXAMPLE).read_text())
    spec.write_text(json.dumps({**raw, "train": {**raw["train"], "callbacks": [{"type": callback}]}}))
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 2 and command in result.output and "Traceback" not in result.output


def test_tensorboard_without_a_folder_asks_for_log_dir() -> None:
    spec = spec_with([], epochs=1)
    ready = prepare(spec)
    callback = trackers.TensorBoard(trackers.TensorBoardConfig())
    with pytest.raises(genreg.SpecError, match="set its log_dir"):
        genreg.train(ready.model, ready.data, spec.train, callbacks=[callback], progress=False)


def test_spec_flattens_to_dotted_mlflow_params() -> None:
    spec = {"name": None, "model": {"hidden": [64, 32], "losses": [{"type": "bce"}], "extra": []}, "lr": 0.5}
    assert trackers.flat_params(spec) == {
        "name": "null",
        "model.hidden.0": "64",
        "model.hidden.1": "32",
        "model.losses.0.type": "bce",
        "model.extra": "[]",
        "lr": "0.5",
    }
    long = trackers.flat_params({"path": "x" * 600})["path"]
    assert len(long) == trackers.MAX_PARAM_LENGTH and long.endswith("...")
    assert trackers.flat_params({}) == {}
    assert trackers.flat_params({"data": {"a:b/c": True}}) == {"data.a_b_c": "true"}
    record = {"epoch": 3, "train": {"loss": 1.0, "kl/2": 2.0}, "test": {"loss": 3.0, "kl/2": 4.0}, "lr": 0.1}
    assert trackers.epoch_metrics(record) == {
        "train/loss": 1.0,
        "train/kl_2": 2.0,
        "test/loss": 3.0,
        "test/kl_2": 4.0,
        "lr": 0.1,
    }


@pytest.mark.slow
def test_the_watched_example_runs_with_every_built_in_callback(tmp_path: Path, monkeypatch) -> None:
    """examples/vae_watched.json as README's "Watching training" runs it, shortened to 3 epochs."""
    monkeypatch.chdir(tmp_path)  # its MLflow store is the default ./mlruns
    spec = Path(EXAMPLE).with_name("vae_watched.json")
    result = CliRunner().invoke(cli, ["run", str(spec), "--out", "watched", "--quiet", "--set", "train.epochs=3"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "watched"
    records = RunFolder(folder).read_metrics()
    assert len(records) == 3 and records[0]["lr"] > records[-1]["lr"]  # the cosine schedule
    assert scalars(folder / "tensorboard", "test/loss") == [
        (r["epoch"], pytest.approx(r["test"]["loss"])) for r in records
    ]
    run = only_run("file:" + str(tmp_path / "mlruns"), "genreg-examples")
    assert run.info.run_id == (folder / "mlflow_run_id").read_text().strip()
    best = min(records, key=lambda r: r["test"]["loss"])
    assert json.loads(read_metadata(folder / "best.safetensors")["genreg.best"])["epoch"] == best["epoch"]
