"""Tests genreg/training/optim.py: the direct fused Adam update equals ``Optimizer.step`` bit for bit and is
what CPU steps use; on CUDA, bf16 learns as well as fp32."""

from __future__ import annotations

import pytest
import torch

import genreg
from genreg.spec import TrainConfig
from genreg.training.optim import FusedAdamStep, make_optimizer
from genreg.training.steps import make_steps
from tests.helpers import CUDA_AE, needs_cuda, small_data, trained_on_cuda

MLP = {"type": "mlp", "hidden": [16]}
AE = {"type": "ae", "latent_dim": 3, "encoder": MLP, "decoder": MLP}


def stepped_twins(config: TrainConfig, steps: int) -> tuple[tuple, tuple, FusedAdamStep]:
    """The same AE trained ``steps`` steps through FusedAdamStep and through optimizer.step, with the learning
    rate changed before each (read on every call, as a schedule sets it): ((weights, optimiser state) of the
    direct twin, the same of the reference, the direct twin's update)."""
    data = small_data(64)
    twins, direct_update = [], None
    for direct in (True, False):
        torch.manual_seed(0)
        model = genreg.build_model(AE, data.info)
        opt = make_optimizer(model, config, torch.device("cpu"))
        update = FusedAdamStep(opt) if direct else opt.step
        direct_update = direct_update or update
        for step in range(steps):
            opt.param_groups[0]["lr"] = config.lr / (step + 1)
            torch.manual_seed(step)
            model.zero_grad(set_to_none=True)
            model.loss(data.train.images[:32])[0].backward()
            update()
        twins.append((model.state_dict(), opt.state_dict()))
    return twins[0], twins[1], direct_update


def assert_same_training(twin: tuple, reference: tuple) -> None:
    (weights, state), (ref_weights, ref_state) = twin, reference
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)
    for p, ref in ref_state["state"].items():
        assert all(torch.equal(state["state"][p][k], ref[k]) for k in ref)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_the_direct_fused_update_equals_optimizer_step(optimizer: str) -> None:
    """FusedAdamStep must leave the same weights and optimiser state as Optimizer.step, bit for bit."""
    config = TrainConfig(device="cpu", optimizer=optimizer, weight_decay=0.01, lr=3e-3)
    direct, reference, update = stepped_twins(config, steps=4)
    assert update.direct is True  # the kernel passed its first-call check, so the later steps were direct calls
    assert_same_training(direct, reference)


def test_cpu_steps_use_the_direct_fused_update() -> None:
    data = small_data(64)
    model = genreg.build_model(AE, data.info)
    config = TrainConfig(device="cpu")
    steps = make_steps(model, make_optimizer(model, config, torch.device("cpu")), data.train, config, data.binarize)
    assert steps.optimizer_step.form == "direct"
    assert isinstance(steps.optimizer_step.update, FusedAdamStep)


@needs_cuda
def test_bf16_vae_learns_as_well_as_fp32() -> None:
    spec = {**CUDA_AE, "type": "vae"}
    data = small_data(2000)
    _, fp32 = trained_on_cuda(spec, data, epochs=3, precision="fp32")
    _, bf16 = trained_on_cuda(spec, data, epochs=3, precision="bf16")
    assert bf16[-1]["test"]["loss"] < bf16[0]["test"]["loss"]
    assert abs(bf16[-1]["test"]["loss"] - fp32[-1]["test"]["loss"]) < 2.0


def test_a_direct_kernel_that_fails_its_check_warns_and_steps_with_optimizer_step(monkeypatch) -> None:
    """The kernel is private to PyTorch: one that raises (a changed signature, say) is not used again, and
    the weights are those of optimizer.step."""

    def broken(self, group, grads):  # the direct call, as a torch whose kernel changed its arguments answers it
        raise TypeError("_fused_adam_() got an unexpected keyword argument 'lr'")

    monkeypatch.setattr(FusedAdamStep, "_kernel", broken)
    with pytest.warns(UserWarning, match="cannot be called directly .*TypeError"):
        direct, reference, update = stepped_twins(TrainConfig(device="cpu", lr=3e-3), steps=3)
    assert update.direct is False
    assert_same_training(direct, reference)
