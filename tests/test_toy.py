import pytest
import torch

from course_lib.schedules import NoiseSchedule
from course_lib.toy import GaussianMixture, optimal_denoiser


@pytest.fixture
def schedule():
    return NoiseSchedule.linear(T=200, beta_start=1e-3, beta_end=0.05)


@pytest.fixture
def mixture():
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    roots = torch.randn(3, 3, 3, generator=generator, dtype=torch.float64) * 0.3
    covariances = roots @ roots.transpose(1, 2) + 0.05 * torch.eye(3, dtype=torch.float64)
    return GaussianMixture(means, covariances, weights=torch.tensor([0.2, 0.5, 0.3]))


@pytest.mark.parametrize("t", [0, 20, 100, 199])
def test_score_equals_autograd_of_log_density(mixture, schedule, t):
    x = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(t)).requires_grad_(True)
    (gradient,) = torch.autograd.grad(mixture.log_prob(x, t, schedule).sum(), x)
    assert torch.allclose(mixture.score(x.detach(), t, schedule), gradient, atol=1e-10)


@pytest.mark.parametrize("t", [5, 60, 150])
def test_tweedie_links_score_eps_and_x0_mean(mixture, schedule, t):
    """E[x0 | x_t] = (x_t + (1 - abar) score) / sqrt(abar), and eps = -sqrt(1 - abar) score."""
    x = torch.randn(32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    alpha_bar = schedule.alpha_bars[t]
    score = mixture.score(x, t, schedule)
    assert torch.allclose(mixture.x0_mean(x, t, schedule), (x + (1 - alpha_bar) * score) / alpha_bar.sqrt())
    assert torch.allclose(mixture.eps(x, t, schedule), -(1 - alpha_bar).sqrt() * score)


def test_noised_marginal_matches_noised_samples(mixture, schedule):
    """Samples pushed through q(x_t | x0) have the marginal's mean and covariance."""
    generator = torch.Generator().manual_seed(2)
    x0 = mixture.sample(200_000, generator).double()
    t = 80
    alpha_bar = schedule.alpha_bars[t]
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * torch.randn(x0.shape, dtype=torch.float64, generator=generator)
    mean = (mixture.weights[:, None] * mixture.means).sum(0)
    second = (mixture.weights[:, None, None] * (mixture.covariances + mixture.means[:, :, None] * mixture.means[:, None, :])).sum(0)
    covariance = second - mean[:, None] * mean[None, :]
    expected = alpha_bar * covariance + (1 - alpha_bar) * torch.eye(3, dtype=torch.float64)
    assert torch.allclose(x_t.mean(0), alpha_bar.sqrt() * mean, atol=0.01)
    assert torch.allclose(torch.cov(x_t.T), expected, atol=0.02)


def test_log_prob_integrates_to_one_in_2d(schedule):
    ring = GaussianMixture.ring(k=4, radius=1.0, std=0.3)
    axis = torch.linspace(-4, 4, 401, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
    cell = (axis[1] - axis[0]) ** 2
    for t in (None, 50):
        total = (ring.log_prob(grid, t, schedule if t else None).exp() * cell).sum()
        assert total.item() == pytest.approx(1.0, abs=1e-3)


def test_optimal_denoiser_is_a_mixture_of_vanishing_width(schedule):
    data = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    narrow = GaussianMixture(data, 1e-6)
    x = torch.randn(10, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for t in (10, 100):
        assert torch.allclose(optimal_denoiser(x, t, data, schedule), narrow.x0_mean(x, t, schedule), atol=1e-6)


def test_optimal_denoiser_memorises_at_low_noise(schedule):
    data = torch.randn(20, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    alpha_bar = schedule.alpha_bars[0]
    x_t = alpha_bar.sqrt().float() * data[:7] + 1e-3 * torch.randn(7, 1, 4, 4)
    denoised = optimal_denoiser(x_t, torch.zeros(7, dtype=torch.int64), data, schedule)
    assert denoised.shape == (7, 1, 4, 4) and denoised.dtype == torch.float32
    assert torch.allclose(denoised, data[:7], atol=1e-4)


def test_bad_input(mixture, schedule):
    with pytest.raises(ValueError, match="covariances must have shape"):
        GaussianMixture(torch.zeros(2, 3), torch.ones(3, 3, 3))
    with pytest.raises(ValueError, match="positive"):
        GaussianMixture(torch.zeros(2, 3), 0.1, weights=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="n must be >= 1"):
        mixture.sample(0)
