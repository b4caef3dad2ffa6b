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
    assert torch.allclose(forward.x0_from_eps(x_t, t, eps, schedule), x0, atol=1e-3)
    assert torch.allclose(forward.eps_from_x0(x_t, t, x0, schedule), eps, atol=1e-4)
    v = forward.v_from_x0_eps(x0, t, eps, schedule)
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
    v = forward.v_from_x0_eps(x0, 50, eps, schedule)
    assert v.std().item() == pytest.approx(1.0, abs=0.01)


def test_model_eps_applies_the_parameterization(schedule):
    """A network that outputs the true x0 or v gives back the true eps; the model sees t as int64 (B,)."""
    generator = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(4, 2, generator=generator), torch.randn(4, 2, generator=generator)
    t = torch.tensor([3, 20, 50, 90])
    x_t = forward.q_sample(x0, t, eps, schedule)
    outputs = {"eps": eps, "x0": x0, "v": forward.v_from_x0_eps(x0, t, eps, schedule)}
    for parameterization, output in outputs.items():
        seen = []

        def model(x, steps, output=output):
            seen.append(steps)
            return output

        assert torch.allclose(forward.model_eps(model, x_t, t, schedule, parameterization), eps, atol=1e-5)
        assert seen[0].dtype == torch.int64 and torch.equal(seen[0], t)
    seen = []
    forward.model_eps(lambda x, steps: seen.append(steps) or eps, x_t, 7, schedule)
    assert seen[0].tolist() == [7, 7, 7, 7]
    with pytest.raises(ValueError, match=r"x_t's shape \(4, 2\)"):
        forward.model_eps(lambda x, steps: x[:2], x_t, 7, schedule)


def test_q_sample_stats_match_a_large_noised_image():
    """The closed-form pixel statistics of x_t agree with q_sample on an image with many pixels."""
    from course_lib.forward import q_sample_stats
    from course_lib.schedules import NoiseSchedule

    schedule = NoiseSchedule.cosine(50)
    x0 = torch.rand(1, 3, 200, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.6 - 0.9
    mean, std = q_sample_stats(x0, schedule)
    assert mean.dtype == std.dtype == torch.float64 and mean.shape == std.shape == (50,)
    for index in [0, 10, 25, 49]:
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(100 + index), dtype=torch.float64)
        x_t = forward.q_sample(x0, torch.tensor([index]), noise, schedule)
        assert abs(x_t.mean().item() - mean[index].item()) < 0.01
        assert abs(x_t.std(correction=0).item() - std[index].item()) < 0.01
    assert torch.allclose(std[-1], torch.tensor(1.0, dtype=torch.float64), atol=1e-3), "pure noise has unit std"


def test_posterior_coefficients_are_bayes_rule_for_two_gaussians():
    """Precision-weighting the two Gaussians in x_{t-1} gives DDPM's eq. 7 coefficients (exercise 01)."""
    from course_lib.checks.nb01 import _bayes_with, posterior_coefficients_reference
    from course_lib.schedules import cosine_betas

    for derived, closed_form in zip(_bayes_with()(cosine_betas(100)), posterior_coefficients_reference(cosine_betas(100))):
        assert torch.allclose(derived, closed_form, rtol=1e-12, atol=1e-15)
