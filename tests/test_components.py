"""Built-in parts have the documented shapes and behaviour, and assembly catches parts that do not fit."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import genreg
from genreg.errors import AssemblyError
from genreg_builtin.conditioners import Embedding, EmbeddingConfig, OneHot, OneHotConfig
from genreg_builtin.conv import ConvDecoder, ConvDecoderConfig, ConvEncoder, ConvEncoderConfig
from genreg_builtin.latents import DeterministicConfig, DeterministicLatent, GaussianConfig, GaussianLatent
from genreg_builtin.losses import BCE, KLD, BCEConfig, KLDConfig
from genreg_builtin.mlp import MLPDecoder, MLPDecoderConfig, MLPEncoder, MLPEncoderConfig

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


# --------------------------------------------------------------------------- encoders and decoders


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_encoder_and_decoder_shapes(kind, shape, conditional):
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


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_encoder_output_depends_on_condition(kind):
    torch.manual_seed(1)
    shape = (1, 27, 30)
    encoder = make_encoder(kind, shape, COND_DIM)
    x = torch.rand(1, *shape).expand(4, -1, -1, -1)  # the same image four times
    features = encoder(x, onehot([0, 1, 7, 7]))
    assert not torch.allclose(features[0], features[1])
    assert not torch.allclose(features[1], features[2])
    torch.testing.assert_close(features[2], features[3])  # same image, same label: same features


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_decoder_output_depends_on_condition(kind):
    torch.manual_seed(2)
    decoder = make_decoder(kind, (1, 27, 30), COND_DIM)
    z = torch.randn(1, 5).expand(4, -1)
    logits = decoder(z, onehot([0, 1, 7, 7]))
    assert not torch.allclose(logits[0], logits[1])
    assert not torch.allclose(logits[1], logits[2])
    torch.testing.assert_close(logits[2], logits[3])


def test_conv_parts_handle_the_smallest_side_their_depth_allows():
    encoder = make_encoder("conv", (2, 4, 5), 0)  # two halvings: 4 -> 1, 5 -> 1
    decoder = make_decoder("conv", (2, 4, 5), 0)
    assert encoder(torch.rand(2, 2, 4, 5), None).shape == (2, 24)
    assert decoder(torch.randn(2, 5), None).shape == (2, 2, 4, 5)


def test_conv_too_many_layers_for_image_is_an_assembly_error():
    with pytest.raises(AssemblyError, match="too many"):
        genreg.build_model({"type": "vae", "encoder": {"type": "conv"}}, genreg.DataInfo((1, 3, 3), 2))


# --------------------------------------------------------------------------- conditioners


def test_onehot_gives_one_hot_rows():
    conditioner = OneHot(OneHotConfig(), num_classes=4)
    assert conditioner.dim == 4
    rows = conditioner(torch.tensor([2, 0, 3, 3]))
    assert rows.dtype == torch.float32
    torch.testing.assert_close(rows, torch.eye(4)[[2, 0, 3, 3]])
    assert list(conditioner.parameters()) == []

    wider = OneHot(OneHotConfig(num_classes=6), num_classes=4)  # more classes than the data is fine
    assert wider.dim == 6 and wider(torch.tensor([5])).tolist() == [[0, 0, 0, 0, 0, 1.0]]


def test_embedding_is_learnable_with_one_row_per_class():
    torch.manual_seed(3)
    conditioner = Embedding(EmbeddingConfig(dim=5), num_classes=7)
    assert conditioner.dim == 5
    assert conditioner.table.weight.shape == (7, 5)
    assert conditioner.table.weight.requires_grad
    vectors = conditioner(torch.tensor([1, 6, 6]))
    assert vectors.shape == (3, 5)
    torch.testing.assert_close(vectors[0], conditioner.table.weight[1])
    vectors.square().sum().backward()
    grad = conditioner.table.weight.grad
    assert grad is not None
    used = grad.abs().sum(1) > 0
    assert used.tolist() == [False, True, False, False, False, False, True]

    assert Embedding(EmbeddingConfig(num_classes=12), num_classes=7).table.weight.shape == (12, 16)


@pytest.mark.parametrize("conditioner", ["onehot", "embedding"])
def test_fewer_classes_than_the_data_is_an_assembly_error(conditioner):
    spec = {"type": "cvae", "conditioner": {"type": conditioner, "num_classes": 2}}
    with pytest.raises(AssemblyError, match=rf"conditioner '{conditioner}': num_classes=2.*set num_classes >= 3"):
        genreg.build_model(spec, genreg.DataInfo((1, 8, 8), 3))


# --------------------------------------------------------------------------- latents


def test_gaussian_latent_samples_with_mean_mu_and_variance_exp_log_var():
    torch.manual_seed(4)
    latent = GaussianLatent(GaussianConfig(), in_features=3, dim=2)
    with torch.no_grad():  # log_var fixed at (1, -2) so variance and std differ clearly
        latent.project.weight[2:].zero_()
        latent.project.bias[2:] = torch.tensor([1.0, -2.0])
    n = 200_000
    features = torch.randn(1, 3).expand(n, -1)

    with torch.no_grad():
        sample = latent(features)
        mu = latent.mean(features[:1])[0]
    assert sample.z.shape == (n, 2)
    assert set(sample.params) == {"mu", "log_var"} == set(latent.provides)
    torch.testing.assert_close(sample.params["mu"][0], mu)
    torch.testing.assert_close(sample.params["log_var"][0], torch.tensor([1.0, -2.0]))

    var = torch.tensor([math.e, math.exp(-2.0)])
    assert ((sample.z.mean(0) - mu).abs() < 5 * (var / n).sqrt()).all()
    assert ((sample.z.var(0) / var - 1).abs() < 5 * math.sqrt(2 / n)).all()


def test_gaussian_latent_mean_returns_mu_deterministically():
    torch.manual_seed(5)
    latent = GaussianLatent(GaussianConfig(), in_features=6, dim=3)
    features = torch.randn(4, 6)
    with torch.no_grad():
        first, second = latent(features), latent(features)
        mean = latent.mean(features)
    assert mean.shape == (4, 3)
    torch.testing.assert_close(mean, first.params["mu"])
    torch.testing.assert_close(latent.mean(features), mean)
    assert not torch.allclose(first.z, second.z)  # sampling draws fresh noise
    assert latent.sample_prior(7, "cpu").shape == (7, 3)


def test_deterministic_latent_is_its_own_mean():
    latent = DeterministicLatent(DeterministicConfig(), in_features=6, dim=3)
    features = torch.randn(4, 6)
    sample = latent(features)
    assert latent.provides == () and sample.params == {}
    torch.testing.assert_close(sample.z, latent.mean(features))


# --------------------------------------------------------------------------- assembly checks

INFO = genreg.DataInfo((1, 8, 8), 3)


def test_kld_with_a_deterministic_latent_is_rejected():
    with pytest.raises(AssemblyError, match=r"loss term 'kld' needs \['log_var', 'mu'\].*'deterministic'"):
        genreg.build_model({"type": "ae", "losses": [{"type": "bce"}, {"type": "kld"}]}, INFO)


@pytest.mark.parametrize(
    ("losses", "repeated"),
    [
        ([{"type": "bce"}, {"type": "bce"}], "bce"),
        ([{"type": "bce", "name": "kld"}, {"type": "kld"}], "kld"),
    ],
)
def test_duplicate_loss_names_are_rejected(losses, repeated):
    with pytest.raises(AssemblyError, match=f"distinct names; repeated: {repeated}"):
        genreg.build_model({"type": "vae", "losses": losses}, INFO)


def test_same_loss_type_twice_with_distinct_names_is_fine():
    losses = [{"type": "bce"}, {"type": "bce", "name": "bce2", "weight": 0.1}, {"type": "kld"}]
    model = genreg.build_model({"type": "vae", "losses": losses}, INFO)
    assert model.loss_names == ["bce", "bce2", "kld"]


def small_parts(latent_cls=GaussianLatent, latent_config=GaussianConfig):
    encoder = MLPEncoder(MLPEncoderConfig(hidden=[16]), input_shape=(1, 8, 8))
    latent = latent_cls(latent_config(), in_features=16, dim=4)
    decoder = MLPDecoder(MLPDecoderConfig(hidden=[16]), latent_dim=4, output_shape=(1, 8, 8))
    return {"encoder": encoder, "latent": latent, "decoder": decoder}


class WrongShapeDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 56)

    def forward(self, z, condition):
        return self.linear(z).view(-1, 1, 8, 7)


class LyingEncoder(nn.Module):
    out_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 15)

    def forward(self, x, condition):
        return self.linear(x.flatten(1))


class BrokenDecoder(nn.Module):
    """A decoder whose forward raises: a plugin bug the user should see named, not as a traceback."""

    def forward(self, z, condition):
        return z.view(-1, 3, 3)


class TensorLatent(nn.Module):
    dim = 4
    provides = ()

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 4)

    def forward(self, features):
        return self.linear(features)


def test_hand_composed_model_works():
    model = genreg.GenerativeModel(**small_parts(), losses=[BCE(BCEConfig()), KLD(KLDConfig())], data=INFO)
    assert model.loss_names == ["bce", "kld"]
    assert model(torch.rand(2, 1, 8, 8)).logits.shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    ("slot", "part", "message"),
    [
        ("decoder", WrongShapeDecoder, r"component WrongShapeDecoder returned logits of shape \(2, 1, 8, 7\); "
         r"expected \(2, 1, 8, 8\)"),
        ("encoder", LyingEncoder, r"component LyingEncoder returned features of shape \(2, 15\); expected \(2, 16\)"),
        ("latent", TensorLatent, r"component TensorLatent must return a genreg.LatentSample"),
        ("decoder", BrokenDecoder, r"component BrokenDecoder failed on a batch of 2 with input shapes \(2, 4\), None: "
         r"RuntimeError: shape '\[-1, 3, 3\]' is invalid"),
    ],
)  # fmt: skip
def test_wrong_shapes_are_caught_at_assembly_naming_the_part(slot, part, message):
    parts = small_parts()
    parts[slot] = part()
    with pytest.raises(AssemblyError, match=message):
        genreg.GenerativeModel(**parts, losses=[BCE(BCEConfig())], data=INFO)


def test_registered_part_is_named_by_kind_name_and_plugin():
    parts = small_parts()
    parts["decoder"] = WrongShapeDecoder()
    parts["encoder"] = genreg.build_model({"type": "ae", "encoder": {"type": "conv"}}, INFO).encoder
    parts["encoder"].out_features = 999
    with pytest.raises(AssemblyError, match=r"encoder 'conv' \(plugin 'builtin'\) returned features"):
        genreg.GenerativeModel(**parts, losses=[BCE(BCEConfig())], data=INFO)


# --------------------------------------------------------------------------- a cVAE with swapped parts


@pytest.fixture(scope="module")
def cvae():
    torch.manual_seed(6)
    spec = {
        "type": "cvae",
        "latent_dim": 4,
        "encoder": {"type": "conv", "channels": [8, 16], "features": 32},
        "decoder": {"type": "conv", "channels": [16, 8]},
        "conditioner": {"type": "embedding", "dim": 6},
    }
    return genreg.build_model(spec, genreg.DataInfo((1, 28, 28), 10)).eval()


def test_cvae_parts_are_swapped_by_name(cvae):
    assert isinstance(cvae.encoder, ConvEncoder)
    assert isinstance(cvae.decoder, ConvDecoder)
    assert isinstance(cvae.conditioner.part("label"), Embedding)
    assert isinstance(cvae.latent, GaussianLatent)
    assert cvae.conditional and cvae.loss_names == ["bce", "kld"]
    assert cvae.conditioner.parts[0].table.weight.shape == (10, 6)
    assert cvae.spec["conditioner"] == [{"type": "embedding", "column": "label", "num_classes": 10, "dim": 6}]


def test_cvae_feeds_the_condition_to_encoder_and_decoder(cvae):
    seen = {}

    def spy(name):
        def hook(module, args, output):
            seen[name] = args[1]

        return hook

    handles = [cvae.encoder.register_forward_hook(spy("encoder")), cvae.decoder.register_forward_hook(spy("decoder"))]
    try:
        labels = torch.tensor([0, 5, 9])
        cvae(torch.rand(3, 1, 28, 28), labels)
    finally:
        for handle in handles:
            handle.remove()
    expected = cvae.conditioner(labels)
    torch.testing.assert_close(seen["encoder"], expected)
    torch.testing.assert_close(seen["decoder"], expected)


def test_cvae_trains_its_conditioner(cvae):
    cvae.zero_grad()
    total, _ = cvae.loss(torch.rand(3, 1, 28, 28), torch.tensor([2, 2, 4]))
    total.backward()
    grad = cvae.conditioner.parts[0].table.weight.grad
    assert (grad.abs().sum(1) > 0).tolist() == [i in (2, 4) for i in range(10)]
    cvae.zero_grad()


def test_cvae_samples_images_in_unit_range(cvae):
    torch.manual_seed(7)
    images = cvae.sample(labels=[0, 3, 9, 9])
    assert images.shape == (4, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    torch.manual_seed(8)
    a = cvae.sample(labels=torch.tensor([1]))
    torch.manual_seed(8)
    b = cvae.sample(labels=torch.tensor([2]))
    assert not torch.allclose(a, b)  # same z, different label: different image


@pytest.mark.parametrize("labels", [[10], [0, -1], [3, 12]])
def test_sampling_an_out_of_range_label_raises(cvae, labels):
    with pytest.raises(ValueError, match=r"column 'label' has class (10|-1|12), .* knows classes 0..9"):
        cvae.sample(labels=labels)


def test_sample_argument_errors(cvae):
    with pytest.raises(ValueError, match=r"conditional: pass its condition \(column\(s\) label\)"):
        cvae.sample(3)
    vae = genreg.build_model({"type": "vae", "latent_dim": 2}, INFO)
    with pytest.raises(ValueError, match="not conditional"):
        vae.sample(labels=[0])
    assert vae.sample(5).shape == (5, 1, 8, 8)


def test_a_part_too_large_to_allocate_is_an_assembly_error_naming_it():
    """A size that validates (any positive int) but cannot be allocated: no traceback, the part named."""
    with pytest.raises(AssemblyError, match=r"latent 'gaussian' \(plugin 'builtin'\) is too large to build here: .*"
                       r"Make it smaller"):  # fmt: skip
        genreg.build_model({"type": "vae", "latent_dim": 10**12}, INFO)
