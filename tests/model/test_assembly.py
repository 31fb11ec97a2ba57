"""Tests genreg/model/assembly.py: a recipe builds the parts its spec names; ``build_model`` validates a raw
spec; condition columns the data lacks are named; ``condition_encoder`` (on by default, recorded in the spec,
a warning when off); the spec of a model composed by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import genreg
from genreg.errors import AssemblyError, SpecError
from genreg.model.losses import metric_units
from genreg.training.runner import prepare
from genreg_builtin.conditioners import Embedding
from genreg_builtin.conv import ConvDecoder, ConvEncoder
from genreg_builtin.latents import GaussianLatent
from genreg_builtin.losses import BCE, BCEConfig, Term
from tests.helpers import INJECTION_INFO, TINY_PARTS, injection_cvae, part_outputs

INFO = genreg.DataInfo((1, 4, 4), 2)


def test_cvae_parts_are_swapped_by_name(conv_cvae):
    assert isinstance(conv_cvae.encoder, ConvEncoder)
    assert isinstance(conv_cvae.decoder, ConvDecoder)
    assert isinstance(conv_cvae.conditioner.part("label"), Embedding)
    assert isinstance(conv_cvae.latent, GaussianLatent)
    assert conv_cvae.conditional and conv_cvae.loss_names == ["bce", "kld"]
    assert conv_cvae.conditioner.parts[0].table.weight.shape == (10, 6)
    assert conv_cvae.spec["conditioner"] == [{"type": "embedding", "column": "label", "num_classes": 10, "dim": 6}]


def test_build_model_validates_a_raw_model_spec():
    with pytest.raises(SpecError) as info:
        genreg.build_model({"type": "vae", "encoder": {"type": "mlp", "hiden": [3]}}, genreg.DataInfo((1, 8, 8), 3))
    assert (
        "encoder.hiden: unknown field; allowed here: activation, condition, dropout, hidden, input, norm, type"
        in str(info.value)
    )


def test_column_errors_at_assembly_name_the_column(mnist) -> None:
    with pytest.raises(
        AssemblyError,
        match=r"conditioner\[1\] \(column 'dose'\): the data has no column 'dose'; its columns: label, ink",
    ):
        genreg.build_model({"type": "cvae", "conditioner": [{"type": "onehot"}, {"type": "onehot", "column": "dose"}]},
                           mnist.info)  # fmt: skip
    with pytest.raises(AssemblyError, match=r"column 'ink' is continuous .* use a continuous conditioner"):
        genreg.build_model({"type": "cvae", "conditioner": {"type": "onehot", "column": "ink"}}, mnist.info)
    with pytest.raises(SpecError, match=r"conditioner: .*at least one conditioner"):
        genreg.build_model({"type": "cvae", "conditioner": []}, mnist.info)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_an_unconditioned_encoder_warns_and_ignores_the_label(kind: str) -> None:
    with pytest.warns(UserWarning, match=r"condition_encoder is false: the encoder ignores the class label"):
        model = injection_cvae(kind, condition_encoder=False).eval()
    (f0, l0), (f1, l1) = part_outputs(model, 0), part_outputs(model, 7)
    assert torch.equal(f0, f1)
    assert not torch.allclose(l0, l1)
    assert model.spec["condition_encoder"] is False
    x, labels = torch.rand(2, *INJECTION_INFO.image_shape), torch.tensor([0, 7])
    assert torch.equal(model.encode(x, labels), model.encode(x))
    assert model(x, labels).logits.shape == (2, *INJECTION_INFO.image_shape)


def test_the_resolved_spec_states_encoder_conditioning() -> None:
    spec = {"model": {"type": "cvae"}, "data": {"type": "mnist-sample"}}
    assert prepare(genreg.validate_spec(spec)).resolved["model"]["condition_encoder"] is True
    with pytest.warns(UserWarning, match=r"q\(z\|x\)"):
        off = prepare(genreg.validate_spec({**spec, "model": {"type": "cvae", "condition_encoder": False}}))
    assert off.resolved["model"]["condition_encoder"] is False


def test_an_unconditioned_encoder_round_trips(tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        model = injection_cvae("mlp", condition_encoder=False).eval()
        loaded = genreg.load_model(genreg.save_model(model, tmp_path / "model.safetensors"))
    assert loaded.condition_encoder is False
    assert torch.equal(part_outputs(model, 3)[1], part_outputs(loaded, 3)[1])


def test_hand_composed_models_record_encoder_conditioning() -> None:
    model = injection_cvae("mlp", "every-layer")
    model.spec = None
    spec = genreg.derive_spec(model)
    assert spec["condition_encoder"] is True and spec["encoder"]["condition"] == "every-layer"
    rebuilt = genreg.build_model(spec, INJECTION_INFO)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


class OneConditionerConfig(genreg.ComposedModelConfig):
    """A recipe that declares a single conditioner rather than OneOrMore (as plugin recipes may)."""

    latent_dim: int = 2
    encoder: genreg.Part("encoder") = {"type": "mlp", "hidden": [4]}
    latent: genreg.Part("latent") = {"type": "gaussian"}
    decoder: genreg.Part("decoder") = {"type": "mlp", "hidden": [4]}
    conditioner: genreg.Part("conditioner") = {"type": "onehot"}
    losses: list[genreg.Part("loss")] = [{"type": "bce"}, {"type": "kld"}]


class OneConditionerPlugin:
    @genreg.hookimpl
    def register_components(self, register):
        register("model", "one-conditioner", genreg.compose_model, OneConditionerConfig)


def test_a_recipe_with_one_conditioner_part_builds_saves_and_loads(tmp_path: Path) -> None:
    genreg.register_plugin(OneConditionerPlugin(), "one-conditioner")
    try:
        model = genreg.build_model({"type": "one-conditioner"}, genreg.DataInfo((1, 4, 4), 3))
        assert model.conditioner.columns == ["label"] and model.conditioner.num_classes == 3
        assert model.spec["conditioner"] == {"type": "onehot", "column": "label", "num_classes": 3}
        genreg.save_model(model, tmp_path / "m.safetensors")
        assert genreg.load_model(tmp_path / "m.safetensors").conditioner.num_classes == 3
    finally:
        genreg.unregister_plugin("one-conditioner")


# --------------------------------------------------------------------------- issue 16, case 12: a loss term's shape


class ScalarBCE(BCE):
    """Reduces over the batch itself: one value, though it does not say it is batch-level."""

    def forward(self, x, out):
        return super().forward(x, out).mean()


class PixelBCE(BCE):
    """Forgets to sum over pixels: (B, C*H*W)."""

    def forward(self, x, out):
        return -F.logsigmoid(out.logits).flatten(1)


class BatchMMD(Term):
    """A batch-level term: one value for the batch, as it says."""

    batch_level = True
    unit = "MMD² per batch"

    def forward(self, x, out):
        return out.latent.z.pow(2).mean()


class BadLosses:
    @genreg.hookimpl
    def register_components(self, register):
        register("loss", "scalar-bce", ScalarBCE, BCEConfig)
        register("loss", "pixel-bce", PixelBCE, BCEConfig)
        register("loss", "batch-mmd", BatchMMD, BCEConfig)


@pytest.fixture
def bad_losses():
    genreg.register_plugin(BadLosses(), "bad-losses")
    yield
    genreg.unregister_plugin("bad-losses")


@pytest.mark.parametrize(
    ("term", "shape"), [("scalar-bce", "a tensor of shape ()"), ("pixel-bce", "a tensor of shape (2, 16)")]
)
def test_a_loss_term_of_the_wrong_shape_is_refused_naming_its_plugin(bad_losses, term: str, shape: str) -> None:
    """Case 12 of issue 16: a plugin term returning a scalar or (B, d) trained without complaint."""
    with pytest.raises(AssemblyError) as caught:
        genreg.build_model({"type": "vae", **TINY_PARTS, "losses": [{"type": term}, {"type": "kld"}]}, INFO)
    assert str(caught.value) == (
        f"loss '{term}' (plugin 'bad-losses') returned {shape} on a batch of 2 images; it must return one value "
        "per image, shape (2,), as floats. A loss term returns one value per image, or sets batch_level = True and "
        "returns one value per batch (see genreg.plugin.protocols)."
    )


def test_a_batch_level_term_builds_trains_and_shows_its_unit(bad_losses) -> None:
    spec = {"type": "vae", **TINY_PARTS, "losses": [{"type": "bce"}, {"type": "kld"}, {"type": "batch-mmd"}]}
    model = genreg.build_model(spec, INFO)
    split = genreg.Split(torch.rand(8, 1, 4, 4), torch.arange(8) % 2)
    test = genreg.average_losses(model, split, genreg.TrainConfig(device="cpu"))
    assert test["loss"] == pytest.approx(test["bce"] + test["kld"] + test["batch-mmd"], rel=1e-5)
    assert test["neg_elbo"] == pytest.approx(test["bce"] + test["kld"], rel=1e-5)  # the MMD is not in the ELBO
    assert metric_units(model.losses) == {
        "loss": "(weighted sum of mixed units)",
        "bce": "nats/image",
        "kld": "nats/image",
        "batch-mmd": "MMD² per batch",
        "neg_elbo": "nats/image",
    }


def test_a_term_named_like_the_objective_is_refused(bad_losses) -> None:
    with pytest.raises(SpecError, match="'neg_elbo' is reserved for the test -ELBO"):
        genreg.build_model({"type": "vae", "losses": [{"type": "bce", "name": "neg_elbo"}]}, INFO)
