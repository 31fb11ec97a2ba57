"""Fixtures shared by the test files: spec files written to a temporary folder, the bundled digits, the
reference classifier, and models and runs used by more than one file, most of them trained once per session.

Helper functions shared by several files are in tests/helpers.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import genreg
from genreg.evaluation import classifier as clf
from genreg.evaluation.evaluate import evaluate_model
from genreg.training import precision, runner
from tests.helpers import (
    EMBEDDING_CVAE,
    EXAMPLES,
    INK_CVAE,
    MNIST_SPEC,
    Misfits,
    Trained,
    invoke,
    single_thread,
    small_cvae,
    trained_briefly,
)


@pytest.fixture
def minimal_spec() -> dict:
    """The smallest spec that validates: every other field takes its default."""
    return {"model": {"type": "cvae"}, "data": {"type": "mnist-sample"}}


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., Path]:
    """``write_file(content, name)``: a dict/list is written as JSON, str as text, bytes as-is."""

    def write(content: object, name: str = "spec.json") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(json.dumps(content, indent=2))
        return path

    return write


@pytest.fixture(scope="session")
def mnist() -> genreg.DataSplits:
    return genreg.load_data(MNIST_SPEC)


@pytest.fixture(scope="session")
def trained(mnist: genreg.DataSplits, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """The full mnist-sample classifier, trained once per session into its own cache folder."""
    cache = tmp_path_factory.mktemp("genreg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENREG_CACHE", str(cache))
        model, accuracy = clf.reference_classifier(MNIST_SPEC, mnist)
    yield Trained(cache, mnist, model, accuracy)


@pytest.fixture
def cpu_has(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Make this CPU report the given capabilities (names as torch's cpuinfo gives them: ``avx512_bf16=True``),
    asked afresh, so that either branch of ``precision: auto`` runs on any CPU (genreg/training/precision.py)."""

    def report(**capabilities: bool) -> None:
        monkeypatch.setattr(precision, "_cpu_capabilities", lambda: capabilities)
        precision.cpu_bf16_instructions.cache_clear()

    yield report
    precision.cpu_bf16_instructions.cache_clear()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Train on one CPU thread: on a busy 2-core machine two threads wait on each other (15x slower measured)."""
    with single_thread():
        yield


@pytest.fixture(scope="module")
def module_on_one_thread() -> Iterator[None]:
    """A module of tiny networks on one intra-op thread: ~50x faster than two on a busy 2-core machine."""
    with single_thread():
        yield


# --------------------------------------------------------------------------- before any training


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any training step a test failure: the errors under test must come first."""

    def train(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(runner, "train", train)


@pytest.fixture(scope="module")
def misfits() -> Iterator[None]:
    """The plugin of tests.helpers.Misfits, registered for one test module."""
    genreg.register_plugin(Misfits(), name="misfits")
    yield
    genreg.unregister_plugin("misfits")


# --------------------------------------------------------------------------- models


@pytest.fixture(scope="session")
def conv_cvae() -> genreg.GenerativeModel:
    """An untrained cVAE whose recipe parts are swapped by name: conv encoder and decoder, an embedding."""
    torch.manual_seed(6)
    spec = {
        "type": "cvae",
        "latent_dim": 4,
        "encoder": {"type": "conv", "channels": [8, 16], "features": 32},
        "decoder": {"type": "conv", "channels": [16, 8]},
        "conditioner": {"type": "embedding", "dim": 6},
    }
    return genreg.build_model(spec, genreg.DataInfo((1, 28, 28), 10)).eval()


@pytest.fixture(scope="session")
def good_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model file of tests.helpers.small_cvae(), as genreg writes it."""
    return genreg.save_model(small_cvae(), tmp_path_factory.mktemp("good") / "model.safetensors")


@pytest.fixture
def ink_only() -> genreg.GenerativeModel:
    """Conditioned on the ink alone, untrained, on 8x8 images: what matters is which conditions pictures ask for."""
    spec = {**INK_CVAE, "conditioner": {"type": "continuous", "column": "ink"}}
    return genreg.build_model(spec, genreg.DataInfo((1, 8, 8), 3, {"ink": 0})).eval()


# --------------------------------------------------------------------------- a model that gains classes


def only_classes(data: genreg.DataSplits, classes: list[int], num_classes: int) -> genreg.DataSplits:
    """The images of ``classes`` only, in both splits."""
    keep = torch.tensor(classes)
    train, test = (split.take(torch.isin(split.labels, keep)) for split in (data.train, data.test))
    return genreg.DataSplits(train, test, num_classes, source=f"digits {classes[0]}-{classes[-1]}")


@pytest.fixture(scope="session")
def old_digits(mnist: genreg.DataSplits) -> genreg.DataSplits:
    return only_classes(mnist, list(range(8)), 8)


@pytest.fixture(scope="session")
def new_digits(mnist: genreg.DataSplits) -> genreg.DataSplits:
    return only_classes(mnist, [8, 9], 10)


@pytest.fixture(scope="session")
def eight_class_cvae(old_digits: genreg.DataSplits) -> genreg.GenerativeModel:
    """A cVAE with an embedding conditioner that has seen digits 0-7 only (2 epochs)."""
    return trained_briefly(EMBEDDING_CVAE, old_digits)


# --------------------------------------------------------------------------- a small VAE and AE on binarised digits
# (the likelihood tests of tests/evaluation/test_metrics.py, and test_evaluate.py and test_report.py)

SMALL_NET = {"encoder": {"type": "mlp", "hidden": [64]}, "decoder": {"type": "mlp", "hidden": [64]}}


@pytest.fixture(scope="session")
def digits() -> genreg.DataSplits:
    """1,000 training and 200 test digits, binarised once so the Bernoulli likelihood is a true likelihood.

    The bundled splits are sorted by class: every 4th / 5th image keeps all ten classes, balanced.
    """
    data = genreg.load_data({"type": "mnist-sample", "binarize": "threshold"})
    train = genreg.Split(data.train.images[::4].contiguous(), data.train.labels[::4].contiguous())
    test = genreg.Split(data.test.images[::5].contiguous(), data.test.labels[::5].contiguous())
    return genreg.DataSplits(train, test, data.num_classes, data.binarize)


def trained_on_digits(kind: str, data: genreg.DataSplits, epochs: int) -> genreg.GenerativeModel:
    torch.manual_seed(0)
    model = genreg.build_model({"type": kind, "latent_dim": 4, **SMALL_NET}, data.info)
    config = genreg.TrainConfig(epochs=epochs, batch_size=50, lr=3e-3, device="cpu")
    with single_thread():
        genreg.train(model, data, config, progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def digits_vae(digits: genreg.DataSplits) -> genreg.GenerativeModel:
    return trained_on_digits("vae", digits, epochs=10)


@pytest.fixture(scope="session")
def digits_ae(digits: genreg.DataSplits) -> genreg.GenerativeModel:
    return trained_on_digits("ae", digits, epochs=5)


@pytest.fixture(scope="session")
def evaluations(
    digits_ae: genreg.GenerativeModel, digits_vae: genreg.GenerativeModel, digits: genreg.DataSplits
) -> dict[str, dict]:
    """``evaluate_model`` of the AE and the VAE, by name."""
    with single_thread():
        return {
            "ae": evaluate_model(digits_ae, digits, data_spec=None, iw_samples=20),
            "vae": evaluate_model(digits_vae, digits, data_spec=None, iw_samples=20),
        }


# --------------------------------------------------------------------------- run folders, for the command line


@pytest.fixture(scope="session")
def ink_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of the label + ink cVAE (tests.helpers.INK_CVAE), for the CLI to read: model file and data."""
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


@pytest.fixture(scope="session")
def ink_model(ink_run: Path) -> genreg.GenerativeModel:
    return genreg.load_model(ink_run)


@pytest.fixture(scope="session")
def study_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Short runs of the latent study's AE and VAE (examples/latent_study), by name."""
    folder = tmp_path_factory.mktemp("study")
    tiny = ["--set", "train.epochs=2", "--set", "model.encoder.hidden=[64]", "--set", "model.decoder.hidden=[64]"]
    out = {}
    for name in ("ae", "vae"):
        out[name] = folder / name
        result = invoke("run", EXAMPLES / "latent_study" / f"{name}.json", "--out", out[name], "--quiet", *tiny)
        assert result.exit_code == 0, result.output
    return out
