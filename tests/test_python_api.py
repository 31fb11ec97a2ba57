"""The public Python API as the README shows it (a workflow across rooms, so it stays at the top): compose
parts by hand, train with the same trainer, save and load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genreg
from genreg.errors import ModelFileError
from genreg_builtin.conditioners import OneHot, OneHotConfig
from genreg_builtin.latents import GaussianConfig, GaussianLatent
from genreg_builtin.losses import BCE, KLD, BCEConfig, KLDConfig
from genreg_builtin.mlp import MLPDecoder, MLPDecoderConfig, MLPEncoder, MLPEncoderConfig

SHAPE = (1, 28, 28)


def small_data(n: int = 512) -> genreg.DataSplits:
    data = genreg.load_data({"type": "mnist-sample"})
    train = genreg.Split(data.train.images[:n], data.train.labels[:n])
    test = genreg.Split(data.test.images[:200], data.test.labels[:200])
    return genreg.DataSplits(train, test, data.num_classes)


def hand_built_cvae() -> genreg.GenerativeModel:
    conditioner = OneHot(OneHotConfig(), num_classes=10)
    encoder = MLPEncoder(MLPEncoderConfig(hidden=[128]), input_shape=SHAPE, condition_dim=conditioner.dim)
    latent = GaussianLatent(GaussianConfig(), in_features=encoder.out_features, dim=4)
    decoder = MLPDecoder(
        MLPDecoderConfig(hidden=[128]), latent_dim=4, condition_dim=conditioner.dim, output_shape=SHAPE
    )
    return genreg.GenerativeModel(
        encoder=encoder,
        latent=latent,
        decoder=decoder,
        conditioner=conditioner,
        losses=[BCE(BCEConfig()), KLD(KLDConfig(weight=0.5))],
        data=genreg.DataInfo(SHAPE, 10),
    )


@pytest.mark.slow
def test_hand_composition_trains_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = hand_built_cvae()
    history = genreg.train(model, small_data(), genreg.TrainConfig(epochs=3, batch_size=64), progress=False).history
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]

    path = genreg.save_model(model, tmp_path / "hand.safetensors")
    loaded = genreg.load_model(path)
    assert loaded.spec["type"] == "custom"
    assert loaded.spec["losses"][1]["weight"] == 0.5
    z = torch.randn(5, 4)
    labels = torch.tensor([0, 1, 2, 3, 4])
    assert torch.equal(model.eval().decode(z, labels), loaded.decode(z, labels))


def test_built_from_spec_dict_samples_asked_classes() -> None:
    torch.manual_seed(0)
    model = genreg.build_model({"type": "cvae", "latent_dim": 2}, genreg.DataInfo(SHAPE, 10))
    images = model.sample(labels=[3, 3, 7])
    assert images.shape == (3, *SHAPE)
    assert images.min() >= 0 and images.max() <= 1
    with pytest.raises(ValueError, match="labels"):
        model.sample(4)


class PlainEncoder(torch.nn.Module):
    """An encoder that is not a registered component."""

    out_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(784, 16)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return self.net(x.flatten(1))


def model_with_plain_encoder() -> genreg.GenerativeModel:
    return genreg.GenerativeModel(
        encoder=PlainEncoder(),
        latent=GaussianLatent(GaussianConfig(), in_features=16, dim=4),
        decoder=MLPDecoder(MLPDecoderConfig(hidden=[32]), latent_dim=4, output_shape=SHAPE),
        losses=[BCE(BCEConfig())],
        data=genreg.DataInfo(SHAPE, 10),
    )


def test_unregistered_part_saves_weights_only(tmp_path: Path) -> None:
    model = model_with_plain_encoder()
    with pytest.warns(UserWarning, match="without a spec"):
        path = genreg.save_model(model, tmp_path / "w.safetensors")
    with pytest.raises(ModelFileError, match="load_weights"):
        genreg.load_model(path)
    clone = genreg.load_weights(model_with_plain_encoder(), path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, clone.state_dict()[key])


def test_import_genreg_is_instant_and_its_rooms_load_when_asked_for() -> None:
    """``import genreg`` loads no torch; ``genreg.data.as_split`` (the plugin contract) and the other rooms
    load on first use, as the eager package of earlier versions had them."""
    probe = (
        "import sys, genreg; assert 'torch' not in sys.modules; "
        "assert callable(genreg.data.as_split) and genreg.errors.UsageError and genreg.spec.OneOrMore; "
        "assert callable(genreg.train) and 'torch' in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0
