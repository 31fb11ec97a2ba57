"""Tests genreg/training/steps.py, one epoch's steps: every image once per epoch, non-finite losses caught
with their epoch, step and term, eager on the CPU; on CUDA, captured graphs and a compiled loss train like
eager steps and resume like an uninterrupted run.

The CUDA tests are skipped where no GPU is present (CI); run them on a GPU machine with
``pytest tests/training/test_steps.py tests/training/test_optim.py``."""

from __future__ import annotations

import json

import pytest
import torch

import genreg
from genreg.errors import NonFiniteLossError
from genreg.files.run_folder import RunFolder
from genreg.spec import TrainConfig
from genreg.training.optim import make_optimizer
from genreg.training.steps import GraphedSteps, Steps, make_steps
from tests.helpers import CUDA_AE, needs_cuda, small_data, trained_on_cuda

MLP = {"type": "mlp", "hidden": [16]}
AE = {"type": "ae", "latent_dim": 3, "encoder": MLP, "decoder": MLP}


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


def test_auto_is_eager_and_uncompiled_on_cpu() -> None:
    data = small_data(64)
    model = genreg.build_model(AE, data.info)
    config = TrainConfig(device="cpu")
    steps = make_steps(model, make_optimizer(model, config, torch.device("cpu")), data.train, config, data.binarize)
    assert type(steps) is Steps and steps.batch_loss == steps._batch_loss


# --------------------------------------------------------------------------- on CUDA


def max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


@needs_cuda
def test_auto_captures_a_graph_on_cuda() -> None:
    data = small_data()
    model = genreg.build_model(CUDA_AE, data.info).cuda()
    config = genreg.TrainConfig(device="cuda")
    optimizer = make_optimizer(model, config, torch.device("cuda"))
    assert isinstance(make_steps(model, optimizer, data.train.to("cuda"), config, data.binarize), GraphedSteps)


@needs_cuda
def test_graph_replay_trains_like_eager_steps() -> None:
    """A deterministic model (AE, no sampling): the captured steps compute what the eager steps compute.

    1,500 images at batch 64: 3 eager warm-up steps, two unrolled graphs of 8, four one-step graphs, the tail.
    """
    data = small_data(1500)
    eager, eager_history = trained_on_cuda(CUDA_AE, data, cuda_graph=False, compile=False, precision="fp32")
    graphed, graphed_history = trained_on_cuda(CUDA_AE, data, cuda_graph=True, compile=False, precision="fp32")
    assert max_difference(eager, graphed) < 1e-4
    assert graphed_history[-1]["train"]["loss"] == pytest.approx(eager_history[-1]["train"]["loss"], rel=1e-4)


@needs_cuda
def test_compiled_loss_trains_like_eager() -> None:
    data = small_data()
    eager, _ = trained_on_cuda(CUDA_AE, data, cuda_graph=False, compile=False, precision="fp32")
    compiled, _ = trained_on_cuda(CUDA_AE, data, cuda_graph=True, compile=True, precision="fp32")
    assert max_difference(eager, compiled) < 1e-3


@needs_cuda
def test_resume_with_graphs_matches_an_uninterrupted_run(tmp_path) -> None:
    data = small_data()
    straight, _ = trained_on_cuda(CUDA_AE, data, epochs=3, precision="fp32")
    torch.manual_seed(0)
    model = genreg.build_model(CUDA_AE, data.info)
    config = genreg.TrainConfig(epochs=2, batch_size=64, device="cuda", precision="fp32")
    genreg.train(model, data, config, seed=0, progress=False, run_dir=tmp_path)
    resumed = genreg.build_model(CUDA_AE, data.info)
    config = config.model_copy(update={"epochs": 3})
    genreg.train(resumed, data, config, seed=0, progress=False, run_dir=tmp_path, resume=True)
    assert max_difference(straight, resumed) < 1e-4


@needs_cuda
def test_non_finite_loss_stops_with_the_step_on_cuda() -> None:
    data = small_data()
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step \d+ \(.*bce"):
        trained_on_cuda(CUDA_AE, data, epochs=1, lr=1e12)


# --------------------------------------------------------------------------- issue 16, case 17


@pytest.mark.slow
def test_a_non_finite_loss_gives_a_command_that_works(tmp_path) -> None:
    """Case 17 of issue 16: the message advised lowering train.lr, which --resume refuses to change."""
    import shlex

    from tests.helpers import EXAMPLES, SMALL_RUN, invoke

    run = tmp_path / "run"
    first = invoke("run", EXAMPLES / "ae.json", "--out", run, "--set", "train.lr=1e12", *SMALL_RUN, "--quiet")
    assert first.exit_code == 2 and "the loss became non-finite at epoch 1" in first.stderr
    command = f"genreg run {run / 'spec.json'} --set train.lr=1e+11 --out {run}-lr1e+11"
    assert f"Train it again as a new run with a lower learning rate: {command} (add" in first.stderr
    assert "--resume cannot change train.lr or train.grad_clip" in first.stderr
    again = invoke(*shlex.split(command)[1:], "--quiet")
    assert "the loss became non-finite at epoch 1" in again.stderr  # it trained: lr 1e11 is still far too high
    assert json.loads((tmp_path / "run-lr1e+11" / "spec.json").read_text())["train"]["lr"] == 1e11


def test_without_a_run_folder_the_advice_is_a_lower_lr() -> None:
    data = small_data(256)
    model = genreg.build_model(AE, data.info)
    config = TrainConfig(epochs=1, batch_size=64, lr=1e12, device="cpu")
    with pytest.raises(NonFiniteLossError, match=r"Train again from the start with a lower train.lr \(e.g. 1e\+11\)"):
        genreg.train(model, data, config, progress=False)
