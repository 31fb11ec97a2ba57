"""Where the condition enters: at the input or at every layer, for the encoder (unless turned off) and the decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import genreg
from genreg.training.runner import prepare

INFO = genreg.DataInfo((1, 12, 12), 10)
PARTS = {
    "mlp": ({"type": "mlp", "hidden": [16, 8]}, {"type": "mlp", "hidden": [8, 16]}),
    "conv": ({"type": "conv", "channels": [4, 8], "features": 16}, {"type": "conv", "channels": [8, 4]}),
}
# Parameter names and shapes of these specs before injection modes existed (saved models must still load).
BEFORE = {
    "mlp": {
        "encoder.net.0.weight": (16, 154),
        "encoder.net.2.weight": (8, 16),
        "latent.project.weight": (6, 8),
        "decoder.net.0.weight": (8, 13),
        "decoder.net.2.weight": (16, 8),
        "decoder.net.4.weight": (144, 16),
    },
    "conv": {
        "encoder.convs.0.weight": (4, 11, 4, 4),
        "encoder.convs.2.weight": (8, 4, 4, 4),
        "encoder.dense.1.weight": (16, 72),
        "latent.project.weight": (6, 16),
        "decoder.dense.0.weight": (72, 13),
        "decoder.deconvs.0.weight": (8, 4, 4, 4),
        "decoder.deconvs.2.weight": (4, 1, 4, 4),
    },
}


def cvae(kind: str, mode: str | None = None, **fields: object) -> genreg.GenerativeModel:
    encoder, decoder = PARTS[kind]
    if mode is not None:
        encoder, decoder = {**encoder, "condition": mode}, {**decoder, "condition": mode}
    torch.manual_seed(0)
    return genreg.build_model({"type": "cvae", "latent_dim": 3, "encoder": encoder, "decoder": decoder, **fields}, INFO)


def outputs(model: genreg.GenerativeModel, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's features and the decoder's logits for fixed x and z under ``label``."""
    torch.manual_seed(1)
    x, z = torch.rand(2, *INFO.image_shape), torch.randn(2, 3)
    c = model.condition(torch.full((2,), label))
    with torch.no_grad():
        features = model.encoder(x, c if model.condition_encoder else None)
        return features, model.decoder(z, c)


@pytest.mark.parametrize("mode", ["input", "every-layer"])
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_the_condition_reaches_encoder_and_decoder(kind: str, mode: str) -> None:
    model = cvae(kind, mode).eval()
    (f0, l0), (f1, l1) = outputs(model, 0), outputs(model, 7)
    assert not torch.allclose(f0, f1)
    assert not torch.allclose(l0, l1)


def input_widths(part: nn.Module) -> list[int]:
    """The input width (features or channels) of each weighted layer, in order."""
    widths = []
    for m in part.modules():
        if isinstance(m, nn.Linear):
            widths.append(m.in_features)
        elif isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            widths.append(m.in_channels)
    return widths


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_every_layer_widens_every_layer_input_by_the_condition(kind: str) -> None:
    plain, injected = cvae(kind, "input"), cvae(kind, "every-layer")
    dim = plain.conditioner.dim
    for part in ("encoder", "decoder"):
        before = input_widths(getattr(plain, part))
        assert len(before) >= 2
        # input mode has the condition at the first layer already; every-layer adds it to each later one
        assert input_widths(getattr(injected, part)) == [before[0]] + [w + dim for w in before[1:]]


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_an_unconditioned_encoder_warns_and_ignores_the_label(kind: str) -> None:
    with pytest.warns(UserWarning, match=r"condition_encoder is false: the encoder ignores the class label"):
        model = cvae(kind, condition_encoder=False).eval()
    (f0, l0), (f1, l1) = outputs(model, 0), outputs(model, 7)
    assert torch.equal(f0, f1)
    assert not torch.allclose(l0, l1)
    assert model.spec["condition_encoder"] is False
    x, labels = torch.rand(2, *INFO.image_shape), torch.tensor([0, 7])
    assert torch.equal(model.encode(x, labels), model.encode(x))
    assert model(x, labels).logits.shape == (2, *INFO.image_shape)


def test_the_resolved_spec_states_encoder_conditioning() -> None:
    spec = {"model": {"type": "cvae"}, "data": {"type": "mnist-sample"}}
    assert prepare(genreg.validate_spec(spec)).resolved["model"]["condition_encoder"] is True
    with pytest.warns(UserWarning, match=r"q\(z\|x\)"):
        off = prepare(genreg.validate_spec({**spec, "model": {"type": "cvae", "condition_encoder": False}}))
    assert off.resolved["model"]["condition_encoder"] is False


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_every_layer_models_round_trip(kind: str, tmp_path: Path) -> None:
    model = cvae(kind, "every-layer").eval()
    loaded = genreg.load_model(genreg.save_model(model, tmp_path / "model.safetensors"))
    assert loaded.spec["encoder"]["condition"] == loaded.spec["decoder"]["condition"] == "every-layer"
    for label in (0, 7):
        for a, b in zip(outputs(model, label), outputs(loaded, label), strict=True):
            assert torch.equal(a, b)


def test_an_unconditioned_encoder_round_trips(tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        model = cvae("mlp", condition_encoder=False).eval()
        loaded = genreg.load_model(genreg.save_model(model, tmp_path / "model.safetensors"))
    assert loaded.condition_encoder is False
    assert torch.equal(outputs(model, 3)[1], outputs(loaded, 3)[1])


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_specs_without_the_new_fields_build_the_same_parameters(kind: str) -> None:
    model = cvae(kind)
    shapes = {name: tuple(p.shape) for name, p in model.state_dict().items() if name.endswith("weight")}
    assert shapes == BEFORE[kind]
    assert model.spec["condition_encoder"] is True
    assert model.spec["encoder"]["condition"] == model.spec["decoder"]["condition"] == "input"


def test_hand_composed_models_record_encoder_conditioning() -> None:
    model = cvae("mlp", "every-layer")
    model.spec = None
    spec = genreg.derive_spec(model)
    assert spec["condition_encoder"] is True and spec["encoder"]["condition"] == "every-layer"
    rebuilt = genreg.build_model(spec, INFO)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
