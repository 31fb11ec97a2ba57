"""Tests plugins/genreg_builtin/mlp.py: the MLP encoder and decoder have the documented shapes and depend on the
condition, and where the condition enters: at the input or at every layer.

The injection (``injected``, ``run_conditioned``) lives here and conv.py uses it, so each injection test runs
for both the mlp and the conv parts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import genreg
from genreg.errors import SpecError
from tests.helpers import (
    encoder_and_decoder_tests,
    injection_cvae,
    part_outputs,
)

# --------------------------------------------------------------------------- shapes and the condition

# The tests every built-in encoder and decoder pass, written once in tests/helpers.py (test_conv.py runs them too).
test_encoder_and_decoder_shapes, test_encoder_output_depends_on_condition, test_decoder_output_depends_on_condition = (
    encoder_and_decoder_tests("mlp")
)


# --------------------------------------------------------------------------- where the condition enters

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


@pytest.mark.parametrize("mode", ["input", "every-layer"])
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_the_condition_reaches_encoder_and_decoder(kind: str, mode: str) -> None:
    model = injection_cvae(kind, mode).eval()
    (f0, l0), (f1, l1) = part_outputs(model, 0), part_outputs(model, 7)
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
    plain, injected = injection_cvae(kind, "input"), injection_cvae(kind, "every-layer")
    dim = plain.conditioner.dim
    for part in ("encoder", "decoder"):
        before = input_widths(getattr(plain, part))
        assert len(before) >= 2
        # input mode has the condition at the first layer already; every-layer adds it to each later one
        assert input_widths(getattr(injected, part)) == [before[0]] + [w + dim for w in before[1:]]


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_every_layer_models_round_trip(kind: str, tmp_path: Path) -> None:
    model = injection_cvae(kind, "every-layer").eval()
    loaded = genreg.load_model(genreg.save_model(model, tmp_path / "model.safetensors"))
    assert loaded.spec["encoder"]["condition"] == loaded.spec["decoder"]["condition"] == "every-layer"
    for label in (0, 7):
        for a, b in zip(part_outputs(model, label), part_outputs(loaded, label), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_specs_without_the_new_fields_build_the_same_parameters(kind: str) -> None:
    model = injection_cvae(kind)
    shapes = {name: tuple(p.shape) for name, p in model.state_dict().items() if name.endswith("weight")}
    assert shapes == BEFORE[kind]
    assert model.spec["condition_encoder"] is True
    assert model.spec["encoder"]["condition"] == model.spec["decoder"]["condition"] == "input"


@pytest.mark.parametrize(("part", "field"), [("mlp", "hidden"), ("conv", "channels")])
@pytest.mark.parametrize("width", [0, -5])
def test_a_layer_of_no_units_is_refused_at_validation(part: str, field: str, width: int) -> None:
    """Case 16 of issue 15: `hidden: [-5]` ended in a RuntimeError traceback, `[0]` trained a dead network."""
    model = {"type": "ae", "encoder": {"type": part, field: [width]}}
    with pytest.raises(SpecError, match=rf"model\.encoder\.{field}\[0\]: Input should be greater than 0"):
        genreg.validate_spec({"model": model, "data": {"type": "mnist-sample"}})


# --------------------------------------------------------------------------- norm, dropout and log1p input (scVI's)


def test_norm_and_dropout_follow_each_hidden_linear_layer_in_scvis_order() -> None:
    from genreg_builtin.mlp import MLPDecoder, MLPDecoderConfig, MLPEncoder, MLPEncoderConfig

    encoder = MLPEncoder(MLPEncoderConfig(hidden=[8, 4], norm="batch", dropout=0.1), input_shape=(6,))
    kinds = [type(layer).__name__ for layer in encoder.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2
    decoder = MLPDecoder(MLPDecoderConfig(hidden=[4], norm="layer"), latent_dim=2, output_shape=(6,))
    assert [type(layer).__name__ for layer in decoder.net] == ["Linear", "LayerNorm", "ReLU", "Linear"]
    encoder.eval()  # dropout off, batch norm on its running statistics: deterministic
    x = torch.rand(5, 6)
    assert torch.equal(encoder(x, None), encoder(x, None))
    encoder.train()
    torch.manual_seed(0)
    assert not torch.equal(encoder(x, None), encoder(x, None))  # dropout draws


def test_log1p_input_feeds_the_first_layer_log_one_plus_x() -> None:
    from genreg_builtin.mlp import MLPEncoder, MLPEncoderConfig

    torch.manual_seed(0)
    logged = MLPEncoder(MLPEncoderConfig(hidden=[4], input="log1p"), input_shape=(3,))
    raw = MLPEncoder(MLPEncoderConfig(hidden=[4]), input_shape=(3,))
    raw.load_state_dict(logged.state_dict())
    counts = torch.tensor([[0.0, 9.0, 99.0]])
    torch.testing.assert_close(logged(counts, None), raw(counts.log1p(), None))
    with pytest.raises(SpecError, match="input"):
        genreg.build_model({"type": "vae", "encoder": {"type": "mlp", "input": "log"}}, genreg.DataInfo((3,), 1))
