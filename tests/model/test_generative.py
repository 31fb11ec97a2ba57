"""Tests genreg/model/generative.py: ``GenerativeModel`` checks its parts at assembly (shapes, loss terms),
naming the part; feeds the condition to encoder and decoder; weighs its loss terms; samples and transfers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import genreg
from genreg.errors import AssemblyError, ConditionError, InputError
from genreg.evaluation.classifier import classify
from genreg_builtin.latents import GaussianConfig, GaussianLatent
from genreg_builtin.losses import BCE, KLD, BCEConfig, KLDConfig
from genreg_builtin.mlp import MLPDecoder, MLPDecoderConfig, MLPEncoder, MLPEncoderConfig
from tests.helpers import MISFITS, TINY_PARTS, needs_cuda, small_cvae, trained_briefly

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


@pytest.mark.parametrize("slot", list(MISFITS))
def test_a_plugin_part_with_the_wrong_shape_is_caught_at_assembly(misfits, slot):
    part, message = MISFITS[slot]
    with pytest.raises(AssemblyError) as caught:
        genreg.build_model({"type": "cvae", **TINY_PARTS, slot: part}, genreg.DataInfo((1, 8, 8), 5))
    assert str(caught.value) == message


# --------------------------------------------------------------------------- a cVAE with swapped parts


def test_cvae_feeds_the_condition_to_encoder_and_decoder(conv_cvae):
    seen = {}

    def spy(name):
        def hook(module, args, output):
            seen[name] = args[1]

        return hook

    handles = [
        conv_cvae.encoder.register_forward_hook(spy("encoder")),
        conv_cvae.decoder.register_forward_hook(spy("decoder")),
    ]
    try:
        labels = torch.tensor([0, 5, 9])
        conv_cvae(torch.rand(3, 1, 28, 28), labels)
    finally:
        for handle in handles:
            handle.remove()
    expected = conv_cvae.conditioner(labels)
    torch.testing.assert_close(seen["encoder"], expected)
    torch.testing.assert_close(seen["decoder"], expected)


def test_cvae_trains_its_conditioner(conv_cvae):
    conv_cvae.zero_grad()
    total, _ = conv_cvae.loss(torch.rand(3, 1, 28, 28), torch.tensor([2, 2, 4]))
    total.backward()
    grad = conv_cvae.conditioner.parts[0].table.weight.grad
    assert (grad.abs().sum(1) > 0).tolist() == [i in (2, 4) for i in range(10)]
    conv_cvae.zero_grad()


def test_cvae_samples_images_in_unit_range(conv_cvae):
    torch.manual_seed(7)
    images = conv_cvae.sample(labels=[0, 3, 9, 9])
    assert images.shape == (4, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    torch.manual_seed(8)
    a = conv_cvae.sample(labels=torch.tensor([1]))
    torch.manual_seed(8)
    b = conv_cvae.sample(labels=torch.tensor([2]))
    assert not torch.allclose(a, b)  # same z, different label: different image


@pytest.mark.parametrize("labels", [[10], [0, -1], [3, 12]])
def test_sampling_an_out_of_range_label_raises(conv_cvae, labels):
    with pytest.raises(ValueError, match=r"column 'label' has class (10|-1|12), .* knows classes 0..9"):
        conv_cvae.sample(labels=labels)


def test_sample_argument_errors(conv_cvae):
    with pytest.raises(ValueError, match=r"conditional: pass its condition \(column\(s\) label\)"):
        conv_cvae.sample(3)
    vae = genreg.build_model({"type": "vae", "latent_dim": 2}, INFO)
    with pytest.raises(ValueError, match="not conditional"):
        vae.sample(labels=[0])
    assert vae.sample(5).shape == (5, 1, 8, 8)


# --------------------------------------------------------------------------- loss weights


def test_loss_term_weight_is_weight_times_schedule():
    spec = {
        "type": "vae",
        "losses": [
            {"type": "bce", "weight": 3.0, "schedule": {"type": "linear", "epochs": 4}},
            {"type": "kld", "weight": 0.5},
        ],
    }
    model = genreg.build_model(spec, genreg.DataInfo((1, 6, 6), 3))

    def weight(progress: float) -> float:
        return model.loss_weights(progress)[0]

    assert weight(0) == 0.0
    assert weight(1) == pytest.approx(0.75)
    assert weight(2.5) == pytest.approx(3.0 * 2.5 / 4)
    assert weight(4) == pytest.approx(3.0)
    assert weight(40) == pytest.approx(3.0)
    assert model.loss_weights(0)[1] == 0.5  # no schedule: always the weight


# --------------------------------------------------------------------------- the total loss


@pytest.fixture
def vae():
    torch.manual_seed(0)
    spec = {
        "type": "vae",
        "latent_dim": 3,
        "encoder": {"type": "mlp", "hidden": [16]},
        "decoder": {"type": "mlp", "hidden": [16]},
        "losses": [
            {"type": "bce", "weight": 0.5},
            {"type": "kld", "weight": 2.0, "schedule": {"type": "linear", "epochs": 4}},
        ],
    }
    return genreg.build_model(spec, genreg.DataInfo((1, 8, 8), 3))


@pytest.mark.parametrize(("progress", "kld_factor"), [(0.0, 0.0), (1.0, 0.5), (6.0, 2.0), (math.inf, 2.0)])
def test_model_loss_total_is_weighted_sum_of_term_means(vae, progress, kld_factor):
    x = torch.rand(5, 1, 8, 8)
    torch.manual_seed(1)
    total, means = vae.loss(x, progress=progress)
    torch.manual_seed(1)  # the same reparameterisation noise
    out = vae(x)

    bce = F.binary_cross_entropy_with_logits(out.logits, x, reduction="sum") / 5
    mu, log_var = out.latent.params["mu"], out.latent.params["log_var"]
    kld = (-0.5 * (1 + log_var - mu**2 - log_var.exp()).sum(1)).mean()
    assert list(means) == ["bce", "kld"]
    torch.testing.assert_close(means["bce"], bce)
    torch.testing.assert_close(means["kld"], kld)
    assert total.dim() == 0
    torch.testing.assert_close(total, 0.5 * bce + kld_factor * kld)

    total.backward()
    assert all(p.grad is not None for p in vae.encoder.parameters())


def test_model_loss_default_progress_uses_full_weights(vae):
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(2)
    total, means = vae.loss(x)
    torch.testing.assert_close(total, 0.5 * means["bce"] + 2.0 * means["kld"])


# --------------------------------------------------------------------------- transfer


CVAE = {"type": "cvae", "latent_dim": 8, "encoder": {"hidden": [256]}, "decoder": {"hidden": [256]}}


@pytest.fixture(scope="module")
def trained_cvae(mnist: genreg.DataSplits) -> genreg.GenerativeModel:
    return trained_briefly(CVAE, mnist)


@pytest.mark.slow
def test_every_column_of_a_row_decodes_the_same_latent(trained_cvae, mnist) -> None:
    x, y = mnist.test.images[:5], mnist.test.labels[:5]
    targets = torch.tensor([3, 7])
    images = trained_cvae.transfer(x, y, targets)
    z = trained_cvae.encode(x, y)
    for column, target in enumerate(targets.tolist()):
        assert torch.allclose(images[:, column], trained_cvae.decode(z, torch.full((5,), target)), atol=1e-6)
    assert not torch.equal(images[:, 0], images[:, 1])


@pytest.mark.slow
def test_transfer_refuses_classes_outside_the_model(trained_cvae, mnist) -> None:
    with pytest.raises(ValueError, match=r"column 'label' has class 10, .* classes 0..9"):
        trained_cvae.transfer(mnist.test.images[:2], mnist.test.labels[:2], torch.tensor([10]))


@pytest.mark.slow
def test_transferred_digits_read_as_the_target_class(mnist, trained) -> None:
    """A short-trained cVAE (2-D latent, KL weight 4) re-decodes test digits as each target class."""
    spec = {
        "type": "cvae",
        "latent_dim": 2,
        "encoder": {"type": "mlp", "hidden": [256]},
        "decoder": {"type": "mlp", "hidden": [256]},
        "losses": [{"type": "bce"}, {"type": "kld", "weight": 4}],
    }
    torch.manual_seed(0)
    model = genreg.build_model(spec, mnist.info)
    genreg.train(model, mnist, genreg.TrainConfig(epochs=8, batch_size=64, device="cpu"), progress=False)
    x, labels = mnist.test.images[:200], mnist.test.labels[:200]
    images = model.eval().transfer(x, labels, torch.arange(10))  # (200, 10, 1, 28, 28)
    z = model.encode(x, labels)
    assert torch.allclose(images[:, 4], model.decode(z, torch.full((200,), 4)), atol=1e-6)  # one latent per row
    read = classify(trained.model, images.flatten(0, 1)).view(200, 10)
    assert (read == torch.arange(10)).float().mean().item() >= 0.85


# --------------------------------------------------------------------------- what users hold (issue 16, case 11)


@pytest.fixture(scope="module")
def tiny_cvae() -> genreg.GenerativeModel:
    """An untrained cVAE on 1x6x6 images of 3 classes (tests.helpers.small_cvae)."""
    return small_cvae().eval()


PIXELS = np.random.default_rng(1).integers(0, 256, (4, 1, 6, 6), dtype=np.uint8)
X = torch.from_numpy(PIXELS).float() / 255
LABELS = torch.tensor([0, 1, 2, 1])


def test_encode_and_reconstruct_take_images_and_labels_as_users_hold_them(tiny_cvae) -> None:
    """A uint8 batch, a float64 batch, a numpy array or one image without the batch axis gave raw torch errors
    (``mat1 and mat2 must have the same dtype``)."""
    z, decoded = tiny_cvae.encode(X, LABELS), tiny_cvae.reconstruct(X, LABELS)
    assert z.shape == (4, 2) and decoded.shape == (4, 1, 6, 6)
    for images in (PIXELS, torch.from_numpy(PIXELS), X.double(), X.numpy()):
        for labels in (LABELS, LABELS.tolist(), LABELS.numpy(), LABELS.float()):
            assert torch.equal(tiny_cvae.encode(images, labels), z)
            assert torch.equal(tiny_cvae.reconstruct(images, labels), decoded)
    assert torch.allclose(tiny_cvae.encode(PIXELS[1], 1), z[1])  # one image, one label: no batch axis
    assert torch.allclose(tiny_cvae.reconstruct(PIXELS[1], np.int64(1)), decoded[1])
    assert torch.equal(tiny_cvae.encode(X, 1), tiny_cvae.encode(X, [1, 1, 1, 1]))  # one label for every image


def test_decode_and_sample_take_codes_labels_and_counts_as_users_hold_them(tiny_cvae) -> None:
    z = torch.linspace(-1, 1, 8).view(4, 2)
    decoded = tiny_cvae.decode(z, LABELS)
    assert torch.equal(tiny_cvae.decode(z.double().numpy(), LABELS.numpy()), decoded)
    assert torch.allclose(tiny_cvae.decode(z[2].tolist(), 2), decoded[2])  # one code: no batch axis
    assert tiny_cvae.sample(labels=np.array([0, 2])).shape == (2, 1, 6, 6)
    assert tiny_cvae.sample(labels=2).shape == (1, 1, 6, 6)
    assert tiny_cvae.sample(np.int64(3), labels=1).shape == (3, 1, 6, 6)
    assert tiny_cvae.sample(condition={"label": [0, 1]}).shape == (2, 1, 6, 6)
    torch.manual_seed(0)
    first = tiny_cvae.sample(3, labels=[1, 1, 1])
    torch.manual_seed(0)
    assert torch.equal(tiny_cvae.sample(3, labels=1), first)


@pytest.mark.parametrize(
    ("call", "error", "says"),
    [
        (
            lambda m: m.encode(X[:, 0], LABELS),
            InputError,
            r"x has shape \(4, 6, 6\); this model takes images of shape "
            r"\(C, H, W\) = \(1, 6, 6\), one, or a batch \(B, 1, 6, 6\)",
        ),
        (lambda m: m.reconstruct(X * 255, LABELS), InputError, r"float images must lie in \[0, 1\]"),
        (lambda m: m.encode(X > 0.5, LABELS), InputError, r"x has dtype torch.bool"),
        (lambda m: m.decode(torch.zeros(4, 3), LABELS), InputError, r"z has shape \(4, 3\).*\(latent_dim,\) = \(2,\)"),
        (lambda m: m.decode(torch.full((2,), float("nan")), 0), InputError, r"z holds NaN"),
        (lambda m: m.encode(X, [0, 1]), ConditionError, r"'label' of the condition has 2 values for 4 images"),
        (lambda m: m.encode(X, 3), ConditionError, r"column 'label' has class 3, .* knows classes 0..2"),
        (lambda m: m.decode(torch.zeros(2), 0.5), ConditionError, r"must hold class indices, got fractional values"),
        (lambda m: m.decode(torch.zeros(2), float("nan")), ConditionError, r"must hold class indices"),
        (lambda m: m.reconstruct(X, None), ConditionError, r"this model is conditional: pass its condition"),
        (lambda m: m.encode(X, {"ink": LABELS}), ConditionError, r"the condition lacks column\(s\) label"),
        (lambda m: m.sample(2.5, labels=1), ValueError, r"n is the number of images, an integer >= 0; got 2.5"),
        (lambda m: m.sample(3, labels=[0, 1]), ConditionError, r"has 2 values for 3 images"),
    ],
    ids=[
        "no channel axis",
        "0..255 floats",
        "bool images",
        "codes of 3",
        "NaN code",
        "2 labels for 4 images",
        "unknown class",
        "fractional class",
        "NaN class",
        "no condition",
        "another column",
        "n=2.5",
        "3 of 2",
    ],
)
def test_what_a_model_cannot_take_is_refused_in_one_message(tiny_cvae, call, error, says) -> None:
    with pytest.raises(error, match=says):
        call(tiny_cvae)


def test_an_unconditional_model_refuses_a_condition() -> None:
    vae = genreg.build_model({"type": "vae", **TINY_PARTS}, genreg.DataInfo((1, 6, 6), 3)).eval()
    assert vae.encode(PIXELS[0]).shape == (2,) and vae.reconstruct(PIXELS).shape == (4, 1, 6, 6)
    with pytest.raises(ConditionError, match=r"this model is not conditional: it takes no condition"):
        vae.encode(PIXELS, LABELS)


@needs_cuda
def test_inputs_on_the_cpu_go_to_a_model_on_cuda(tiny_cvae) -> None:
    model = small_cvae().eval().to("cuda")
    z = model.encode(PIXELS, LABELS.numpy())
    assert z.device.type == "cuda"
    assert torch.allclose(z.cpu(), tiny_cvae.encode(PIXELS, LABELS), atol=1e-5)
    assert model.reconstruct(X, LABELS).device.type == "cuda" and model.decode(z.cpu(), 1).device.type == "cuda"
    assert model.sample(2, labels=torch.tensor(1)).device.type == "cuda"


def test_training_and_evaluation_never_go_through_the_conversions(monkeypatch) -> None:
    """The trainer's hot path feeds ``forward`` batches checked when the data loaded: it stays as fast as it was."""
    from genreg.model import inputs

    for name in ("as_images", "as_codes", "condition_values", "frame_values"):
        monkeypatch.setattr(inputs, name, lambda *args, **kwargs: pytest.fail("the trainer converted its input"))
    images, labels = torch.rand(64, 1, 6, 6), torch.arange(64) % 3
    data = genreg.DataSplits(genreg.Split(images, labels), genreg.Split(images[:16], labels[:16]), 3)
    model = small_cvae()
    history = genreg.train(model, data, genreg.TrainConfig(epochs=1, batch_size=32, device="cpu"), progress=False)
    assert math.isfinite(history.history[-1]["test"]["loss"])
