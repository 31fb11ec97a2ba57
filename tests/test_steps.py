"""The training step on CPU: every image once per epoch, non-finite losses caught, fast-path settings validated."""

from __future__ import annotations

import pytest
import torch

import genreg
from genreg.errors import NonFiniteLossError, SpecError
from genreg.files.run_folder import RunFolder
from genreg.spec import TrainConfig
from genreg.training.optim import FusedAdamStep, make_optimizer
from genreg.training.steps import Steps, make_steps

MLP = {"type": "mlp", "hidden": [16]}
AE = {"type": "ae", "latent_dim": 3, "encoder": MLP, "decoder": MLP}


def small_data(n_train: int) -> genreg.DataSplits:
    data = genreg.load_data({"type": "mnist-sample"})
    train = genreg.Split(data.train.images[:n_train], data.train.labels[:n_train])
    return genreg.DataSplits(train, data.test, data.num_classes, data.binarize)


def test_an_epoch_sees_every_image_once_including_the_short_last_batch() -> None:
    """With a learning rate too small to move the weights, the epoch's mean equals the loss over the split."""
    data = small_data(250)  # batch 64: three full batches and a tail of 58
    torch.manual_seed(0)
    model = genreg.build_model(AE, data.info)
    config = TrainConfig(batch_size=64, lr=1e-30, device="cpu")
    steps = make_steps(model, make_optimizer(model, config, torch.device("cpu")), data.train, config, data.binarize)
    assert type(steps) is Steps and (steps.full_batches, steps.tail, steps.count) == (3, 58, 4)
    sums = steps.epoch(torch.randperm(250), torch.ones(4, 1), on_step=lambda s: None)
    expected = genreg.average_losses(model, data.train, config)["loss"]
    assert (sums[0] / 250).item() == pytest.approx(expected, rel=1e-5)
    assert int(steps.step_index) == 4


def test_a_non_finite_loss_names_epoch_step_and_term() -> None:
    data = small_data(256)
    model = genreg.build_model(AE, data.info)
    config = TrainConfig(epochs=2, batch_size=64, lr=1e12, device="cpu")
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1, step [2-4] \(.*bce = (nan|inf)"):
        genreg.train(model, data, config, progress=False)


def test_a_run_stopped_by_a_non_finite_loss_keeps_its_last_checkpoint(tmp_path) -> None:
    data = small_data(256)
    model = genreg.build_model(AE, data.info)
    saved = {}

    def poison_after_the_first_epoch(record: dict) -> None:
        saved["bytes"] = (tmp_path / "checkpoint.safetensors").read_bytes()
        with torch.no_grad():
            model.decoder.net[0].weight[0, 0] = float("inf")

    config = TrainConfig(epochs=3, batch_size=64, device="cpu")
    with pytest.raises(NonFiniteLossError, match=r"at epoch 2, step \d+ \("):
        genreg.train(
            model,
            data,
            config,
            progress=False,
            run_dir=tmp_path,
            callbacks=[genreg.EveryEpoch(poison_after_the_first_epoch)],
        )
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == saved["bytes"]
    assert [r["epoch"] for r in RunFolder(tmp_path).read_metrics()] == [1]


@pytest.mark.parametrize("field", ["compile", "cuda_graph"])
def test_fast_path_settings_are_auto_true_or_false(field: str) -> None:
    assert getattr(TrainConfig(), field) == "auto"
    assert getattr(TrainConfig(**{field: False}), field) is False
    with pytest.raises(SpecError, match=f"train.{field}"):
        genreg.validate_spec({"model": {"type": "vae"}, "data": {"type": "mnist-sample"}, "train": {field: "yes"}})


def test_auto_is_eager_and_uncompiled_on_cpu() -> None:
    data = small_data(64)
    model = genreg.build_model(AE, data.info)
    config = TrainConfig(device="cpu")
    steps = make_steps(model, make_optimizer(model, config, torch.device("cpu")), data.train, config, data.binarize)
    assert type(steps) is Steps and steps.batch_loss == steps._batch_loss


def test_resume_drops_a_metrics_line_cut_short_by_a_crash(tmp_path) -> None:
    data = small_data(256)
    torch.manual_seed(0)
    model = genreg.build_model(AE, data.info)
    config = TrainConfig(epochs=1, batch_size=64, device="cpu")
    genreg.train(model, data, config, progress=False, run_dir=tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 2, "train": {"lo')  # killed while appending epoch 2's line
    longer = config.model_copy(update={"epochs": 2})
    genreg.train(model, data, longer, progress=False, run_dir=tmp_path, resume=True)
    assert [r["epoch"] for r in RunFolder(tmp_path).read_metrics()] == [1, 2]


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_the_direct_fused_update_equals_optimizer_step(optimizer: str) -> None:
    """FusedAdamStep must leave the same weights and optimiser state as Optimizer.step, bit for bit."""
    data = small_data(64)
    config = TrainConfig(device="cpu", optimizer=optimizer, weight_decay=0.01, lr=3e-3)
    twins = []
    for direct in (True, False):
        torch.manual_seed(0)
        model = genreg.build_model(AE, data.info)
        opt = make_optimizer(model, config, torch.device("cpu"))
        update = FusedAdamStep(opt) if direct else opt.step
        for step in range(4):
            opt.param_groups[0]["lr"] = 3e-3 / (step + 1)  # read on every call, as a schedule would set it
            torch.manual_seed(step)
            model.zero_grad(set_to_none=True)
            model.loss(data.train.images[:32])[0].backward()
            update()
        if direct:  # the kernel passed its first-call check, so the later steps were direct calls
            assert update.direct is True
        twins.append((model.state_dict(), opt.state_dict()))
    (weights, state), (ref_weights, ref_state) = twins
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)
    for p, ref in ref_state["state"].items():
        assert all(torch.equal(state["state"][p][k], ref[k]) for k in ref)


def test_cpu_steps_use_the_direct_fused_update() -> None:
    data = small_data(64)
    model = genreg.build_model(AE, data.info)
    config = TrainConfig(device="cpu")
    steps = make_steps(model, make_optimizer(model, config, torch.device("cpu")), data.train, config, data.binarize)
    assert isinstance(steps.optimizer_step, FusedAdamStep)
