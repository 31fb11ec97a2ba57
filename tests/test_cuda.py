"""The CUDA paths of the trainer: graph capture, torch.compile and bf16 give the same training.

Skipped where no GPU is present (CI); run them on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import pytest
import torch

import genreg
from genreg.errors import NonFiniteLossError
from genreg.training.optim import make_optimizer
from genreg.training.steps import GraphedSteps, make_steps

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MLP = {"type": "mlp", "hidden": [32]}
AE = {"type": "ae", "latent_dim": 4, "encoder": MLP, "decoder": MLP}


def small_data(n_train: int = 600) -> genreg.DataSplits:
    """mnist-sample cut to ``n_train`` images: not a multiple of the batch, so the last batch is short."""
    data = genreg.load_data({"type": "mnist-sample"})
    train = genreg.Split(data.train.images[:n_train], data.train.labels[:n_train])
    return genreg.DataSplits(train, data.test, data.num_classes, data.binarize)


def trained(spec: dict, data: genreg.DataSplits, epochs: int = 2, **train) -> tuple[genreg.GenerativeModel, list]:
    torch.manual_seed(0)
    model = genreg.build_model(spec, data.info)
    config = genreg.TrainConfig(epochs=epochs, batch_size=64, device="cuda", **train)
    history = genreg.train(model, data, config, seed=0, progress=False).history
    return model, history


def max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_auto_captures_a_graph_on_cuda() -> None:
    data = small_data()
    model = genreg.build_model(AE, data.info).cuda()
    config = genreg.TrainConfig(device="cuda")
    optimizer = make_optimizer(model, config, torch.device("cuda"))
    assert isinstance(make_steps(model, optimizer, data.train.to("cuda"), config, data.binarize), GraphedSteps)


def test_graph_replay_trains_like_eager_steps() -> None:
    """A deterministic model (AE, no sampling): the captured steps compute what the eager steps compute.

    1,500 images at batch 64: 3 eager warm-up steps, two unrolled graphs of 8, four one-step graphs, the tail.
    """
    data = small_data(1500)
    eager, eager_history = trained(AE, data, cuda_graph=False, compile=False, precision="fp32")
    graphed, graphed_history = trained(AE, data, cuda_graph=True, compile=False, precision="fp32")
    assert max_difference(eager, graphed) < 1e-4
    assert graphed_history[-1]["train"]["loss"] == pytest.approx(eager_history[-1]["train"]["loss"], rel=1e-4)


def test_compiled_loss_trains_like_eager() -> None:
    data = small_data()
    eager, _ = trained(AE, data, cuda_graph=False, compile=False, precision="fp32")
    compiled, _ = trained(AE, data, cuda_graph=True, compile=True, precision="fp32")
    assert max_difference(eager, compiled) < 1e-3


def test_bf16_vae_learns_as_well_as_fp32() -> None:
    spec = {**AE, "type": "vae"}
    data = small_data(2000)
    _, fp32 = trained(spec, data, epochs=3, precision="fp32")
    _, bf16 = trained(spec, data, epochs=3, precision="bf16")
    assert bf16[-1]["test"]["loss"] < bf16[0]["test"]["loss"]
    assert abs(bf16[-1]["test"]["loss"] - fp32[-1]["test"]["loss"]) < 2.0


def test_resume_with_graphs_matches_an_uninterrupted_run(tmp_path) -> None:
    data = small_data()
    straight, _ = trained(AE, data, epochs=3, precision="fp32")
    torch.manual_seed(0)
    model = genreg.build_model(AE, data.info)
    config = genreg.TrainConfig(epochs=2, batch_size=64, device="cuda", precision="fp32")
    genreg.train(model, data, config, seed=0, progress=False, run_dir=tmp_path)
    resumed = genreg.build_model(AE, data.info)
    config = config.model_copy(update={"epochs": 3})
    genreg.train(resumed, data, config, seed=0, progress=False, run_dir=tmp_path, resume=True)
    assert max_difference(straight, resumed) < 1e-4


def test_non_finite_loss_stops_with_the_step_on_cuda() -> None:
    data = small_data()
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step \d+ \(.*bce"):
        trained(AE, data, epochs=1, lr=1e12)
