"""The built-in loss terms compute the documented formulas, with correct gradients, schedules and totals.

Science: decoders emit logits; ``bce`` is BCE-with-logits summed over pixels per
example (equal to Sigmoid + nn.BCELoss); ``mse`` is the squared error of
sigmoid(logits) summed over pixels; ``kld`` is
-0.5 * sum(1 + log_var - mu^2 - exp(log_var)) over latent dims, per example,
i.e. KL(N(mu, exp(log_var)) || N(0, I)).
"""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

import genreg
from genreg.model.losses import LossTermConfig
from genreg.plugin.protocols import LatentSample, ModelOutput
from genreg.spec import build_part
from genreg.spec.builder import builder_for
from genreg_builtin.losses import BCE, KLD, MSE, BCEConfig, KLDConfig, MSEConfig


def make_output(
    logits: torch.Tensor | None = None, mu: torch.Tensor | None = None, log_var: torch.Tensor | None = None
) -> ModelOutput:
    """A ModelOutput built by hand; z is mu (irrelevant to every term)."""
    if logits is None:
        logits = torch.zeros(mu.shape[0], 1, 1, 1, dtype=mu.dtype)
    params = {} if mu is None else {"mu": mu, "log_var": log_var}
    z = mu if mu is not None else torch.zeros(logits.shape[0], 1, dtype=logits.dtype)
    return ModelOutput(logits, LatentSample(z, params))


def kld_term(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    return KLD(KLDConfig())(torch.zeros(mu.shape[0], 1, 1, 1, dtype=mu.dtype), make_output(mu=mu, log_var=log_var))


def bce_term(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return BCE(BCEConfig())(x, make_output(logits))


def mse_term(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return MSE(MSEConfig())(x, make_output(logits))


# --------------------------------------------------------------------------- kld


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kld_equals_monte_carlo_kl_to_standard_normal(seed):
    """Closed form vs E_q[log q(z) - log p(z)] from 200k samples, within 5 standard errors."""
    torch.manual_seed(seed)
    dim, n = 4, 200_000
    mu = torch.randn(1, dim, dtype=torch.float64) * 1.5
    log_var = torch.rand(1, dim, dtype=torch.float64) * 3 - 1.5
    q = Normal(mu[0], (0.5 * log_var[0]).exp())
    p = Normal(torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64))
    z = q.sample((n,))
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1)
    mc, stderr = log_ratio.mean().item(), log_ratio.std().item() / math.sqrt(n)

    closed = kld_term(mu, log_var)
    assert closed.shape == (1,)
    assert stderr < 0.02  # the tolerance below is meaningful
    assert abs(closed.item() - mc) < 5 * stderr, (closed.item(), mc, stderr)


def test_kld_is_per_example_and_equals_analytic_kl():
    torch.manual_seed(3)
    mu = torch.randn(5, 3)
    log_var = torch.randn(5, 3)
    expected = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(1)
    value = kld_term(mu, log_var)
    assert value.shape == (5,)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5)
    # Each example depends on its own row only.
    torch.testing.assert_close(kld_term(mu[2:3], log_var[2:3]), value[2:3])


def test_kld_is_zero_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(2, 6)
    assert torch.equal(kld_term(zeros, zeros), torch.zeros(2))

    torch.manual_seed(4)
    mu = torch.randn(1000, 6)
    log_var = torch.randn(1000, 6)
    assert (kld_term(mu, log_var) > 0).all()
    # Moving one coordinate away from the prior (mean or variance) alone makes it positive.
    for k, (m, lv) in enumerate([(0.1, 0.0), (0.0, 0.1), (0.0, -0.1), (-2.0, 0.0)]):
        mu1, lv1 = zeros[:1].clone(), zeros[:1].clone()
        mu1[0, k], lv1[0, k] = m, lv
        expected = 0.5 * (m**2 + math.exp(lv) - 1 - lv)
        assert kld_term(mu1, lv1).item() == pytest.approx(expected, rel=1e-4)
        assert kld_term(mu1, lv1).item() > 0


# --------------------------------------------------------------------------- bce


@pytest.mark.parametrize("binary", [False, True])
def test_bce_equals_sigmoid_plus_bceloss_summed_over_pixels(binary):
    torch.manual_seed(5)
    logits = torch.randn(4, 2, 5, 6) * 3
    x = torch.rand(4, 2, 5, 6)
    if binary:
        x = x.round()
    reference = nn.BCELoss(reduction="none")(torch.sigmoid(logits), x).flatten(1).sum(1)
    value = bce_term(x, logits)
    assert value.shape == (4,)
    torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-4)


def test_bce_stays_finite_and_exact_for_huge_logits():
    logits = torch.tensor([100.0, -100.0, 100.0, -100.0]).view(1, 1, 2, 2).requires_grad_()
    wrong = torch.tensor([0.0, 1.0, 0.0, 1.0]).view(1, 1, 2, 2)  # every pixel confidently wrong
    value = bce_term(wrong, logits)
    assert torch.isfinite(value).all()
    assert value.item() == pytest.approx(400.0, rel=1e-6)  # softplus(100) = 100 per pixel
    (grad,) = torch.autograd.grad(value.sum(), logits)
    torch.testing.assert_close(grad, torch.sigmoid(logits.detach()) - wrong)  # +-1: still learning

    right = 1.0 - wrong
    assert bce_term(right, logits.detach()).item() == pytest.approx(0.0, abs=1e-30)

    # Sigmoid + BCELoss saturates there: its gradient vanishes, and its value is clamped at 100.
    probs = torch.sigmoid(logits)
    (grad_ref,) = torch.autograd.grad(nn.BCELoss(reduction="sum")(probs, wrong), logits)
    assert grad_ref.abs().max() < 1e-6  # the true gradient is +-1
    huge = torch.tensor([1000.0, -1000.0]).view(1, 1, 1, 2)
    wrong_huge = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    assert nn.BCELoss(reduction="sum")(torch.sigmoid(huge), wrong_huge).item() == pytest.approx(200.0)
    assert bce_term(wrong_huge, huge).item() == pytest.approx(2000.0)


# --------------------------------------------------------------------------- mse


def test_mse_matches_hand_computation():
    # sigmoid(0) = 0.5, sigmoid(ln 3) = 0.75, sigmoid(-ln 3) = 0.25
    logits = torch.tensor([[0.0, math.log(3)], [-math.log(3), 0.0]]).view(2, 1, 1, 2)
    x = torch.tensor([[1.0, 0.25], [0.0, 0.5]]).view(2, 1, 1, 2)
    value = mse_term(x, logits)
    # (0.5 - 1)^2 + (0.75 - 0.25)^2 = 0.5 ; (0.25 - 0)^2 + (0.5 - 0.5)^2 = 0.0625
    torch.testing.assert_close(value, torch.tensor([0.5, 0.0625]))


def test_mse_is_squared_error_of_sigmoid_summed_over_pixels():
    torch.manual_seed(6)
    logits = torch.randn(3, 3, 4, 5) * 2
    x = torch.rand(3, 3, 4, 5)
    expected = ((torch.sigmoid(logits) - x) ** 2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(mse_term(x, logits), expected)


# --------------------------------------------------------------------------- gradients


def test_gradients_match_closed_forms():
    """d kld/d mu = mu, d kld/d log_var = (exp(log_var) - 1) / 2, d bce/d l = s - x, d mse/d l = 2 (s - x) s (1 - s)."""
    torch.manual_seed(7)
    mu = torch.randn(3, 4, requires_grad=True)
    log_var = torch.randn(3, 4, requires_grad=True)
    d_mu, d_lv = torch.autograd.grad(kld_term(mu, log_var).sum(), (mu, log_var))
    torch.testing.assert_close(d_mu, mu.detach())
    torch.testing.assert_close(d_lv, 0.5 * (log_var.detach().exp() - 1))

    logits = torch.randn(3, 1, 4, 4, requires_grad=True)
    x = torch.rand(3, 1, 4, 4)
    s = torch.sigmoid(logits.detach())
    (d_bce,) = torch.autograd.grad(bce_term(x, logits).sum(), logits)
    torch.testing.assert_close(d_bce, s - x)
    (d_mse,) = torch.autograd.grad(mse_term(x, logits).sum(), logits)
    torch.testing.assert_close(d_mse, 2 * (s - x) * s * (1 - s))


@pytest.mark.parametrize("term", ["bce", "mse", "kld"])
def test_gradcheck_float64(term):
    torch.manual_seed(8)
    if term == "kld":
        mu = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
        log_var = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(kld_term, (mu, log_var))
    else:
        fn = bce_term if term == "bce" else mse_term
        x = torch.rand(2, 1, 2, 3, dtype=torch.float64)
        logits = torch.randn(2, 1, 2, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda logits: fn(x, logits), (logits,))


def test_terms_keep_float64():
    x = torch.rand(2, 1, 2, 2, dtype=torch.float64)
    logits = torch.randn(2, 1, 2, 2, dtype=torch.float64)
    mu = log_var = torch.randn(2, 3, dtype=torch.float64)
    dtypes = {bce_term(x, logits).dtype, mse_term(x, logits).dtype, kld_term(mu, log_var).dtype}
    assert dtypes == {torch.float64}


# --------------------------------------------------------------------------- schedule


def linear_warmup(**fields) -> object:
    """The registered ``linear`` schedule, built as a loss weight's (no run length)."""
    return build_part("schedule", {"type": "linear", **fields}, epochs=None)


def test_linear_warmup_rises_linearly_then_stays():
    warmup = linear_warmup(epochs=4)
    assert warmup.factor(0) == 0.0
    progress = [0.5, 1, 2, 3, 3.5]
    factors = [warmup.factor(p) for p in progress]
    assert factors == pytest.approx([p / 4 for p in progress])
    assert warmup.factor(4) == 1.0
    assert [warmup.factor(p) for p in (4.01, 5, 100, math.inf)] == [1.0] * 4


def test_linear_warmup_with_start():
    warmup = linear_warmup(epochs=2, start=0.2)
    assert warmup.factor(0) == pytest.approx(0.2)
    assert warmup.factor(1) == pytest.approx(0.6)
    assert warmup.factor(2) == pytest.approx(1.0)
    assert warmup.factor(7) == pytest.approx(1.0)


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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight": -1.0},
        {"schedule": {"type": "linear", "epochs": 0}},
        {"schedule": {"type": "linear", "epochs": 2, "start": 1.5}},
        {"schedule": {"type": "cosine", "epochs": 2}},
        {"wieght": 1.0},
    ],
)
def test_loss_term_config_rejects_bad_values(kwargs):
    term_config = builder_for().resolved(LossTermConfig)  # as a spec validates it: its schedule slot resolved
    with pytest.raises(pydantic.ValidationError):
        term_config(**kwargs)


# --------------------------------------------------------------------------- model total


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


def test_a_term_cannot_be_named_loss():
    """'loss' is the weighted total in metrics; a term of that name would hide it."""
    spec = {"type": "vae", "losses": [{"type": "bce", "name": "loss"}, {"type": "kld"}]}
    with pytest.raises(genreg.SpecError, match=r"losses\[0\]\.name: .*'loss' is reserved"):
        genreg.build_model(spec, genreg.DataInfo((1, 6, 6), 3))
