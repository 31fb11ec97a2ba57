"""Tests genreg/model/extend.py, unseen categories: a cVAE trained on digits 0-7 gains classes 8 and 9
without changing for 0-7.

The new embedding rows start at the mean of the known ones; fine-tuning on 8s and
9s trains those rows alone; the saved file rebuilds the grown model and records
the extension; conditioners that cannot grow are refused with one message.
``genreg extend`` is tested in tests/cli/test_training.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import genreg
from genreg.errors import ExtensionError
from genreg.files.model_files import read_metadata
from genreg.model.extend import Extension, extension_of
from tests.helpers import EMBEDDING_CVAE

CPU = genreg.TrainConfig(device="cpu")


@pytest.fixture
def extended(eight_class_cvae: genreg.GenerativeModel) -> genreg.GenerativeModel:
    return genreg.extend_classes(eight_class_cvae, "label", 2)


def table(model: genreg.GenerativeModel) -> torch.Tensor:
    return model.conditioner.part("label").table.weight.detach()


def snapshot(model: genreg.GenerativeModel) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_new_rows_start_at_the_mean_and_the_input_model_is_untouched(eight_class_cvae, extended) -> None:
    before = snapshot(eight_class_cvae)
    old = table(eight_class_cvae)
    assert table(extended).shape == (10, 8)
    assert torch.equal(table(extended)[:8], old)
    assert torch.equal(table(extended)[8:], old.mean(dim=0, keepdim=True).expand(2, -1))
    assert extended.conditioner.num_classes == 10 and extended.spec["conditioner"][0]["num_classes"] == 10
    assert extended.data_info.num_classes == 10 and extended.data_info.columns == {"label": 10, "ink": 0}
    assert extension_of(extended) == Extension("label", 8, 10, "mean", None)
    assert eight_class_cvae.conditioner.num_classes == 8 and eight_class_cvae.data_info.num_classes == 8
    assert all(torch.equal(value, before[name]) for name, value in eight_class_cvae.state_dict().items())


def test_old_classes_encode_and_decode_exactly_as_before(eight_class_cvae, extended, old_digits) -> None:
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(16) % 8
    assert torch.equal(extended.decode(z, labels), eight_class_cvae.decode(z, labels))
    x = old_digits.test.images[:16]
    assert torch.equal(extended.encode(x, labels), eight_class_cvae.encode(x, labels))
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


def test_fine_tuning_needs_to_know_which_classes(eight_class_cvae, new_digits) -> None:
    with pytest.raises(ExtensionError, match=r"which classes of column 'label'.*pass classes="):
        genreg.fine_tune_classes(eight_class_cvae, new_digits, device="cpu")
    with pytest.raises(ExtensionError, match=r"cannot fine-tune classes \[8\].*each in 0..7"):
        genreg.fine_tune_classes(eight_class_cvae, new_digits, classes=[8], device="cpu")


def build(info: genreg.DataInfo, conditioner: object) -> genreg.GenerativeModel:
    return genreg.build_model({**EMBEDDING_CVAE, "conditioner": conditioner}, info)


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


def test_fine_tuning_refuses_new_classes_the_data_has_no_rows_of(extended, old_digits, new_digits) -> None:
    """Issue 16, case 9: training on rows of other classes left the new vectors bit-identical, yet "succeeded"."""
    before = snapshot(extended)
    with pytest.raises(ExtensionError, match=r"no training rows of classes 8, 9 of column 'label' \(its training "):
        genreg.fine_tune_classes(extended, old_digits, epochs=1, device="cpu")
    nines = genreg.DataSplits(new_digits.train.take(new_digits.train.labels == 9), new_digits.test, 10, source="9s")
    with pytest.raises(ExtensionError, match=r"9s holds no training rows of class 8 of column 'label'.*classes 9\)"):
        genreg.fine_tune_classes(extended, nines, epochs=1, device="cpu")
    assert all(torch.equal(value, before[name]) for name, value in extended.state_dict().items())
    assert extension_of(extended).fine_tuning is None
