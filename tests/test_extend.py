"""Unseen categories: a cVAE trained on digits 0-7 gains classes 8 and 9 without changing for 0-7.

The new embedding rows start at the mean of the known ones; fine-tuning on 8s and
9s trains those rows alone; the saved file rebuilds the grown model and records
the extension; conditioners that cannot grow, and bad CLI input, are refused
with one message (exit code 2 on the command line).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import Group
from genreg.cli.training import extend as extend_command
from genreg.errors import ExtensionError
from genreg.files.model_files import read_metadata
from genreg.model.extend import Extension, extension_of

MLP = {"type": "mlp", "hidden": [64]}
CVAE = {"type": "cvae", "latent_dim": 2, "encoder": MLP, "decoder": MLP, "conditioner": {"type": "embedding", "dim": 8}}
CPU = genreg.TrainConfig(device="cpu")


def digits(data: genreg.DataSplits, classes: list[int], num_classes: int) -> genreg.DataSplits:
    """The images of ``classes`` only, in both splits."""
    keep = torch.tensor(classes)
    train, test = (split.take(torch.isin(split.labels, keep)) for split in (data.train, data.test))
    return genreg.DataSplits(train, test, num_classes, source=f"digits {classes[0]}-{classes[-1]}")


@pytest.fixture(scope="module")
def old_digits(mnist: genreg.DataSplits) -> genreg.DataSplits:
    return digits(mnist, list(range(8)), 8)


@pytest.fixture(scope="module")
def new_digits(mnist: genreg.DataSplits) -> genreg.DataSplits:
    return digits(mnist, [8, 9], 10)


@pytest.fixture(scope="module")
def trained(old_digits: genreg.DataSplits) -> genreg.GenerativeModel:
    """A cVAE with an embedding conditioner that has seen digits 0-7 only (2 epochs)."""
    torch.manual_seed(0)
    model = genreg.build_model(CVAE, old_digits.info)
    genreg.train(model, old_digits, genreg.TrainConfig(epochs=2, batch_size=64, device="cpu"), progress=False)
    return model.eval()


@pytest.fixture
def extended(trained: genreg.GenerativeModel) -> genreg.GenerativeModel:
    return genreg.extend_classes(trained, "label", 2)


def table(model: genreg.GenerativeModel) -> torch.Tensor:
    return model.conditioner.part("label").table.weight.detach()


def snapshot(model: genreg.GenerativeModel) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_new_rows_start_at_the_mean_and_the_input_model_is_untouched(trained, extended) -> None:
    before = snapshot(trained)
    old = table(trained)
    assert table(extended).shape == (10, 8)
    assert torch.equal(table(extended)[:8], old)
    assert torch.equal(table(extended)[8:], old.mean(dim=0, keepdim=True).expand(2, -1))
    assert extended.conditioner.num_classes == 10 and extended.spec["conditioner"][0]["num_classes"] == 10
    assert extended.data_info.num_classes == 10 and extended.data_info.columns == {"label": 10, "ink": 0}
    assert extension_of(extended) == Extension("label", 8, 10, "mean", None)
    assert trained.conditioner.num_classes == 8 and trained.data_info.num_classes == 8
    assert all(torch.equal(value, before[name]) for name, value in trained.state_dict().items())


def test_old_classes_encode_and_decode_exactly_as_before(trained, extended, old_digits) -> None:
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(16) % 8
    assert torch.equal(extended.decode(z, labels), trained.decode(z, labels))
    x = old_digits.test.images[:16]
    assert torch.equal(extended.encode(x, labels), trained.encode(x, labels))
    assert extended.sample(labels=[8, 9]).shape == (2, 1, 28, 28)  # the new classes are valid conditions


def test_the_saved_file_rebuilds_ten_classes_and_records_the_extension(extended, tmp_path: Path) -> None:
    path = genreg.save_extended(extended, tmp_path / "ten.safetensors")
    again = genreg.load_model(path)
    assert again.conditioner.num_classes == 10 and again.data_info.num_classes == 10
    assert all(torch.equal(value, extended.state_dict()[name]) for name, value in again.state_dict().items())
    assert genreg.read_extension(path) == Extension("label", 8, 10, "mean", None)
    metadata = read_metadata(path)
    assert json.loads(metadata["genreg.extension"])["initialisation"] == "mean"
    assert json.loads(metadata["genreg.data"])["columns"]["label"] == 10
    plain = genreg.save_model(extended, tmp_path / "plain.safetensors")
    assert genreg.read_extension(plain) is None
    with pytest.raises(ValueError, match=r"writes genreg.spec itself"):
        genreg.save_model(extended, tmp_path / "clash.safetensors", metadata={"genreg.spec": "{}"})


def test_fine_tuning_trains_only_the_new_rows_and_fits_the_new_digits(extended, new_digits) -> None:
    before = snapshot(extended)
    torch.manual_seed(0)  # the loss draws z
    loss_before = genreg.average_losses(extended, new_digits.test, CPU)["loss"]
    history = genreg.fine_tune_classes(extended, new_digits, epochs=3, device="cpu")
    after = extended.state_dict()
    weight = "conditioner.parts.0.table.weight"
    assert torch.equal(after[weight][:8], before[weight][:8])
    assert not torch.equal(after[weight][8:], before[weight][8:])
    assert all(torch.equal(after[name], value) for name, value in before.items() if name != weight)
    assert history[-1]["test"]["loss"] < loss_before - 1  # nats per image on the 8s and 9s
    assert all(p.requires_grad for p in extended.parameters())
    tuned = extension_of(extended).fine_tuning
    assert tuned["data"] == "digits 8-9" and tuned["classes"] == [8, 9] and tuned["epochs"] == 3


def test_fine_tuning_needs_to_know_which_classes(trained, new_digits) -> None:
    with pytest.raises(ExtensionError, match=r"which classes of column 'label'.*pass classes="):
        genreg.fine_tune_classes(trained, new_digits, device="cpu")
    with pytest.raises(ExtensionError, match=r"cannot fine-tune classes \[8\].*each in 0..7"):
        genreg.fine_tune_classes(trained, new_digits, classes=[8], device="cpu")


def build(info: genreg.DataInfo, conditioner: object) -> genreg.GenerativeModel:
    return genreg.build_model({**CVAE, "conditioner": conditioner}, info)


@pytest.mark.parametrize(
    ("conditioner", "column", "count", "says"),
    [
        ({"type": "onehot"}, "label", 2, r"'label': its conditioner 'onehot' \(plugin 'builtin'\) has a fixed number"),
        ({"type": "onehot"}, "label", 2, r"feeds input layers of that fixed width.*an 'embedding' conditioner"),
        ({"type": "embedding"}, "dose", 2, r"column 'dose': no conditioner of the model reads it; .* read label\."),
        (
            [{"type": "embedding"}, {"type": "continuous", "column": "ink"}],
            "ink",
            1,
            r"column 'ink': it is continuous \(conditioner 'continuous'",
        ),
        ({"type": "embedding"}, "label", 0, r"cannot add 0 classes to column 'label': .* at least 1"),
    ],
)
def test_what_cannot_grow_is_refused_naming_the_column(old_digits, conditioner, column, count, says) -> None:
    model = build(old_digits.info, conditioner)
    with pytest.raises(ExtensionError, match=says):
        genreg.extend_classes(model, column, count)


# --------------------------------------------------------------------------- genreg extend


@pytest.fixture
def files(trained, new_digits, tmp_path: Path) -> dict[str, Path]:
    """The trained model's file and an npz of 8s and 9s to fine-tune on."""
    npz = tmp_path / "new.npz"
    split = new_digits.train
    np.savez(npz, images=split.images.numpy(), labels=split.labels.numpy())
    return {"model": genreg.save_model(trained, tmp_path / "model.safetensors"), "npz": npz}


def invoke(*args: object):
    """The command as the ``genreg`` group runs it (GenregError -> exit 2 with one message)."""
    return CliRunner().invoke(Group(name="genreg", commands=[extend_command]), ["extend", *map(str, args)])


def test_the_command_writes_the_extended_and_fine_tuned_model(files, tmp_path: Path) -> None:
    spec = {"type": "npz", "path": str(files["npz"])}
    spec_file = tmp_path / "data.json"
    spec_file.write_text(json.dumps(spec))
    out = tmp_path / "ten.safetensors"
    result = invoke(files["model"], "--add", 2, "--data", spec_file, "--epochs", 1, "--quiet", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out} (column 'label' has 10 classes: 8 known and 2 new")
    assert genreg.load_model(out).conditioner.num_classes == 10
    extension = genreg.read_extension(out)
    assert (extension.classes_before, extension.classes_after) == (8, 10)
    assert extension.fine_tuning["data"]["path"] == str(files["npz"]) and extension.fine_tuning["epochs"] == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--add", 0], "cannot add 0 classes to column 'label'"),
        (["--add", 2, "--column", "dose"], "column 'dose': no conditioner of the model reads it"),
        (["--add", 2, "--epochs", 3], "--epochs sets how long to fine-tune on --data"),
        (["--add", 2, "--data", "{not json"], "--data: not valid JSON"),
        (["--add", 2, "--data", "missing.json"], "--data missing.json: neither a JSON object nor an existing file"),
        (["--add", 2, "--data", '{"type": "npz"}'], "path: required field is missing"),
        (["--add", 2, "--data", '{"type": "npz", "path": "nowhere.npz"}'], "nowhere.npz: file not found"),
    ],
)
def test_bad_input_exits_2_with_one_message(files, tmp_path: Path, args: list, says: str) -> None:
    result = invoke(files["model"], *args, "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert result.stderr.startswith("Error: ") and says in result.stderr, result.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_the_command_refuses_to_overwrite_its_input(files) -> None:
    before = files["model"].read_bytes()
    result = invoke(files["model"].parent, "--add", 1, "-o", files["model"])  # the run folder means its model file
    assert result.exit_code == 2 and "is the model being extended" in result.stderr
    assert files["model"].read_bytes() == before
