"""Tests genreg/files/model_files.py: model files that are foreign, from another genreg or from a missing
plugin each give a ModelFileError that says which of those it is (and the CLI exits 2 without a traceback);
checkpoints hold the optimiser state as tensors and JSON, and loading never unpickles anything.

How a damaged file is told apart (truncated, corrupted) is tested in tests/files/test_tensors.py.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pydantic
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

import genreg
from genreg.cli import cli
from genreg.errors import ModelFileError
from genreg.files import model_files
from genreg.files.model_files import load_checkpoint, read_metadata, read_spec, save_checkpoint
from genreg.files.tensors import CHECKSUM, checksum
from genreg_builtin.conditioners import OneHot, OneHotConfig
from tests.helpers import MNIST_SPEC, MODEL_INFO, assert_user_error, contents, invoke, resave, small_cvae


def test_a_foreign_safetensors_file_is_named_as_not_genreg(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match=r"is a safetensors file but not a genreg one.*genreg\.load_weights"):
        genreg.load_model(path)


@pytest.mark.parametrize(
    ("fmt", "says"),
    [
        ("genreg-model/3", "has format 'genreg-model/3' (saved by genreg 9.0.0); this genreg {v} reads "
         "'genreg-model/1' or 'genreg-model/2'; upgrade genreg to load it."),
        ("genreg-model/0", "has format 'genreg-model/0' (saved by genreg 9.0.0); this genreg {v} reads "
         "'genreg-model/1' or 'genreg-model/2'; load it with the genreg version that saved it."),
        ("genreg-classifier/1", "has format 'genreg-classifier/1' (saved by genreg 9.0.0); this genreg {v} reads "
         "'genreg-model/1' or 'genreg-model/2'."),
    ],
)  # fmt: skip
def test_a_file_from_an_incompatible_genreg_names_both_versions(good_model_file, tmp_path, fmt, says):
    path = resave(good_model_file, tmp_path / "other.safetensors", **{"genreg.format": fmt, "genreg.version": "9.0.0"})
    with pytest.raises(ModelFileError) as caught:
        genreg.load_model(path)
    assert str(caught.value) == f"{path} " + says.format(v=genreg.__version__)


def test_a_model_file_is_not_a_checkpoint(good_model_file):
    model = small_cvae()
    with pytest.raises(ModelFileError, match=r"format 'genreg-model/2' .* reads 'genreg-checkpoint/1' or '[\w-]+/2'"):
        load_checkpoint(good_model_file, model, torch.optim.Adam(model.parameters()))


@pytest.mark.parametrize(
    "changes",
    [{"genreg.data": None}, {"genreg.data": "{not json"}, {"genreg.spec": "[1, 2]"}, {"genreg.spec": '{"data": {}}'}],
)
def test_damaged_genreg_metadata_is_named(good_model_file, tmp_path, changes):
    """A file that claims to be genreg's but whose records are unusable (the checksum is removed with them)."""
    path = resave(good_model_file, tmp_path / "odd.safetensors", **changes, **{CHECKSUM: None})
    with pytest.raises(ModelFileError, match=r"its genreg metadata is damaged \(\w+: .*\); it was not written by"):
        genreg.load_model(path)


# --------------------------------------------------------------------------- a component that is not installed


class Stripes:
    """A plugin with one conditioner, added and removed in this process."""

    @genreg.hookimpl
    def register_components(self, register):
        register("conditioner", "stripes", OneHot, OneHotConfig)


@pytest.fixture
def saved_with_a_plugin(tmp_path) -> Path:
    genreg.register_plugin(Stripes(), name="stripes-plugin")
    try:
        path = genreg.save_model(small_cvae(conditioner={"type": "stripes"}), tmp_path / "striped.safetensors")
        assert genreg.load_model(path).conditioner.parts[0].genreg_entry.plugin == "stripes-plugin"
    finally:
        genreg.unregister_plugin("stripes-plugin")
    return path


def test_a_component_that_is_not_installed_is_named_with_its_plugin(saved_with_a_plugin):
    assert json.loads(contents(saved_with_a_plugin)[1]["genreg.plugins"]) == {
        "builtin": f"genreg {genreg.__version__}",
        "stripes-plugin": "registered in Python",
    }
    with pytest.raises(ModelFileError) as caught:
        genreg.load_model(saved_with_a_plugin)
    message = str(caught.value)
    assert message.startswith(f"{saved_with_a_plugin}: cannot rebuild the model it describes: ")
    assert "unknown conditioner 'stripes'" in message
    assert "It was saved with plugin 'stripes-plugin' (registered in Python), which is not loaded here" in message
    assert "'builtin'" not in message.split("It was saved with")[1]


def test_the_cli_names_the_missing_component_and_exits_2(saved_with_a_plugin, tmp_path):
    result = CliRunner().invoke(cli, ["sample", str(saved_with_a_plugin), "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stderr.startswith(f"Error: {saved_with_a_plugin}: cannot rebuild the model it describes")
    assert "unknown conditioner 'stripes'" in result.stderr and "plugin 'stripes-plugin'" in result.stderr


# --------------------------------------------------------------------------- checkpoints: tensors and JSON only


def trained_pair() -> tuple[genreg.GenerativeModel, torch.optim.Optimizer]:
    model = small_cvae()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.003, betas=(0.8, 0.95), weight_decay=0.1)
    for _ in range(3):
        x, y = torch.rand(4, *MODEL_INFO.image_shape), torch.tensor([0, 1, 2, 0])
        optimizer.zero_grad()
        model.loss(x, y)[0].backward()
        optimizer.step()
    return model, optimizer


def test_a_checkpoint_restores_the_optimiser_exactly_without_pickle(tmp_path, monkeypatch):
    model, optimizer = trained_pair()
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, model, optimizer, epoch=7, spec=None)

    tensors, metadata = contents(path)
    assert {name.split(".")[0] for name in tensors} == {"model", "optim"}
    assert {name.rsplit(".", 1)[1] for name in tensors if name.startswith("optim.")} == {
        "step",
        "exp_avg",
        "exp_avg_sq",
    }
    for key, value in metadata.items():  # every non-tensor value is plain text or JSON
        if key not in ("genreg.format", "genreg.version", "genreg.epoch", CHECKSUM):
            json.loads(value)
    assert json.loads(metadata["genreg.param_groups"])[0]["betas"] == [0.8, 0.95]

    def no_unpickling(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)

    fresh = small_cvae()
    with torch.no_grad():
        for parameter in fresh.parameters():
            parameter.zero_()
    fresh_optimizer = torch.optim.AdamW(fresh.parameters())
    assert load_checkpoint(path, fresh, fresh_optimizer) == 7
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key
    want, got = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert got["param_groups"] == json.loads(json.dumps(want["param_groups"]))
    for index, state in want["state"].items():
        for key, value in state.items():
            assert torch.equal(value, got["state"][index][key]), (index, key)
    assert genreg.load_model(path).spec == model.spec  # a checkpoint also rebuilds its model
    assert read_spec(path) == {"model": model.spec}


def test_a_checkpoint_for_another_optimiser_is_a_clear_error(tmp_path):
    model, optimizer = trained_pair()
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, model, optimizer, epoch=1, spec=None)
    fresh = small_cvae()
    groups = [{"params": [p]} for p in fresh.parameters()]  # one group per tensor: not the saved layout
    refused = r"optimiser state does not fit this run's optimiser \(it has groups of \[\d+\] parameters"
    with pytest.raises(ModelFileError, match=refused):
        load_checkpoint(path, fresh, torch.optim.Adam(groups))


def test_a_damaged_checkpoint_is_refused_before_anything_is_restored(tmp_path):
    model, optimizer = trained_pair()
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, model, optimizer, epoch=2, spec=None)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))
    fresh = small_cvae()
    with torch.no_grad():
        fresh.latent.project.weight.fill_(0.5)
    with pytest.raises(ModelFileError, match=r"checkpoint\.safetensors is corrupted: its contents no longer match"):
        load_checkpoint(path, fresh, torch.optim.Adam(fresh.parameters()))
    assert bool((fresh.latent.project.weight == 0.5).all())  # nothing half-restored


class HalvingConfig(pydantic.BaseModel):
    """Halve the factor every epoch."""


class Halving:
    def __init__(self, config: HalvingConfig, *, epochs: int | None) -> None:
        self.config = config

    def factor(self, progress: float) -> float:
        return 0.5**progress


class HalvingPlugin:
    @genreg.hookimpl
    def register_components(self, register):
        register("schedule", "halving", Halving, HalvingConfig)


def test_a_plugin_schedule_of_a_loss_weight_is_recorded_with_the_plugins(tmp_path):
    """A model needs its loss weights' schedules to be rebuilt, so their plugin is named in the file too."""
    genreg.register_plugin(HalvingPlugin(), "halving")
    try:
        spec = {"type": "vae", "latent_dim": 2, "encoder": {"type": "mlp", "hidden": [4]}}
        spec |= {"decoder": {"type": "mlp", "hidden": [4]}}
        spec["losses"] = [{"type": "bce"}, {"type": "kld", "schedule": {"type": "halving"}}]
        model = genreg.build_model(spec, genreg.DataInfo((1, 4, 4), 2))
        assert model.loss_weights(2.0) == [1.0, 0.25]
        path = genreg.save_model(model, tmp_path / "m.safetensors")
        recorded = json.loads(read_metadata(path)["genreg.plugins"])
        assert set(recorded) == {"builtin", "halving"}
    finally:
        genreg.unregister_plugin("halving")


def test_the_plugins_of_what_a_run_names_besides_its_model_are_recorded(tmp_path):
    """Issue 16, case 14: the plugins of the components a run's spec names outside the model (its dataset, its
    learning-rate schedule, its callbacks) are recorded too, so that a command that needs them can name them."""
    genreg.register_plugin(HalvingPlugin(), "halving")
    try:
        model = small_cvae()
        train = {"lr_schedule": {"type": "halving"}, "callbacks": [{"type": "early-stopping"}, {"type": "gone"}]}
        path = genreg.save_model(model, tmp_path / "m.safetensors", spec={"model": model.spec, "train": train})
    finally:
        genreg.unregister_plugin("halving")
    recorded = json.loads(read_metadata(path)["genreg.plugins"])
    assert recorded == {"builtin": f"genreg {genreg.__version__}", "halving": "registered in Python"}


# --------------------------------------------------------------------------- crafted files (issue 15, cases 12 and 20)
# Each file carries a valid checksum, as anyone who edits a file can recompute it: the checks are on the contents.


def crafted(source: Path, target: Path, tensors=None, **records: object) -> Path:
    """``source`` rewritten with the safetensors library: ``records`` replace JSON metadata entries (a str is
    written as it is), ``tensors`` maps the tensors; the checksum is recomputed so that it stays valid."""
    state, metadata = contents(source)
    metadata.pop(CHECKSUM)
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in records.items()})
    state = tensors(state) if tensors else state
    save_file(state, str(target), metadata={**metadata, CHECKSUM: checksum(state, metadata)})
    return target


def recorded(source: Path, key: str) -> dict:
    return json.loads(contents(source)[1][key])


def with_model(source: Path, **fields: object) -> dict:
    spec = recorded(source, "genreg.spec")
    return {**spec, "model": {**spec["model"], **fields}}


def with_data(source: Path, **fields: object) -> dict:
    return {**recorded(source, "genreg.data"), **fields}


CRAFTED = {
    "a spec nested 100,000 levels": (
        lambda good: {"genreg.spec": "[" * 100_000 + "]" * 100_000},
        "(metadata genreg.spec): nests lists or objects too deeply (more than 100 levels).",
    ),
    "a spec nested 101 levels": (
        lambda good: {"genreg.spec": {**with_model(good), "x": json.loads("[" * 101 + "]" * 101)}},
        "(metadata genreg.spec): nests lists or objects too deeply (more than 100 levels).",
    ),
    "latent_dim 10**30": (
        lambda good: {"genreg.spec": with_model(good, latent_dim=10**30)},
        "(metadata genreg.spec): 'model.latent_dim' is an integer of 31 digits; genreg reads integers up to",
    ),
    "latent_dim 2**40": (
        lambda good: {"genreg.spec": with_model(good, latent_dim=2**40)},
        " records model.latent_dim = 1099511627776, beyond any model genreg builds (at most 2**31).",
    ),
    "image shape [1, -1, 28]": (
        lambda good: {"genreg.data": with_data(good, image_shape=[1, -1, 28])},
        ": its recorded data description (genreg.data) is invalid: image_shape.1: Input should be greater than",
    ),
    "an image of 2**40 values": (
        lambda good: {"genreg.data": with_data(good, image_shape=[1, 2**20, 2**20])},
        "is invalid: image_shape: Value error, an image of [1, 1048576, 1048576] holds over 2**31 values.",
    ),
    "2**62 classes": (
        lambda good: {"genreg.data": with_data(good, num_classes=2**62, columns={"label": 2**62})},
        "is invalid: num_classes: Input should be less than or equal to 2147483648; columns.label: Input should",
    ),
    "a number of classes that is a string": (
        lambda good: {"genreg.data": with_data(good, num_classes="3")},
        "is invalid: num_classes: Input should be a valid integer.",
    ),
    "a vocabulary that does not name the classes once each": (
        lambda good: {"genreg.data": with_data(good, vocabularies={"label": ["a", "a", "b"]})},
        "is invalid: it: Value error, the vocabulary of column 'label' does not hold its 3 classes once each.",
    ),
    "feature names for images": (
        lambda good: {"genreg.data": with_data(good, features=["a", "b"])},
        "is invalid: it: Value error, 2 feature names for samples of shape [1, 6, 6].",
    ),
    "a transform of images": (
        lambda good: {"genreg.data": with_data(good, transform=[{"step": "log1p"}])},
        "is invalid: it: Value error, transform step 'log1p' does not fit samples of shape [1, 6, 6].",
    ),
    "a standardisation of scale 0": (
        lambda good: {"genreg.data": with_data(good, transform=[{"step": "standardize", "shift": [0], "scale": [0]}])},
        "is invalid: transform.0.scale.0: Input should be greater than 0.",
    ),
    "a fitted step without its statistics": (
        lambda good: {"genreg.data": with_data(good, transform=[{"step": "minmax"}])},
        "records a shift and a scale per feature exactly when it is fitted",
    ),
    "a plugin record of a 5,000-digit integer": (  # only read to explain a missing plugin: ignored
        lambda good: {"genreg.plugins": '{"x": ' + "1" * 5000 + "}"},
        None,
    ),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_metadata_is_a_model_file_error(good_model_file, tmp_path, case):
    records, says = CRAFTED[case]
    path = crafted(good_model_file, tmp_path / "crafted.safetensors", **records(good_model_file))
    if says is None:
        genreg.load_model(path)
        return
    with pytest.raises(ModelFileError) as caught:
        genreg.load_model(path)
    assert str(caught.value).startswith(str(path)) and says in str(caught.value), str(caught.value)


def test_sizes_that_do_not_fit_the_weights_are_refused_before_anything_is_allocated(
    good_model_file, tmp_path, monkeypatch
):
    """The spec's sizes are compared with the file's tensors on PyTorch's meta device (latent_dim 2**27 would
    allocate gigabytes before the mismatch showed)."""
    built = []

    def build(*args):
        model = real(*args)
        built.append(model.latent.project.weight.device.type)
        return model

    real = model_files.build_model
    monkeypatch.setattr(model_files, "build_model", build)
    path = crafted(
        good_model_file, tmp_path / "wide.safetensors", **{"genreg.spec": with_model(good_model_file, latent_dim=3)}
    )
    with pytest.raises(
        ModelFileError,
        match=r"wide\.safetensors: weights do not fit the model: .*size mismatch for latent\.project\.weight",
    ):
        genreg.load_model(path)
    assert built == ["meta"]
    genreg.load_model(good_model_file)
    assert built == ["meta", "meta", "cpu"]


def nan_in(name: str):
    return lambda state: {**state, name: torch.full_like(state[name], float("nan"))}


def test_nan_weights_are_refused_naming_the_tensor(good_model_file, tmp_path):
    path = crafted(good_model_file, tmp_path / "nan.safetensors", tensors=nan_in("decoder.net.0.weight"))
    with pytest.raises(ModelFileError) as caught:
        genreg.load_model(path)
    assert str(caught.value).startswith(f"{path}: tensor 'decoder.net.0.weight' holds NaN or infinite values;")


def test_weights_of_another_dtype_are_refused_not_cast(good_model_file, tmp_path):
    double = {"latent.project.weight": lambda t: t.double(), "decoder.net.2.bias": lambda t: t.half()}
    for name, cast in double.items():
        path = crafted(
            good_model_file, tmp_path / "cast.safetensors", tensors=lambda s, n=name, c=cast: {**s, n: c(s[n])}
        )
        with pytest.raises(ModelFileError) as caught:
            genreg.load_model(path)
        found = "float64" if "latent" in name else "float16"
        assert str(caught.value).startswith(
            f"{path}: tensor '{name}' is {found}, but the model holds float32 there; genreg does not convert"
        )


def test_a_checkpoint_with_nan_optimiser_state_is_refused(tmp_path):
    model, optimizer = trained_pair()
    save_checkpoint(tmp_path / "good.ckpt", model, optimizer, 3, None)
    path = crafted(tmp_path / "good.ckpt", tmp_path / "nan.ckpt", tensors=nan_in("optim.0.exp_avg"))
    with pytest.raises(ModelFileError, match=r"nan\.ckpt: tensor 'optim\.0\.exp_avg' holds NaN or infinite values"):
        load_checkpoint(path, *trained_pair())


def groups_with(**changes: object):
    """genreg.param_groups with group 0's entries changed."""
    model, optimizer = trained_pair()
    groups = json.loads(json.dumps(optimizer.state_dict()["param_groups"]))
    groups[0].update(changes)
    return groups


def with_tensor(name: str, make):
    return lambda state: {**state, name: make(state.get(name, torch.zeros(())))}


CRAFTED_CHECKPOINTS = {
    "epoch abc": ({"genreg.epoch": "abc"}, None, "its metadata genreg.epoch is 'abc', but a checkpoint records"),
    "epoch -5": ({"genreg.epoch": "-5"}, None, "its metadata genreg.epoch is '-5', but a checkpoint records"),
    "groups nested": ({"genreg.param_groups": "[" * 100_000 + "]" * 100_000}, None, "nests lists or objects too"),
    "groups not a list": ({"genreg.param_groups": {"lr": 1}}, None, "are not Adam's: they are not a list of objects"),
    "lr x": ({"genreg.param_groups": groups_with(lr="x")}, None, 'are not Adam\'s: group 0 has lr "x". Adam takes'),
    "lr inf": ({"genreg.param_groups": groups_with(lr=1e999)}, None, "group 0 has lr Infinity"),
    "betas": ({"genreg.param_groups": groups_with(betas=[0.9])}, None, "group 0 has betas [0.9]"),
    "amsgrad": ({"genreg.param_groups": groups_with(amsgrad="yes")}, None, 'group 0 has amsgrad "yes"'),
    "params": ({"genreg.param_groups": groups_with(params=[0, 0, 0])}, None, "does not fit this run's optimiser"),
    "float64": ({}, with_tensor("optim.0.exp_avg", torch.Tensor.double), "tensor 'optim.0.exp_avg' is float64, bu"),
    "shape": ({}, with_tensor("optim.0.exp_avg", lambda t: t[:1]), "tensor 'optim.0.exp_avg' has shape [1"),
    "step shape": ({}, with_tensor("optim.0.step", lambda t: t.repeat(2)), "tensor 'optim.0.step' has shape [2]"),
    "step < 0": ({}, with_tensor("optim.0.step", lambda t: -t), "tensor 'optim.0.step' (Adam's step count) is"),
    "unknown": ({}, with_tensor("optim.0.extra", torch.ones_like), "tensor 'optim.0.extra' is not Adam state of"),
    "index": ({}, with_tensor("optim.99.step", torch.ones_like), "tensor 'optim.99.step' is not Adam state of"),
    "missing": ({}, lambda state: {k: v for k, v in state.items() if k != "optim.1.exp_avg_sq"}, "'optim.1.exp_"),
}


@pytest.mark.parametrize("case", CRAFTED_CHECKPOINTS, ids=list(CRAFTED_CHECKPOINTS))
def test_a_crafted_checkpoint_is_refused_naming_it_before_anything_is_restored(tmp_path, case):
    """Checkpoints re-saved with a valid checksum but crafted contents ended in ValueError, RecursionError or
    TypeError tracebacks, were accepted (epoch -5, a wrong-shape exp_avg: NaN later) or cast (float64)."""
    records, tensors, says = CRAFTED_CHECKPOINTS[case]
    model, optimizer = trained_pair()
    save_checkpoint(tmp_path / "good.ckpt", model, optimizer, 3, None)
    path = crafted(tmp_path / "good.ckpt", tmp_path / "crafted.ckpt", tensors=tensors, **records)
    fresh, fresh_optimizer = small_cvae(), torch.optim.AdamW(small_cvae().parameters())
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ModelFileError) as caught:
        load_checkpoint(path, fresh, fresh_optimizer)
    assert str(caught.value).startswith(f"{path}") and says in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)
    if records and case != "params":  # what resuming reads first (the epochs it trained) refuses it too
        with pytest.raises(ModelFileError, match=f"^{path}"):
            read_metadata(path, model_files.CHECKPOINT_FORMAT)
    assert all(torch.equal(v, before[k]) for k, v in fresh.state_dict().items())
    assert fresh_optimizer.state_dict()["state"] == {}


@pytest.mark.parametrize("command", ["sample", "latent", "eval"])
def test_the_cli_refuses_a_crafted_file_with_exit_2(tmp_path, command):
    model = small_cvae()
    run = genreg.save_model(model, tmp_path / "run.safetensors", {"model": model.spec, "data": MNIST_SPEC})
    path = crafted(run, tmp_path / "nan.safetensors", tensors=nan_in("encoder.net.0.bias"))
    args = ["-o", tmp_path / "out.png"] if command != "eval" else []
    assert_user_error(invoke(command, path, *args), "tensor 'encoder.net.0.bias' holds NaN or infinite values")
    assert not (tmp_path / "out.png").exists()


def test_classes_without_training_images_survive_the_model_file(tmp_path: Path) -> None:
    """Issue 16, case 8: `genreg sample --label 5` warns for a class the training data lacked, also once the
    model was saved and loaded (the file records which classes had no rows)."""
    from genreg.errors import PictureWarning
    from tests.helpers import invoke

    info = genreg.DataInfo((1, 4, 4), 6, absent={"label": [5]})
    spec = {
        "type": "cvae",
        "latent_dim": 2,
        "encoder": {"type": "mlp", "hidden": [8]},
        "decoder": {"type": "mlp", "hidden": [8]},
    }
    path = genreg.save_model(genreg.build_model(spec, info), tmp_path / "m.safetensors")
    assert genreg.load_model(path).data_info.absent == {"label": [5]}
    with pytest.warns(PictureWarning, match=r"class\(es\) 5 of column 'label' had no training images"):
        result = invoke("sample", path, "--label", 5, "-o", tmp_path / "five.png")
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_model_path_that_is_a_pipe_or_a_device_is_refused_by_its_kind(tmp_path: Path) -> None:
    """Found by the hostile-user tryout: a FIFO or /dev/zero given as a model file was opened and read."""
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match=r"is a named pipe \(FIFO\), not a model file"):
        genreg.load_model(fifo)  # would block forever, reading a pipe no one writes
    if Path("/dev/zero").exists():
        with pytest.raises(ModelFileError, match=r"/dev/zero is a character device, not a model file"):
            genreg.load_model("/dev/zero")
