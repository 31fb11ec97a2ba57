"""Helpers used by test files of more than one room; fixtures shared by several files are in conftest.py.

Each section names the files that use it.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata as metadata
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import genreg
from genreg.cli import cli
from genreg.errors import SpecError
from genreg.evaluation import classifier as clf
from genreg.plugin.protocols import LatentSample
from genreg.spec import validate_spec
from genreg_builtin.conditioners import OneHot, OneHotConfig
from genreg_builtin.conv import ConvDecoder, ConvDecoderConfig, ConvEncoder, ConvEncoderConfig
from genreg_builtin.latents import GaussianConfig, GaussianLatent
from genreg_builtin.mlp import MLPDecoder, MLPDecoderConfig, MLPEncoder, MLPEncoderConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# --------------------------------------------------------------------------- markers

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
posix_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and POSIX signals")


def _example_plugin_version() -> str | None:
    try:
        return metadata.version("genreg-example-plugin")
    except metadata.PackageNotFoundError:
        return None


#: The installed version of examples/plugin (None where it is not installed).
EXAMPLE_VERSION = _example_plugin_version()
if EXAMPLE_VERSION is None:
    _EXAMPLE_MISSING = "the example plugin is not installed: pip install -e examples/plugin"
elif "example" not in os.environ.get("GENREG_PLUGINS", "example").split(","):
    _EXAMPLE_MISSING = "GENREG_PLUGINS excludes the example plugin"
else:
    _EXAMPLE_MISSING = ""
needs_example_plugin = pytest.mark.skipif(bool(_EXAMPLE_MISSING), reason=_EXAMPLE_MISSING)

# --------------------------------------------------------------------------- the command line (tests/cli and others)


def invoke(*args: object) -> Result:
    """``genreg ARGS`` in this process, through the click group (the plugins this process discovered).

    A user error exits with code 2 (a ``SystemExit``); any other exception is raised, as a bug.
    """
    result = CliRunner().invoke(cli, [str(arg) for arg in args], prog_name="genreg")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_cli(*args: object) -> str:
    """``genreg ARGS``, which must succeed; its output."""
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit code 2, one ``Error: ...`` message on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def read_only_folder(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder`` look like a read-only file system to genreg's write probe (``tempfile.TemporaryFile`` in
    it raises EROFS), as it is for a run on a read-only mount; other folders stay writable."""
    probe = tempfile.TemporaryFile

    def read_only(*args: Any, dir: Any = None, **kwargs: Any) -> Any:  # noqa: A002 (tempfile's own name)
        if Path(dir) == folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return probe(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)


# --------------------------------------------------------------------------- data and small runs

MNIST_SPEC = {"type": "mnist-sample", "binarize": "none"}


@dataclass
class Trained:
    """The session's reference classifier (the ``trained`` fixture) and what it was trained on."""

    cache: Path
    data: genreg.DataSplits
    model: clf.ReferenceCNN
    accuracy: float


def small_data(n_train: int = 600) -> genreg.DataSplits:
    """mnist-sample with its first ``n_train`` training images (the default, 600, is not a multiple of a batch
    of 64, so the last batch is short) and its whole test split (tests/training, tests/files)."""
    data = genreg.load_data({"type": "mnist-sample"})
    train = genreg.Split(data.train.images[:n_train], data.train.labels[:n_train])
    return genreg.DataSplits(train, data.test, data.num_classes, data.binarize)


def trained_briefly(spec: dict, data: genreg.DataSplits) -> genreg.GenerativeModel:
    """The model of ``spec``, seeded, trained for 2 epochs in batches of 64 on the CPU, in eval mode."""
    torch.manual_seed(0)
    model = genreg.build_model(spec, data.info)
    genreg.train(model, data, genreg.TrainConfig(epochs=2, batch_size=64, device="cpu"), progress=False)
    return model.eval()


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Tiny networks on one CPU thread: on a busy 2-core machine two threads wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


#: ``--set`` options for a quick run of examples/vae.json (tests/files, tests/training).
SMALL_RUN = [
    "--set",
    "model.encoder.hidden=[32]",
    "--set",
    "model.decoder.hidden=[32]",
    "--set",
    "train.batch_size=500",
]


def ae_with_callbacks(epochs: int, callbacks: list[dict]) -> object:
    """examples/ae.json, small, for ``epochs`` with ``callbacks`` (tests/builtin and tests/training test_callbacks)."""
    small = ["model.encoder.hidden=[32]", "model.decoder.hidden=[32]", "train.batch_size=1000"]
    return genreg.load_spec(
        EXAMPLES / "ae.json", [f"train.epochs={epochs}", *small, f"train.callbacks={json.dumps(callbacks)}"]
    )


#: A cVAE conditioned on the class label and the ink of a digit (conftest's ``ink_run``, tests/builtin).
INK_CVAE = {
    "type": "cvae",
    "latent_dim": 2,
    "encoder": {"type": "mlp", "hidden": [64]},
    "decoder": {"type": "mlp", "hidden": [64]},
    "conditioner": [{"type": "onehot"}, {"type": "continuous", "column": "ink", "hidden": 8}],
}

#: A cVAE with an embedding conditioner, which can gain classes (tests/model/test_extend.py, tests/cli).
EMBEDDING_CVAE = {
    "type": "cvae",
    "latent_dim": 2,
    "encoder": {"type": "mlp", "hidden": [64]},
    "decoder": {"type": "mlp", "hidden": [64]},
    "conditioner": {"type": "embedding", "dim": 8},
}

# --------------------------------------------------------------------------- encoders and decoders (tests/builtin)

SHAPES = [(1, 28, 28), (3, 32, 32), (1, 27, 30)]
COND_DIM = 10


def make_encoder(kind: str, shape: tuple[int, int, int], condition_dim: int) -> nn.Module:
    if kind == "mlp":
        return MLPEncoder(MLPEncoderConfig(hidden=[32, 24]), input_shape=shape, condition_dim=condition_dim)
    return ConvEncoder(ConvEncoderConfig(channels=[8, 16], features=24), input_shape=shape, condition_dim=condition_dim)


def make_decoder(kind: str, shape: tuple[int, int, int], condition_dim: int, latent_dim: int = 5) -> nn.Module:
    if kind == "mlp":
        config = MLPDecoderConfig(hidden=[24, 32])
        return MLPDecoder(config, latent_dim=latent_dim, condition_dim=condition_dim, output_shape=shape)
    config = ConvDecoderConfig(channels=[16, 8])
    return ConvDecoder(config, latent_dim=latent_dim, condition_dim=condition_dim, output_shape=shape)


def onehot(labels: list[int], k: int = COND_DIM) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(labels), k).float()


def encoder_and_decoder_tests(kind: str) -> tuple[object, ...]:
    """The tests every built-in encoder and decoder pass, for the parts of ``kind``; its test module names them.

    The features are (batch, out_features) and the logits exactly the data's shape, odd sides included, for
    any image size; the output depends on the condition.
    """

    @pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
    @pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
    def test_encoder_and_decoder_shapes(shape: tuple[int, int, int], conditional: bool) -> None:
        torch.manual_seed(0)
        cond_dim = COND_DIM if conditional else 0
        condition = onehot([1, 4, 9]) if conditional else None
        encoder = make_encoder(kind, shape, cond_dim)
        decoder = make_decoder(kind, shape, cond_dim)

        features = encoder(torch.rand(3, *shape), condition)
        assert features.shape == (3, encoder.out_features) == (3, 24)
        logits = decoder(torch.randn(3, 5), condition)
        assert logits.shape == (3, *shape)  # exactly the data shape, odd sides included
        assert torch.isfinite(logits).all()

    def test_encoder_output_depends_on_condition() -> None:
        torch.manual_seed(1)
        shape = (1, 27, 30)
        encoder = make_encoder(kind, shape, COND_DIM)
        x = torch.rand(1, *shape).expand(4, -1, -1, -1)  # the same image four times
        features = encoder(x, onehot([0, 1, 7, 7]))
        assert not torch.allclose(features[0], features[1])
        assert not torch.allclose(features[1], features[2])
        torch.testing.assert_close(features[2], features[3])  # same image, same label: same features

    def test_decoder_output_depends_on_condition() -> None:
        torch.manual_seed(2)
        decoder = make_decoder(kind, (1, 27, 30), COND_DIM)
        z = torch.randn(1, 5).expand(4, -1)
        logits = decoder(z, onehot([0, 1, 7, 7]))
        assert not torch.allclose(logits[0], logits[1])
        assert not torch.allclose(logits[1], logits[2])
        torch.testing.assert_close(logits[2], logits[3])

    return (
        test_encoder_and_decoder_shapes,
        test_encoder_output_depends_on_condition,
        test_decoder_output_depends_on_condition,
    )


# --------------------------------------------------------------------------- where the condition enters
# (tests/builtin/test_mlp.py, tests/model/test_assembly.py)

INJECTION_INFO = genreg.DataInfo((1, 12, 12), 10)
INJECTION_PARTS = {
    "mlp": ({"type": "mlp", "hidden": [16, 8]}, {"type": "mlp", "hidden": [8, 16]}),
    "conv": ({"type": "conv", "channels": [4, 8], "features": 16}, {"type": "conv", "channels": [8, 4]}),
}


def injection_cvae(kind: str, mode: str | None = None, **fields: object) -> genreg.GenerativeModel:
    """A cVAE of ``kind`` parts on 12x12 images, with the condition entering as ``mode`` says."""
    encoder, decoder = INJECTION_PARTS[kind]
    if mode is not None:
        encoder, decoder = {**encoder, "condition": mode}, {**decoder, "condition": mode}
    torch.manual_seed(0)
    spec = {"type": "cvae", "latent_dim": 3, "encoder": encoder, "decoder": decoder, **fields}
    return genreg.build_model(spec, INJECTION_INFO)


def part_outputs(model: genreg.GenerativeModel, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's features and the decoder's logits for fixed x and z under ``label``."""
    torch.manual_seed(1)
    x, z = torch.rand(2, *INJECTION_INFO.image_shape), torch.randn(2, 3)
    c = model.condition(torch.full((2,), label))
    with torch.no_grad():
        features = model.encoder(x, c if model.condition_encoder else None)
        return features, model.decoder(z, c)


# --------------------------------------------------------------------------- npz files of digits
# (tests/data/test_checks.py, tests/training/test_runner.py)

N = 40
#: The parts of a tiny model: the npz specs here, the misfits' tests, the model files of tests/files.
TINY_PARTS = {"latent_dim": 2, "encoder": {"type": "mlp", "hidden": [8]}, "decoder": {"type": "mlp", "hidden": [8]}}


def good_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"images": rng.integers(0, 256, (N, 8, 8), dtype=np.uint8), "labels": np.arange(N) % 5}


def write_npz(path: Path, **changes: np.ndarray) -> Path:
    np.savez(path, **{**good_arrays(), **changes})
    return path


def spec_file(tmp_path: Path, data: dict, model: dict | None = None) -> Path:
    path = tmp_path / "spec.json"
    spec = {"model": {"type": "cvae", **TINY_PARTS, **(model or {})}, "data": data, "train": {"epochs": 1}}
    path.write_text(json.dumps(spec))
    return path


# --------------------------------------------------------------------------- a plugin whose parts misfit
# (conftest's ``misfits``; tests/model/test_generative.py, tests/training/test_runner.py)


class WideConditioner(OneHot):
    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([super().forward(labels), torch.zeros(len(labels), 1)], dim=1)


class ShortEncoder(MLPEncoder):
    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return super().forward(x, condition)[:, :-1]


class NarrowLatent(GaussianLatent):
    def forward(self, features: torch.Tensor) -> LatentSample:
        sample = super().forward(features)
        return LatentSample(sample.z[:, :-1], sample.params)


class CroppedDecoder(MLPDecoder):
    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return super().forward(z, condition)[..., :-1]


class Misfits:
    """A third-party plugin whose parts each return one column too few or too many."""

    @genreg.hookimpl
    def register_components(self, register):
        register("conditioner", "wide", WideConditioner, OneHotConfig)
        register("encoder", "short", ShortEncoder, MLPEncoderConfig)
        register("latent", "narrow", NarrowLatent, GaussianConfig)
        register("decoder", "cropped", CroppedDecoder, MLPDecoderConfig)


MISFITS = {
    "conditioner": ({"type": "wide"}, "conditioner 'wide' (plugin 'misfits') returned condition of shape (2, 6); "
                    "expected (2, 5)."),
    "encoder": ({"type": "short", "hidden": [8]}, "encoder 'short' (plugin 'misfits') returned features of shape "
                "(2, 7); expected (2, 8)."),
    "latent": ({"type": "narrow"}, "latent 'narrow' (plugin 'misfits') returned z of shape (2, 1); expected (2, 2)."),
    "decoder": ({"type": "cropped", "hidden": [8]}, "decoder 'cropped' (plugin 'misfits') returned logits of shape "
                "(2, 1, 8, 7); expected (2, 1, 8, 8)."),
}  # fmt: skip

# --------------------------------------------------------------------------- model files
# (tests/files/test_model_files.py, tests/files/test_tensors.py, conftest's ``good_model_file``)

MODEL_INFO = genreg.DataInfo((1, 6, 6), 3)


def small_cvae(**parts: dict) -> genreg.GenerativeModel:
    torch.manual_seed(0)
    return genreg.build_model({"type": "cvae", **TINY_PARTS, **parts}, MODEL_INFO)


def contents(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()  # noqa: SIM118


def resave(source: Path, target: Path, **changes: str | None) -> Path:
    """``source``'s tensors with its metadata changed (None removes a key), written as a new file."""
    tensors, metadata = contents(source)
    metadata.update(changes)
    save_file(tensors, str(target), metadata={k: v for k, v in metadata.items() if v is not None})
    return target


# --------------------------------------------------------------------------- specs (tests/spec)


def problems(raw) -> str:
    with pytest.raises(SpecError) as info:
        validate_spec(raw)
    return str(info.value)


def full_spec() -> dict:
    return {
        "model": {"type": "cvae", "losses": [{"type": "bce"}, {"type": "kld"}]},
        "data": {"type": "mnist-sample"},
        "train": {"epochs": 5},
    }


# Fuzzing (tests/spec/test_validate.py, tests/spec/test_overrides.py): arbitrary JSON, near-valid specs,
# ``--set`` overrides and raw file bytes. Every case must end in a valid spec (which then validates again to
# itself) or in a SpecError whose message has one ``path: problem`` line per problem; any other exception is
# a bug.

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Valid specs to mutate: every recipe, every built-in part and the optional fields.
VALID = [
    {"model": {"type": "cvae"}, "data": {"type": "mnist-sample"}},
    {
        "name": "conv-ae",
        "seed": 3,
        "model": {
            "type": "ae",
            "latent_dim": 4,
            "encoder": {"type": "conv", "channels": [8, 16]},
            "decoder": {"type": "conv", "channels": [16, 8]},
            "losses": [{"type": "mse", "weight": 2.0}],
        },
        "data": {"type": "npz", "path": "digits.npz", "test_path": "test.npz", "binarize": "threshold"},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "optimizer": "adamw", "grad_clip": 1.0},
    },
    {
        "model": {
            "type": "custom",
            "latent_dim": 2,
            "encoder": {"type": "mlp", "hidden": [32]},
            "latent": {"type": "gaussian"},
            "decoder": {"type": "mlp", "hidden": [32]},
            "conditioner": {"type": "embedding", "dim": 4, "num_classes": 12},
            "losses": [{"type": "bce"}, {"type": "kld", "name": "kl", "schedule": {"type": "linear", "epochs": 5}}],
        },
        "data": {"type": "mnist", "root": "data", "download": False, "binarize": "dynamic"},
    },
]
VALID = [validate_spec(raw).model_dump(mode="json") for raw in VALID]  # every default filled in


def keys_and_words(value: object) -> set[str]:
    """Every key and string in ``value``: the vocabulary near-valid specs are made from."""
    if isinstance(value, dict):
        return set(value) | {w for item in value.values() for w in keys_and_words(item)}
    if isinstance(value, list):
        return {w for item in value for w in keys_and_words(item)}
    return {value} if isinstance(value, str) else set()


WORDS = sorted(set().union(*map(keys_and_words, VALID)) | {"type", "vae", "onehot", "deterministic"})
NASTY = [None, True, 0, -1, 1.5, -1e-9, 2**31, 2**64, 10**40, -(10**40), float("nan"), float("inf"), "", "x", [], {}]

keys = st.sampled_from(WORDS) | st.text(max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(WORDS)
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=25
)


def validates_or_explains(raw: object) -> None:
    """The property: a valid spec that round-trips, or a SpecError with one ``path: problem`` line per problem."""
    try:
        spec = validate_spec(raw)
    except SpecError as exc:
        head, *lines = str(exc).split("\n")
        assert head.startswith("spec is invalid (") and head.endswith(
            f"({len(lines)} problem{'s' * (len(lines) > 1)}):"
        )
        assert lines and all(line.startswith("  ") and ": " in line for line in lines), str(exc)
        return
    dumped = spec.model_dump(mode="json")
    again = validate_spec(json.loads(json.dumps(dumped))).model_dump(mode="json")
    assert json.dumps(again, sort_keys=True) == json.dumps(dumped, sort_keys=True)


def json_paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every path into ``value`` (dict keys and list indices), the root excluded."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    return [p for key, item in items for p in [(*prefix, key), *json_paths(item, (*prefix, key))]]


# --------------------------------------------------------------------------- the example plugin
# (tests/plugin, tests/examples/test_plugin.py, tests/cli, tests/spec/test_validate.py)

EXAMPLE_SPEC = EXAMPLES / "plugin" / "cvae_thermometer.json"
CVAE_SPEC = EXAMPLES / "cvae.json"


def fresh_env(pythonpath: Path | None = None, plugins: str | None = None) -> dict[str, str]:
    """This environment, with only the plugin-related variables we choose."""
    env = {k: v for k, v in os.environ.items() if k not in ("GENREG_PLUGINS", "PYTHONPATH")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), os.environ.get("PYTHONPATH")]))
    elif "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if plugins is not None:
        env["GENREG_PLUGINS"] = plugins
    return env


def thermometer_cvae(conditioner: dict | None = None) -> genreg.GenerativeModel:
    """A small cVAE on 28x28 digits with the thermometer conditioner (fast to build and run)."""
    spec = genreg.load_spec(
        EXAMPLE_SPEC, ["model.latent_dim=4", "model.encoder.hidden=[32]", "model.decoder.hidden=[32]"]
    )
    model_spec = spec.model.model_dump(mode="json")
    if conditioner is not None:
        model_spec["conditioner"] = conditioner
    return genreg.build_model(model_spec, genreg.DataInfo((1, 28, 28), 10))


# --------------------------------------------------------------------------- CUDA (tests/training)

CUDA_AE = {
    "type": "ae",
    "latent_dim": 4,
    "encoder": {"type": "mlp", "hidden": [32]},
    "decoder": {"type": "mlp", "hidden": [32]},
}


def trained_on_cuda(
    spec: dict, data: genreg.DataSplits, epochs: int = 2, **train
) -> tuple[genreg.GenerativeModel, list]:
    torch.manual_seed(0)
    model = genreg.build_model(spec, data.info)
    config = genreg.TrainConfig(epochs=epochs, batch_size=64, device="cuda", **train)
    history = genreg.train(model, data, config, seed=0, progress=False).history
    return model, history


# --------------------------------------------------------------------------- crafted npz members
# (tests/builtin/test_datasets.py, tests/fuzz/test_npz.py)


def npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    """A valid ``.npy`` (version 1.0) header claiming an array of ``shape`` and dtype ``descr``, no data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype.hasobject)
    return buffer.getvalue()


def zip_npz(path: Path, members: dict[str, bytes]) -> Path:
    """A ``.npz`` (a zip archive) holding ``members`` as they are: member names and bytes, crafted or not."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


# --------------------------------------------------------------------------- the fuzzing harness (tests/fuzz)
# Reproducible in CI: the same examples every run. The quick loop tries a few, the slow suite many.

#: Examples per target, for ``@pytest.mark.parametrize("examples", FUZZ_EXAMPLES)``.
FUZZ_EXAMPLES = [50, pytest.param(1000, marks=pytest.mark.slow, id="1000")]


def fuzz(examples: int, strategy: st.SearchStrategy, check: Callable[[Any], None]) -> None:
    """Call ``check`` on ``examples`` values drawn from ``strategy``, the same ones every run."""
    fuzz_settings = settings(
        max_examples=examples, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    fuzz_settings(given(strategy)(check))()
