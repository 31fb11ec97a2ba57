"""Tests genreg/model/conditions.py: several conditions, a class label and a continuous column, read by
conditioners from the data's columns; their vector, the statistics they fit, the values they accept, and
files saved with one conditioner before there could be several."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import genreg
from genreg.errors import ConditionError
from genreg.files.model_files import read_metadata
from genreg.viz.samples import sample_images
from tests.helpers import needs_example_plugin

MLP = {"type": "mlp", "hidden": [64]}


TWO = [{"type": "onehot"}, {"type": "continuous", "column": "ink", "hidden": 8}]


def two_condition_cvae(info: genreg.DataInfo, mode: str = "input", kind: str = "mlp") -> genreg.GenerativeModel:
    parts = {
        "mlp": (MLP, MLP),
        "conv": ({"type": "conv", "channels": [4, 8], "features": 16}, {"type": "conv", "channels": [8, 4]}),
    }[kind]
    encoder, decoder = ({**part, "condition": mode} for part in parts)
    spec = {"type": "cvae", "latent_dim": 3, "encoder": encoder, "decoder": decoder, "conditioner": TWO}
    torch.manual_seed(0)
    return genreg.build_model(spec, info)


@pytest.fixture(scope="module")
def cvae2(mnist: genreg.DataSplits) -> genreg.GenerativeModel:
    """A cVAE conditioned on the label (one-hot) and the ink (continuous), trained 2 epochs."""
    model = two_condition_cvae(mnist.info)
    genreg.train(model, mnist, genreg.TrainConfig(epochs=2, batch_size=64, device="cpu"), progress=False)
    return model.eval()


@pytest.mark.slow
def test_two_conditioners_train_save_and_reload_with_their_statistics(cvae2, mnist, tmp_path: Path) -> None:
    ink = mnist.train.columns["ink"]
    part = cvae2.conditioner.part("ink")
    assert cvae2.conditioner.columns == ["label", "ink"] and cvae2.conditioner.dim == 10 + 8
    assert part.mean.item() == pytest.approx(ink.mean().item(), rel=1e-5)  # taken from the training split
    assert part.std.item() == pytest.approx(ink.std(correction=0).item(), rel=1e-5)
    path = genreg.save_model(cvae2, tmp_path / "model.safetensors")
    stored = load_file(str(path))
    assert stored["conditioner.parts.1.mean"].item() == part.mean.item()
    again = genreg.load_model(path)
    assert again.conditioner.part("ink").std.item() == part.std.item()
    x, condition = mnist.test.images[:16], mnist.test.condition(slice(0, 16))
    torch.manual_seed(1)
    first = cvae2.reconstruct(x, condition)
    torch.manual_seed(1)
    assert torch.equal(again.reconstruct(x, condition), first)
    assert json.loads(read_metadata(path)["genreg.spec"])["model"]["conditioner"][1]["column"] == "ink"


@pytest.mark.slow
def test_the_condition_vector_is_the_conditioners_outputs_in_spec_order(cvae2, mnist) -> None:
    condition = mnist.test.condition(slice(0, 4))
    vector = cvae2.condition(condition)
    onehot = torch.nn.functional.one_hot(condition["label"], 10).float()
    assert torch.equal(vector[:, :10], onehot)
    assert torch.equal(vector[:, 10:], cvae2.conditioner.part("ink")(condition["ink"]))


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("mode", ["input", "every-layer"])
def test_the_continuous_condition_reaches_encoder_and_decoder(kind: str, mode: str) -> None:
    info = genreg.DataInfo((1, 12, 12), 10, {"ink": 0})
    model = two_condition_cvae(info, mode, kind).eval()
    torch.manual_seed(0)
    x, z = torch.rand(4, 1, 12, 12), torch.randn(4, 3)
    label = torch.tensor([1, 2, 3, 4])
    seen = []
    for ink in (0.05, 0.3):
        c = model.condition({"label": label, "ink": torch.full((4,), ink)})
        seen.append((model.encoder(x, c), model.decoder(z, c)))
    assert not torch.allclose(seen[0][0], seen[1][0]), "the encoder ignores ink"
    assert not torch.allclose(seen[0][1], seen[1][1]), "the decoder ignores ink"


def test_a_single_conditioner_is_a_list_of_one_reading_the_label(mnist) -> None:
    model = genreg.build_model({"type": "cvae", "latent_dim": 2, "conditioner": {"type": "embedding"}}, mnist.info)
    assert [part["column"] for part in model.spec["conditioner"]] == ["label"]
    x, labels = mnist.test.images[:3], mnist.test.labels[:3]
    torch.manual_seed(0)
    by_tensor = model.reconstruct(x, labels)  # one column: a bare tensor is its values
    torch.manual_seed(0)
    assert torch.equal(model.reconstruct(x, {"label": labels}), by_tensor)


@pytest.mark.slow
def test_a_model_with_several_columns_refuses_a_bare_tensor(cvae2, mnist) -> None:
    with pytest.raises(ConditionError, match=r"several conditions \(label, ink\)"):
        cvae2.reconstruct(mnist.test.images[:2], mnist.test.labels[:2])
    with pytest.raises(ConditionError, match=r"lacks column\(s\) ink"):
        cvae2.reconstruct(mnist.test.images[:2], {"label": mnist.test.labels[:2]})


@pytest.mark.slow
def test_sampling_checks_classes_per_column(cvae2) -> None:
    with pytest.raises(ConditionError, match=r"column 'label' has class 12, .* classes 0..9"):
        cvae2.sample(condition={"label": torch.tensor([12]), "ink": torch.tensor([0.1])})
    with pytest.raises(ConditionError, match=r"column 'ink' has NaN"):
        cvae2.sample(condition={"label": torch.tensor([1]), "ink": torch.tensor([float("nan")])})


@pytest.mark.slow
def test_transfer_to_other_ink_values_keeps_each_images_label(cvae2, mnist) -> None:
    x, condition = mnist.test.images[:3], mnist.test.condition(slice(0, 3))
    targets = torch.tensor([0.05, 0.2])
    images = cvae2.transfer(x, condition, {"ink": targets})
    z = cvae2.encode(x, condition)
    for j, ink in enumerate(targets.tolist()):
        expected = cvae2.decode(z, {"label": condition["label"], "ink": torch.full((3,), ink)})
        assert torch.allclose(images[:, j], expected, atol=1e-6)


@pytest.mark.slow
def test_columns_left_out_take_class_0_or_the_training_mean(ink_model) -> None:
    condition = ink_model.conditioner.constant(2, {"label": 3})
    assert condition["label"].tolist() == [3, 3]
    assert condition["ink"].tolist() == pytest.approx([float(ink_model.conditioner.part("ink").mean)] * 2)
    with pytest.raises(ConditionError, match="no condition column 'dose'; it reads label, ink"):
        sample_images(ink_model, 2, fixed={"dose": 1})


def test_a_legacy_model_file_with_one_conditioner_still_loads(tmp_path: Path, mnist) -> None:
    """genreg-model/1 files kept the conditioner's tensors directly under 'conditioner.'."""
    model = genreg.build_model({"type": "cvae", "latent_dim": 2, "conditioner": {"type": "embedding"}}, mnist.info)
    path = genreg.save_model(model, tmp_path / "new.safetensors")
    metadata = read_metadata(path)
    tensors = {k.replace("conditioner.parts.0.", "conditioner."): v for k, v in load_file(str(path)).items()}
    spec = json.loads(metadata["genreg.spec"])
    spec["model"]["conditioner"] = {k: v for k, v in spec["model"]["conditioner"][0].items() if k != "column"}
    old = {**metadata, "genreg.format": "genreg-model/1", "genreg.spec": json.dumps(spec)}
    old.pop("genreg.crc32")
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=old)
    loaded = genreg.load_model(tmp_path / "old.safetensors")
    assert torch.equal(loaded.conditioner.parts[0].table.weight, model.conditioner.parts[0].table.weight)


@needs_example_plugin
def test_the_example_plugins_conditioner_works_beside_another_in_both_modes(mnist) -> None:
    """The third-party 'thermometer' conditioner, unchanged, as one of two conditions."""
    for mode in ("input", "every-layer"):
        spec = {
            "type": "cvae",
            "latent_dim": 2,
            "encoder": {**MLP, "condition": mode},
            "decoder": {**MLP, "condition": mode},
            "conditioner": [{"type": "thermometer"}, {"type": "continuous", "column": "ink"}],
        }
        model = genreg.build_model(spec, mnist.info)
        genreg.train(model, mnist, genreg.TrainConfig(epochs=1, batch_size=256, device="cpu"), progress=False)
        z = torch.zeros(2, 2)
        ink = torch.full((2,), 0.12)
        a = model.decode(z, {"label": torch.tensor([1, 1]), "ink": ink})
        b = model.decode(z, {"label": torch.tensor([7, 7]), "ink": ink})
        assert not torch.allclose(a, b)
