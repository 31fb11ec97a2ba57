"""Experiment trackers as callbacks: ``tensorboard`` and ``mlflow``.

Each tracker is an optional extra (``pip install 'genreg[tensorboard]'``,
``'genreg[mlflow]'``): genreg imports without them, a spec that names one whose
package is missing fails validation with the install command, and the package is
imported only when a run starts. Both log the same numbers under the same names,
``train/loss``, ``train/<term>``, ``test/<term>`` and ``lr``, with the epoch as the
step, so a curve reads the same in either tool and in ``metrics.jsonl``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from genreg.errors import GenregError, SpecError, first_line
from genreg.files.atomic import atomic_write
from genreg.files.run_folder import RunFolder
from genreg.spec.overrides import dotted
from genreg.training.callbacks import RunView
from genreg.viz.figures import figure_pixels
from genreg.viz.latent import latent_scatter_figure
from genreg.viz.samples import reconstructions_figure, samples_figure

RUN_ID_FILE = "mlflow_run_id"  # in the run folder: the MLflow run a resumed run goes on logging to
MAX_PARAM_LENGTH = 500  # older MLflow servers refuse longer parameter values (newer ones take 6000)
PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call
UNSAFE = re.compile(r"[^\w. -]")  # what MLflow refuses in a name (on Windows), and "/", which makes a name a path


def installed(package: str) -> bool:
    """Whether ``package`` can be imported, found without importing it (importing tensorboard takes seconds)."""
    return importlib.util.find_spec(package) is not None


def require(package: str, extra: str) -> None:
    """Refuse, at validation, a tracker whose package is missing, saying how to install it."""
    if not installed(package):
        raise PydanticCustomError(
            "missing_package",
            "needs the {package} package, which is not installed: pip install 'genreg[{extra}]'",
            {"package": package, "extra": extra},
        )


def epoch_metrics(record: dict) -> dict[str, float]:
    """An epoch record's numbers under their tracker names: ``train/loss``, ``test/kld``, ..., ``lr``."""
    values = {
        f"{split}/{safe_name(name)}": float(value)
        for split in ("train", "test")
        for name, value in record[split].items()
    }
    return {**values, "lr": float(record["lr"])}


def safe_name(name: object) -> str:
    """``name`` with what MLflow cannot take in a key replaced by ``_`` (a loss term may be named anything)."""
    return UNSAFE.sub("_", str(name))


def last_epoch(run: RunView) -> int:
    """The last finished epoch, 0 before any; at run start, the epochs a resumed run's earlier part trained."""
    return run.history[-1]["epoch"] if run.history else 0


# --------------------------------------------------------------------------- TensorBoard


class TensorBoardConfig(BaseModel):
    """Log losses, learning rate, sample and reconstruction grids and the latent scatter to TensorBoard."""

    model_config = ConfigDict(extra="forbid")

    log_dir: str | None = Field(None, description="folder of the event files; default <run folder>/tensorboard")
    images_every: int = Field(
        5, ge=1, description="log the pictures every this many epochs, and after the last (each costs about a second)"
    )
    samples: int = Field(8, ge=1, le=32, description="columns of the sample and reconstruction grids")

    @model_validator(mode="after")
    def _installed(self) -> TensorBoardConfig:
        require("tensorboard", "tensorboard")
        return self


class TensorBoard:
    """Scalars every epoch, pictures every ``images_every`` epochs; the step is the epoch.

    The writer starts with ``purge_step`` at the first epoch this run trains, so
    TensorBoard hides what a crashed or overwritten run logged from there on, and
    a resumed run's curves continue without duplicates.
    """

    def __init__(self, config: TensorBoardConfig) -> None:
        self.config = config
        self.writer: Any = None
        self.pictured: int | None = None

    def on_run_start(self, run: RunView) -> None:
        from torch.utils.tensorboard import SummaryWriter

        log_dir = self.log_dir(run)
        earlier = log_dir.is_dir() and any(log_dir.glob("events.out.tfevents.*"))
        self.writer = SummaryWriter(str(log_dir), purge_step=last_epoch(run) + 1)
        self.pictured = None
        if not earlier:  # tensorboard added on resume: the run's earlier epochs first
            for record in run.history:
                self.scalars(record)

    def log_dir(self, run: RunView) -> Path:
        if self.config.log_dir is not None:
            return Path(self.config.log_dir)
        if run.folder is None:
            raise SpecError(
                "the tensorboard callback needs a folder for its event files, and this run has no run folder: "
                'set its log_dir, e.g. {"type": "tensorboard", "log_dir": "runs/tensorboard"}.'
            )
        return run.folder / "tensorboard"

    def on_epoch_end(self, run: RunView) -> None:
        record = run.record
        self.scalars(record)
        if record["epoch"] % self.config.images_every == 0:
            self.log_pictures(run, record["epoch"])
        self.writer.flush()  # so a TensorBoard watching the run shows each epoch as it ends

    def on_run_end(self, run: RunView) -> None:
        last = last_epoch(run)
        if last and self.pictured != last:
            self.log_pictures(run, last)
        self.writer.close()
        self.writer = None

    def scalars(self, record: dict) -> None:
        for tag, value in epoch_metrics(record).items():
            self.writer.add_scalar(tag, value, record["epoch"])

    def log_pictures(self, run: RunView, step: int) -> None:
        """Samples, reconstructions of test images and the test-set latent scatter, drawn as in the run folder."""
        model, test, n = run.model, run.data.test, self.config.samples
        title = f"epoch {step}: test-set latent means by class"
        with model.evaluating(), torch.no_grad():
            torch.manual_seed(run.spec.get("seed", 0))  # the same draws each time: the grids show the model change
            images = {
                "samples": figure_pixels(samples_figure(model, n=n)),
                "reconstructions": figure_pixels(reconstructions_figure(model, test, n)),
                "latent": figure_pixels(latent_scatter_figure(model, test, title)),
            }
        for tag, image in images.items():
            self.writer.add_image(tag, image, step, dataformats="HWC")
        self.pictured = step


# --------------------------------------------------------------------------- MLflow


class MLflowConfig(BaseModel):
    """Log the spec as parameters, losses per epoch, and the run's pictures and model file to MLflow."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else the file store ./mlruns"
    )
    experiment: str = Field("genreg", min_length=1, description="MLflow experiment, created if it does not exist")
    run_name: str | None = Field(None, description="MLflow run name; default the spec's name, else the run folder's")

    @model_validator(mode="after")
    def _installed(self) -> MLflowConfig:
        require("mlflow", "mlflow")
        return self


class MLflow:
    """One MLflow run per genreg run: parameters at the start, metrics every epoch, files at the end.

    Talks to MLflow through ``MlflowClient`` only (no global active run), so it
    leaves a user's own fluent ``mlflow`` session alone. The MLflow run's id is kept
    in the run folder's ``mlflow_run_id``; a resumed run goes on logging to that
    MLflow run, adding only parameters it does not hold yet, since MLflow refuses
    to change a parameter (``train.epochs`` there stays the first part's).
    """

    def __init__(self, config: MLflowConfig) -> None:
        self.config = config
        self.client: Any = None
        self.run_id: str | None = None

    def on_run_start(self, run: RunView) -> None:
        from mlflow.exceptions import MlflowException

        uri = tracking_uri(self.config)
        try:
            self.client = mlflow_client(uri)
            experiment = experiment_id(self.client, self.config.experiment, uri)
            self.run_id = self.continued(run, experiment) or self.started(run, experiment)
        except MlflowException as exc:
            raise GenregError(f"the mlflow callback cannot log to {uri}: {first_line(exc)}") from None

    def continued(self, run: RunView, experiment: str) -> str | None:
        """The id of the MLflow run that this resumed run's earlier part logged to, reopened; None if none."""
        found = recorded_run(self.client, run.folder)
        if not (last_epoch(run) and found and found.info.experiment_id == experiment):
            return None
        run_id = found.info.run_id
        self.client.update_run(run_id, status="RUNNING")
        log_params(self.client, run_id, flat_params(run.spec), skip=found.data.params)
        return run_id

    def started(self, run: RunView, experiment: str) -> str:
        """A new MLflow run with the spec's parameters (and the earlier epochs, if resumed), recorded in the folder."""
        earlier = recorded_run(self.client, run.folder)
        if earlier is not None and earlier.info.status == "RUNNING":  # a run interrupted, now overwritten
            self.client.set_terminated(earlier.info.run_id, "KILLED")
        folder = run.folder
        name = self.config.run_name or run.spec.get("name") or (folder.resolve().name if folder else None)
        tags = {"genreg.folder": str(folder.resolve())} if folder else {}
        run_id = self.client.create_run(experiment, run_name=name, tags=tags).info.run_id
        log_params(self.client, run_id, flat_params(run.spec))
        for record in run.history:
            self.log_metrics(run_id, record)
        if folder is not None:
            atomic_write(folder / RUN_ID_FILE, lambda tmp: tmp.write_text(run_id + "\n"))
        return run_id

    def on_epoch_end(self, run: RunView) -> None:
        self.log_metrics(self.run_id, run.record)

    def log_metrics(self, run_id: str, record: dict) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(key, value, stamp, record["epoch"]) for key, value in epoch_metrics(record).items()]
        self.client.log_batch(run_id, metrics=metrics)

    def on_run_end(self, run: RunView) -> None:
        """The run folder's pictures, model file and spec as artifacts; the MLflow run ends FINISHED."""
        if run.folder is not None:
            for path in RunFolder(run.folder).artifacts():
                self.client.log_artifact(self.run_id, str(path))
        if run.stop_reason is not None:
            self.client.set_tag(self.run_id, "genreg.stopped", run.stop_reason)
        self.client.set_terminated(self.run_id, "FINISHED")


def tracking_uri(config: MLflowConfig) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else MLflow's own default: the file store ./mlruns."""
    return config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "file:" + os.path.abspath("mlruns")


def mlflow_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    if urlparse(uri).scheme in ("", "file"):
        # MLflow 3 refuses a file store (./mlruns, genreg's default) unless this is set; opt in, unless the
        # environment says otherwise.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(uri)


def experiment_id(client: Any, name: str, uri: str) -> str:
    """The id of the experiment ``name``, created if it does not exist."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name)
    if found.lifecycle_stage != "active":
        raise GenregError(
            f"the mlflow callback's experiment '{name}' is deleted in {uri}; restore it "
            "(`mlflow experiments restore`) or set the callback's experiment to another name."
        )
    return found.experiment_id


def recorded_run(client: Any, folder: Path | None) -> Any:
    """The MLflow run the folder's ``mlflow_run_id`` names, if this store holds it (and it is not deleted)."""
    from mlflow.exceptions import MlflowException

    path = folder / RUN_ID_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        found = client.get_run(path.read_text().strip())
    except MlflowException:  # another store, or a run deleted for good
        return None
    return found if found.info.lifecycle_stage == "active" else None


def flat_params(spec: dict) -> dict[str, str]:
    """The spec as MLflow parameters: dotted keys, list items by index (``model.losses.0.type``), values as
    text cut to :data:`MAX_PARAM_LENGTH`."""
    params = {}
    for key, value in dotted(spec).items():
        text = value if isinstance(value, str) else json.dumps(value)
        params[safe_name(key)] = text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."
    return params


def log_params(client: Any, run_id: str, params: dict[str, str], skip: dict | None = None) -> None:
    """Log ``params`` but those in ``skip`` (already logged: MLflow refuses to log a key again with a new value)."""
    from mlflow.entities import Param

    todo = [Param(key, value) for key, value in params.items() if key not in (skip or {})]
    for start in range(0, len(todo), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=todo[start : start + PARAMS_PER_BATCH])
