"""Tests plugins/genreg_builtin/conditioners.py: one-hot rows, a learnable embedding, too few classes refused,
and the continuous conditioner: the ink of generated digits rises with the asked ink."""

from __future__ import annotations

import pytest
import torch

import genreg
from genreg.errors import AssemblyError
from genreg_builtin.conditioners import Embedding, EmbeddingConfig, OneHot, OneHotConfig
from tests.helpers import INK_CVAE

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


# --------------------------------------------------------------------------- the continuous conditioner


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Each value's rank 0..n-1 (the values here are distinct, so ties need no averaging)."""
    return values.argsort().argsort().double()


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks."""
    return float(torch.corrcoef(torch.stack([ranks(a), ranks(b)]))[0, 1])


def test_spearman_reads_order_not_scale() -> None:
    x = torch.tensor([0.1, 0.5, 0.2, 3.0, 0.3])
    assert spearman(x, x.exp()) == pytest.approx(1.0)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)
    assert spearman(torch.arange(4.0), torch.tensor([1.0, 0.0, 3.0, 2.0])) == pytest.approx(0.6)


@pytest.mark.slow
def test_generated_ink_rises_with_the_asked_ink(mnist: genreg.DataSplits) -> None:
    """Continuous condition: after short training, the mean ink of generated digits rises with the asked ink."""
    torch.manual_seed(0)
    model = genreg.build_model(INK_CVAE, mnist.info)
    genreg.train(model, mnist, genreg.TrainConfig(epochs=4, batch_size=64, device="cpu"), progress=False)
    part = model.eval().conditioner.part("ink")
    asked = torch.linspace(float(part.low), float(part.high), 9)
    torch.manual_seed(1)
    measured = torch.stack(
        [
            model.sample(condition={"label": torch.arange(100) % 10, "ink": torch.full((100,), ink)}).mean()
            for ink in asked
        ]
    )
    rho = spearman(asked, measured)
    assert rho >= 0.9, f"Spearman {rho:.3f}: asked {asked.tolist()}, generated {measured.tolist()}"
