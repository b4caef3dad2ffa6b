"""DDPM's Markov chain over a jump t -> t' is DDIM with eta = 1: the facts notebook 05 teaches, proved numerically."""
import torch

from course_lib import ddim, forward
from course_lib.checks.nb05 import skip_posterior
from course_lib.schedules import NoiseSchedule

SCHEDULES = [NoiseSchedule.cosine(1000), NoiseSchedule.linear(1000)]
PAIRS = torch.tensor([(t, t_prev) for t in range(1, 1000, 37) for t_prev in range(0, t, 41)])


def test_skip_posterior_is_the_conditional_of_the_joint_gaussian():
    """Independent route: condition the pair (x_t', x_t) | x_0, jointly Gaussian along the forward chain."""
    for schedule in SCHEDULES:
        abar, abar_prev = schedule.alpha_bars[PAIRS[:, 0]], schedule.alpha_bars[PAIRS[:, 1]]
        covariance = (abar / abar_prev).sqrt() * (1 - abar_prev)
        a, b, v = skip_posterior(abar, abar_prev)
        assert torch.allclose(v, (1 - abar_prev) - covariance ** 2 / (1 - abar), rtol=1e-10, atol=1e-14)
        assert torch.allclose(b, covariance / (1 - abar), rtol=1e-10)                      # E[x_t' | x_t, x_0] slope
        assert torch.allclose(a, abar_prev.sqrt() - b * abar.sqrt(), rtol=1e-10, atol=1e-14)


def test_skip_posterior_variance_is_ddim_sigma_squared_at_eta_one():
    for schedule in SCHEDULES:
        _, _, v = skip_posterior(schedule.alpha_bars[PAIRS[:, 0]], schedule.alpha_bars[PAIRS[:, 1]])
        sigma = ddim.ddim_sigma(PAIRS[:, 0], PAIRS[:, 1], schedule, eta=1.0)
        assert torch.allclose(v, sigma ** 2, rtol=1e-10, atol=1e-15)
    cosine = SCHEDULES[0]
    assert abs(skip_posterior(cosine.alpha_bars[700], cosine.alpha_bars[200])[2].item() - 0.099292) < 1e-6


def test_one_step_skip_posterior_is_the_ddpm_posterior():
    schedule, t = SCHEDULES[0], torch.arange(1, 1000)
    a, b, v = skip_posterior(schedule.alpha_bars[t], schedule.alpha_bars[t - 1])
    x0, x_t = torch.ones(999, dtype=torch.float64), torch.full((999,), 0.5, dtype=torch.float64)
    mean, variance = forward.q_posterior(x0, x_t, t, schedule)
    assert torch.allclose(a * x0 + b * x_t, mean, rtol=1e-10) and torch.allclose(v, variance.flatten(), rtol=1e-10)


def test_a_strided_ddim_step_with_eta_one_samples_the_skip_posterior():
    """Same x_0 (the true one), same z: DDIM's eta = 1 step lands on a x_0 + b x_t + sqrt(v) z."""
    schedule = SCHEDULES[0]
    generator = torch.Generator().manual_seed(0)
    x0, eps, z = (torch.randn(5, 1, 4, 4, generator=generator, dtype=torch.float64) for _ in range(3))
    x_t = forward.q_sample(x0, 700, eps, schedule)
    a, b, v = skip_posterior(schedule.alpha_bars[700], schedule.alpha_bars[200])
    stepped = ddim.ddim_step(x_t, 700, 200, eps, schedule, eta=1.0, noise=z)
    assert torch.allclose(stepped, a * x0 + b * x_t + v.sqrt() * z, rtol=1e-10, atol=1e-12)
