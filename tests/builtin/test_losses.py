"""Tests plugins/genreg_builtin/losses.py: the built-in loss terms compute the documented formulas, with
correct gradients, in float64 too; KL free bits floor each dimension's KL.

Science: decoders emit logits; ``bce`` is BCE-with-logits summed over pixels per
example (equal to Sigmoid + nn.BCELoss); ``mse`` is the squared error of
sigmoid(logits) summed over pixels; ``kld`` is
-0.5 * sum(1 + log_var - mu^2 - exp(log_var)) over latent dims, per example,
i.e. KL(N(mu, exp(log_var)) || N(0, I)).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

import genreg
from genreg.evaluation.metrics import active_units, posterior
from genreg.plugin.manager import get_registry
from genreg.plugin.protocols import LatentSample, ModelOutput
from genreg.spec import validate_part
from genreg_builtin.losses import BCE, KLD, MSE, BCEConfig, BernoulliNLL, KLDConfig, MSEConfig


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


@pytest.mark.parametrize("binary", [False, True])
def test_the_bernoulli_nll_is_torchs_value_and_gradient_to_float32_rounding(binary: bool) -> None:
    """BernoulliNLL (log instead of torch's slow log1p) against float64: no worse than torch's own kernel."""
    torch.manual_seed(0)
    logits = (torch.randn(64, 784) * 8).requires_grad_()  # confident pixels too: exp(-|l|) down to 1e-20
    x = torch.rand(64, 784).round() if binary else torch.rand(64, 784)
    exact = F.binary_cross_entropy_with_logits(logits.double(), x.double(), reduction="none")
    ours, torchs = BernoulliNLL.apply(logits, x), F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    # float32 rounding of max(l, 0), x l and their difference (a few units in the last place of |l|), plus
    # 6e-8 for the rounding of 1 + exp(-|l|): the bound torch's own kernel keeps too
    bound = 4 * 2**-24 * (logits.detach().double().abs() + exact.abs()) + 6e-8
    assert ((torchs.double() - exact).abs() <= bound).all()
    assert ((ours.double() - exact).abs() <= bound).all()
    torch.testing.assert_close(ours.sum(1), torchs.sum(1), rtol=1e-6, atol=1e-4)
    (grad,) = torch.autograd.grad(ours.sum(), logits)
    (expected,) = torch.autograd.grad(torchs.sum(), logits)
    assert torch.equal(grad, expected)  # sigmoid(l) - x, as torch's backward computes it
    target = x.clone().requires_grad_()
    (grad_x,) = torch.autograd.grad(BernoulliNLL.apply(logits.detach(), target).sum(), target)
    torch.testing.assert_close(grad_x, -logits.detach())


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


# --------------------------------------------------------------------------- KL free bits


def kld(free_bits: float):
    return get_registry().build("loss", validate_part("loss", {"type": "kld", "free_bits": free_bits}))


def test_free_bits_floors_each_dimensions_batch_mean_kl_without_gradient_below_the_floor():
    mu = torch.tensor([[0.0, 0.1, 2.0], [0.1, -0.1, -1.5], [0.0, 0.2, 1.0], [-0.1, 0.0, 0.5]], dtype=torch.float64)
    log_var = torch.tensor(
        [[0.0, -0.1, -1.0], [0.1, 0.0, -2.0], [0.0, 0.1, -0.5], [-0.1, 0.0, -1.0]], dtype=torch.float64
    )
    mu.requires_grad_(True)
    kl = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0))  # (4, 3), independent of genreg
    means = kl.detach().mean(0)
    floor = 0.5
    assert means[0] < floor and means[1] < floor and means[2] > floor  # two dimensions under the floor

    x = torch.zeros(4, 1, 1, 1, dtype=torch.float64)
    out = ModelOutput(torch.zeros_like(x), LatentSample(mu, {"mu": mu, "log_var": log_var}))
    values = kld(floor)(x, out)
    assert values.shape == (4,)
    torch.testing.assert_close(values.mean(), torch.clamp(means, min=floor).sum())
    values.mean().backward()
    assert torch.all(mu.grad[:, :2] == 0)  # floored: no gradient at all
    expected = torch.autograd.grad(kl[:, 2].mean(), mu)[0]  # above the floor: the plain KL's gradient
    torch.testing.assert_close(mu.grad[:, 2], expected[:, 2])
    torch.testing.assert_close(kld(0)(x, out), kl.sum(1))  # free_bits 0: the plain KL, per example


def test_free_bits_must_not_be_negative():
    with pytest.raises(genreg.SpecError, match="free_bits: Input should be greater than or equal to 0"):
        validate_part("loss", {"type": "kld", "free_bits": -0.1})


@pytest.mark.slow
def test_free_bits_keeps_latent_units_active_where_a_heavy_kl_weight_collapses_them(mnist, one_thread):
    """With KL weight 16, three epochs collapse the posterior (measured: 0 of 16 active units);
    with 0.5 free nats per dimension every unit stays active (measured: 16 of 16)."""

    def active(free_bits: float) -> int:
        spec = genreg.validate_spec(
            {
                "model": {
                    "type": "vae",
                    "latent_dim": 16,
                    "encoder": {"hidden": [128]},
                    "decoder": {"hidden": [128]},
                    "losses": [{"type": "bce"}, {"type": "kld", "weight": 16, "free_bits": free_bits}],
                },
                "data": {"type": "mnist-sample"},
                "train": {"epochs": 3, "lr": 3e-3, "device": "cpu"},
            }
        )
        torch.manual_seed(0)
        model = genreg.build_model(spec.model, mnist.info)
        genreg.train(model, mnist, spec.train, progress=False)
        return active_units(posterior(model, mnist.test).mu)

    collapsed, kept = active(0.0), active(0.5)
    assert collapsed <= 4
    assert kept >= 12 and kept >= collapsed + 8


# --------------------------------------------------------------------------- issue 16, cases 1 and 4


def test_each_built_in_term_declares_its_unit():
    """Case 4 of issue 16: mse was reported in nats/image, but it is a sum of squared errors."""
    assert [term.unit for term in (BCE(BCEConfig()), KLD(KLDConfig()), MSE(MSEConfig()))] == [
        "nats/image",
        "nats/image",
        "squared error/image",
    ]


def test_the_kl_of_the_objective_is_the_plain_kl_under_free_bits():
    torch.manual_seed(0)
    mu, log_var = torch.randn(8, 3) * 0.1, torch.randn(8, 3) * 0.1
    out = make_output(mu=mu, log_var=log_var)
    exact = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(1)
    floored = KLD(KLDConfig(free_bits=1.0))
    assert torch.allclose(floored.kl_divergence(out), exact, atol=1e-6)
    assert floored(torch.zeros(8, 1, 1, 1), out).mean().item() == pytest.approx(3.0)


# --------------------------------------------------------------------------- likelihoods of issue 18


def test_gaussian_nll_is_the_closed_form_with_every_constant() -> None:
    torch.manual_seed(0)
    x, means = torch.randn(6, 5) * 3 + 10, torch.randn(6, 5) * 3 + 10
    sigma = 0.5
    term = get_registry().build("loss", validate_part("loss", {"type": "gaussian", "sigma": sigma}), output_shape=(5,))
    closed = (0.5 * ((x - means) / sigma).square() + math.log(sigma) + 0.5 * math.log(2 * math.pi)).sum(1)
    values = term(x, make_output(logits=means, mu=torch.zeros(6, 2), log_var=torch.zeros(6, 2)))
    assert values.shape == (6,)
    torch.testing.assert_close(values, closed, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values, -Normal(means, sigma).log_prob(x).sum(1), rtol=1e-5, atol=1e-5)


def test_a_learned_gaussian_variance_is_one_trained_parameter_per_feature() -> None:
    registry = get_registry()
    learned = registry.build(
        "loss", validate_part("loss", {"type": "gaussian", "variance": "learned", "sigma": 2.0}), output_shape=(3, 4)
    )
    fixed = registry.build("loss", validate_part("loss", {"type": "gaussian"}), output_shape=(3, 4))
    assert [p.shape for p in learned.parameters()] == [(3, 4)] and list(fixed.parameters()) == []
    torch.testing.assert_close(learned.log_sigma.exp(), torch.full((3, 4), 2.0))
    x, means = torch.randn(8, 3, 4), torch.zeros(8, 3, 4)
    learned(x, make_output(logits=means, mu=torch.zeros(8, 2), log_var=torch.zeros(8, 2))).sum().backward()
    # d/d log sigma of sum_f (0.5 (x - m)^2 / sigma^2 + log sigma) = 1 - (x - m)^2 / sigma^2, summed over the batch
    torch.testing.assert_close(learned.log_sigma.grad, (1 - x.square() / 4).sum(0), rtol=1e-5, atol=1e-5)


def test_bernoulli_is_bce_and_equals_torch_distributions() -> None:
    registry = get_registry()
    bernoulli = registry.build("loss", validate_part("loss", {"type": "bernoulli"}))
    assert type(bernoulli) is BCE
    torch.manual_seed(0)
    logits, x = torch.randn(5, 1, 4, 4) * 4, torch.randint(0, 2, (5, 1, 4, 4)).float()
    out = make_output(logits=logits, mu=torch.zeros(5, 2), log_var=torch.zeros(5, 2))
    exact = -torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(bernoulli(x, out), exact, rtol=1e-5, atol=1e-5)


def test_each_likelihood_says_what_the_decoded_sample_is() -> None:
    from genreg.model.losses import likelihood_mean

    registry = get_registry()
    output = torch.tensor([[-3.0, 0.0, 7.5]])
    gaussian = registry.build("loss", validate_part("loss", {"type": "gaussian"}), output_shape=(3,))
    kld = registry.build("loss", validate_part("loss", {"type": "kld"}))
    assert torch.equal(likelihood_mean([kld, gaussian], output), output)  # the mean itself, in the data's units
    bce = registry.build("loss", validate_part("loss", {"type": "bce"}))
    assert torch.equal(likelihood_mean([bce, kld], output), torch.sigmoid(output))
    assert torch.equal(likelihood_mean([kld], output), torch.sigmoid(output))  # no likelihood: logits, as before


# --------------------------------------------------------------------------- gaussian, variance: per-sample


def per_sample(shape: tuple[int, ...], **fields: object):
    """The registered ``gaussian`` term with ``variance: per-sample`` for samples of ``shape``."""
    config = validate_part("loss", {"type": "gaussian", "variance": "per-sample", **fields})
    return get_registry().build("loss", config, output_shape=shape)


def softplus_sigma(raw: torch.Tensor, sigma: float = 1.0, min_sigma: float = 1e-3) -> torch.Tensor:
    """The documented transform, written out: min_sigma + log(1 + exp(raw + c)), c = log(exp(sigma - min_sigma) - 1)."""
    offset = math.log(math.exp(sigma - min_sigma) - 1)
    return min_sigma + torch.log1p(torch.exp(raw + offset))


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_a_per_sample_gaussian_nll_is_normal_log_prob_and_the_closed_form(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    term = per_sample(shape, sigma=0.7)
    assert term.parameter_maps == 2 and list(term.parameters()) == []
    x, means, raw = torch.randn(6, *shape) * 2 + 1, torch.randn(6, *shape) * 2 + 1, torch.randn(6, *shape) * 2
    output = torch.cat([means, raw], dim=1)  # the two maps stacked along axis 1: (6, 2F) or (6, 2C, H, W)
    sigma = softplus_sigma(raw, sigma=0.7)
    values = term(x, make_output(logits=output, mu=torch.zeros(6, 2), log_var=torch.zeros(6, 2)))
    assert values.shape == (6,)
    closed = (0.5 * ((x - means) / sigma).square() + sigma.log() + 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
    torch.testing.assert_close(values, closed, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values, -Normal(means, sigma).log_prob(x).flatten(1).sum(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(term.log_likelihood(x, output), -values)
    assert torch.equal(term.mean(output), means)  # the first map: what decode, sample and reconstruct return


def test_a_per_sample_sigma_is_the_configured_one_at_a_raw_zero_and_never_below_its_floor() -> None:
    term = per_sample((3,), sigma=2.0, min_sigma=0.01)
    raw = torch.tensor([[0.0, -1e4, 1e4]])
    means, sigma = term.parameters_of(torch.cat([torch.zeros(1, 3), raw], 1))
    torch.testing.assert_close(sigma[0, 0], torch.tensor(2.0))  # a decoder near its start predicts sigma
    assert float(sigma[0, 1]) == pytest.approx(0.01, abs=1e-7)  # the floor
    assert float(sigma[0, 2]) == pytest.approx(1e4 + math.log(math.expm1(1.99)) + 0.01, rel=1e-6)  # linear, not exp
    # The floor bounds the density of a value predicted exactly, and the gradients stay finite far below it.
    output = torch.cat([torch.zeros(1, 3), raw], 1).requires_grad_()
    nll = term(torch.zeros(1, 3), make_output(logits=output, mu=torch.zeros(1, 2), log_var=torch.zeros(1, 2)))
    nll.sum().backward()
    assert torch.isfinite(output.grad).all()
    assert float(nll.detach()) >= 3 * (math.log(0.01) + 0.5 * math.log(2 * math.pi)) - 1e-4


def test_a_per_sample_floor_must_be_below_sigma() -> None:
    with pytest.raises(genreg.errors.SpecError, match=r"min_sigma \(1\) must be smaller than sigma \(0.5\)"):
        validate_part("loss", {"type": "gaussian", "variance": "per-sample", "sigma": 0.5, "min_sigma": 1.0})
    validate_part("loss", {"type": "gaussian", "sigma": 0.5, "min_sigma": 1.0})  # read with per-sample only


def test_the_per_sample_likelihood_is_exact_in_bf16_outputs_too() -> None:
    """Under bf16 autocast the decoder's output is bf16; the likelihood is computed in float32 from it."""
    term = per_sample((4,))
    torch.manual_seed(1)
    x, output = torch.randn(3, 4), torch.randn(3, 8).bfloat16()
    means, raw = output.float().chunk(2, 1)
    expected = Normal(means, softplus_sigma(raw)).log_prob(x).sum(1)
    torch.testing.assert_close(term.log_likelihood(x, output), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variance", ["fixed", "learned"])
def test_fixed_and_learned_gaussians_still_read_one_map(variance: str) -> None:
    term = get_registry().build(
        "loss", validate_part("loss", {"type": "gaussian", "variance": variance}), output_shape=(3,)
    )
    assert term.parameter_maps == 1
    output = torch.randn(2, 3)
    assert torch.equal(term.mean(output), output)
