import math

import pytest
import torch

from course_lib import forward
from course_lib.schedules import NoiseSchedule


@pytest.fixture
def schedule():
    return NoiseSchedule.linear(T=100, beta_start=1e-3, beta_end=0.05)


def test_closed_form_matches_iterating_the_chain(schedule):
    """q(x_t | x0) in one jump has the mean and spread of t+1 single steps x_s = sqrt(1 - beta_s) x_{s-1} + sqrt(beta_s) z."""
    generator = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.tensor([1.5, -0.5], dtype=torch.float64).repeat(n // 2)
    x = x0.clone()
    for t in range(schedule.T):
        beta = schedule.betas[t]
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(n, dtype=torch.float64, generator=generator)
        if t in (0, 9, 49, 99):
            closed = forward.q_sample(x0[:, None], t, torch.randn(n, 1, dtype=torch.float64, generator=generator),
                                      schedule)[:, 0]
            for start in (0, 1):  # each starting value separately: mean sqrt(abar) x0, std sqrt(1 - abar)
                chain, jump = x[start::2], closed[start::2]
                mean = schedule.alpha_bars[t].sqrt() * x0[start]
                std = (1 - schedule.alpha_bars[t]).sqrt()
                standard_error = std / math.sqrt(n / 2)
                assert abs(chain.mean() - mean) < 5 * standard_error
                assert abs(jump.mean() - mean) < 5 * standard_error
                assert abs(chain.std() / std - 1) < 0.01 and abs(jump.std() / std - 1) < 0.01
                # same distribution, not just the same two moments: compare quantiles
                quantiles = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)
                assert torch.allclose(chain.quantile(quantiles), jump.quantile(quantiles), atol=0.03 * std.item())


def test_posterior_equals_bayes_rule_on_a_grid(schedule):
    """q(x_{t-1} | x_t, x0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x0), normalised numerically over a fine grid."""
    x0, x_t = torch.tensor([[0.7]], dtype=torch.float64), torch.tensor([[-0.4]], dtype=torch.float64)
    grid = torch.linspace(-6, 6, 200_001, dtype=torch.float64)
    for t in (1, 10, 60, 99):
        alpha, beta = schedule.alphas[t], schedule.betas[t]
        alpha_bar_prev = schedule.alpha_bars_prev[t]
        log_prior = -(grid - alpha_bar_prev.sqrt() * x0[0, 0]) ** 2 / (2 * (1 - alpha_bar_prev))
        log_likelihood = -(x_t[0, 0] - alpha.sqrt() * grid) ** 2 / (2 * beta)
        density = torch.softmax(log_prior + log_likelihood, dim=0)
        numeric_mean = (density * grid).sum()
        numeric_variance = (density * (grid - numeric_mean) ** 2).sum()
        mean, variance = forward.q_posterior(x0, x_t, t, schedule)
        assert mean.item() == pytest.approx(numeric_mean.item(), abs=1e-6)
        assert variance.item() == pytest.approx(numeric_variance.item(), rel=1e-4)


def test_posterior_at_t0_returns_x0(schedule):
    x0, x_t = torch.randn(2, 3), torch.randn(2, 3)
    mean, variance = forward.q_posterior(x0, x_t, torch.tensor([0, 0]), schedule)
    assert torch.allclose(mean, x0) and torch.all(variance == 0)
    assert variance.shape == (2, 1)


def test_conversions_round_trip(schedule):
    generator = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(5, 1, 8, 8, generator=generator), torch.randn(5, 1, 8, 8, generator=generator)
    t = torch.tensor([0, 5, 30, 70, 99])
    x_t = forward.q_sample(x0, t, eps, schedule)
    assert x_t.dtype == torch.float32
    assert torch.allclose(forward.predict_x0(x_t, t, eps, schedule), x0, atol=1e-3)
    assert torch.allclose(forward.predict_eps(x_t, t, x0, schedule), eps, atol=1e-4)
    v = forward.v_target(x0, eps, t, schedule)
    assert torch.allclose(forward.x0_from_v(x_t, t, v, schedule), x0, atol=1e-5)
    assert torch.allclose(forward.eps_from_v(x_t, t, v, schedule), eps, atol=1e-5)
    score = forward.score_from_eps(eps, t, schedule)
    assert torch.allclose(forward.eps_from_score(score, t, schedule), eps, atol=1e-6)


def test_score_from_eps_is_the_gradient_of_log_q(schedule):
    """For a fixed x0, grad_{x_t} log N(x_t; sqrt(abar) x0, (1 - abar) I) equals score_from_eps(eps)."""
    x0 = torch.randn(3, 4, dtype=torch.float64)
    eps = torch.randn(3, 4, dtype=torch.float64)
    t = torch.tensor([2, 40, 90])
    x_t = forward.q_sample(x0, t, eps, schedule).requires_grad_(True)
    alpha_bar = schedule.alpha_bars[t][:, None]
    log_q = -((x_t - alpha_bar.sqrt() * x0) ** 2 / (2 * (1 - alpha_bar))).sum()
    (gradient,) = torch.autograd.grad(log_q, x_t)
    assert torch.allclose(gradient, forward.score_from_eps(eps, t, schedule))


def test_v_has_unit_variance(schedule):
    generator = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(100_000, 1, generator=generator), torch.randn(100_000, 1, generator=generator)
    v = forward.v_target(x0, eps, 50, schedule)
    assert v.std().item() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("call, error, message", [
    (lambda s: forward.q_sample([1.0], 0, torch.zeros(1), s), TypeError, "x0 must be a torch.Tensor"),
    (lambda s: forward.q_sample(torch.zeros(2, 3), 0, torch.zeros(2, 4), s), ValueError, "noise must have the shape"),
    (lambda s: forward.q_sample(torch.zeros(2, 3), 100, torch.zeros(2, 3), s), ValueError, r"0\.\.99"),
    (lambda s: forward.q_sample(torch.zeros(2, 3, dtype=torch.int64), 0, torch.zeros(2, 3), s), TypeError,
     "floating-point"),
    (lambda s: forward.q_sample(torch.zeros(2, 3), 0, torch.zeros(2, 3), "linear"), TypeError, "NoiseSchedule"),
    (lambda s: forward.q_posterior(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([1, 2, 3]), s), ValueError,
     "1 or 2 timesteps"),
    (lambda s: forward.score_from_eps(torch.zeros(2, 3), 1.5, s), TypeError, "int or an integer tensor"),
])
def test_bad_input_is_named(schedule, call, error, message):
    with pytest.raises(error, match=message):
        call(schedule)
