"""Flow matching: the straight path and its velocity, the exact velocity, the samplers, reflow, and the U-Net/MLP."""
import math

import pytest
import torch

from course_lib import flows, sde
from course_lib.toy import GaussianMixture
from course_lib.toy_mlp import TimeMLP, dsm_loss, fit, score_fn
from course_lib.sampler_error import sliced_wasserstein
from course_lib.unet import UNet


def _randn(*shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_path_ends_and_target_is_its_derivative():
    x0, eps = _randn(5, 1, 4, 4, seed=0), _randn(5, 1, 4, 4, seed=1)
    assert torch.equal(flows.flow_path(x0, eps, torch.zeros(5)), x0)
    assert torch.equal(flows.flow_path(x0, eps, torch.ones(5)), eps)
    tau, h = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64), 1e-6
    derivative = (flows.flow_path(x0, eps, tau + h) - flows.flow_path(x0, eps, tau - h)) / (2 * h)
    assert torch.allclose(derivative, flows.flow_target(x0, eps), atol=1e-8)
    x_tau, v = flows.flow_path(x0, eps, tau), flows.flow_target(x0, eps)
    assert torch.allclose(flows.x0_from_velocity(x_tau, tau, v), x0, atol=1e-12)
    assert torch.allclose(flows.eps_from_velocity(x_tau, tau, v), eps, atol=1e-12)


def test_exact_velocity_is_the_posterior_mean_of_eps_minus_x0():
    """For a single Gaussian data N(m, s^2 I), E[eps - x0 | x_tau] is linear in x_tau and known in closed form."""
    m, s = 0.7, 0.4
    gaussian = GaussianMixture(torch.full((1, 2), m, dtype=torch.float64), s)
    x, tau = _randn(10, 2, seed=2), 0.35
    score = gaussian.noised(1 - tau, tau).score(x)
    variance = (1 - tau) ** 2 * s ** 2 + tau ** 2
    e_x0 = m + (1 - tau) * s ** 2 / variance * (x - (1 - tau) * m)
    e_eps = tau / variance * (x - (1 - tau) * m)
    assert torch.allclose(flows.velocity_from_score(x, tau, score), e_eps - e_x0, atol=1e-12)


def test_euler_on_the_exact_flow_is_ddim():
    """An Euler step of the exact rectified flow equals DDIM's step in the variables x_bar = x / (1 - tau),
    sigma = tau / (1 - tau): the straight path is one more time-and-scale change of the same ODE."""
    ring = GaussianMixture.ring()
    x = _randn(50, 2, seed=3) * 0.8
    for tau, tau_next in ((0.9, 0.6), (0.6, 0.2), (0.2, 0.05)):
        velocity = flows.velocity_from_score(x, tau, ring.noised(1 - tau, tau).score(x))
        euler = sde.euler_step(x, tau, tau_next, lambda y, s: velocity)
        sigma, sigma_next = tau / (1 - tau), tau_next / (1 - tau_next)
        x_bar = x / (1 - tau)
        eps = -sigma * ring.noised(1.0, sigma).score(x_bar)
        ddim = (1 - tau_next) * (x_bar + (sigma_next - sigma) * eps)
        assert torch.allclose(euler, ddim, rtol=1e-10, atol=1e-10)
        x = euler


def test_flow_loss_is_zero_for_the_target_and_reproducible():
    x0 = _randn(6, 1, 8, 8, seed=4, dtype=torch.float32)
    tau, noise = torch.rand(6, generator=torch.Generator().manual_seed(5)), _randn(6, 1, 8, 8, seed=6, dtype=torch.float32)
    cheat = lambda x, time: noise - x0
    assert flows.flow_loss(cheat, x0, tau=tau, noise=noise).item() == 0.0
    net = UNet(in_channels=1, base_channels=8, channel_mults=(1,))
    first = flows.flow_loss(net, x0, generator=torch.Generator().manual_seed(7))
    second = flows.flow_loss(net, x0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second) and first.requires_grad
    first.backward()                      # the U-Net takes the float time tau * 1000


def test_samplers_integrate_a_gaussian_flow_with_their_orders():
    """Data N(0, s^2): the exact flow maps noise z to s z. Doubling the steps halves Euler's error and quarters Heun's."""
    s = 0.5
    gaussian = GaussianMixture(torch.zeros(1, 3, dtype=torch.float64), s)
    velocity = lambda x, tau: flows.velocity_from_score(x, tau, gaussian.noised(1 - tau, tau).score(x))
    z = _randn(20, 3, seed=8)
    for method, order in (("euler", 1), ("heun", 2)):
        errors = [(flows.sample_flow(velocity, z, n, method, times=sde.uniform_times(n, tau_max=1 - 1e-9)).images
                   - s * z).abs().max().item() for n in (8, 16, 32)]
        assert all(abs(math.log2(a / b) - order) < 0.25 for a, b in zip(errors, errors[1:])), (method, errors)


def test_straightness_of_lines_and_corners():
    line = torch.linspace(0, 1, 5)[:, None, None] * torch.tensor([[1.0, 2.0]])
    assert flows.straightness(line).abs().max() < 1e-6
    corner = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]])
    assert flows.straightness(corner).item() == pytest.approx(math.sqrt(2) - 1, rel=1e-6)


def test_toy_flow_learns_the_ring_and_reflow_straightens_it():
    torch.manual_seed(0)
    ring = GaussianMixture.ring()
    net = TimeMLP()
    fit(net, lambda g: flows.flow_loss(net, ring.sample(256, g)), steps=400, lr=5e-3, progress=False)
    noise = _randn(1000, 2, seed=9, dtype=torch.float32)
    result = flows.sample_flow(flows.velocity_fn(net), noise, 20, "heun", trajectory=True, model=net)
    exact = ring.sample(1000, torch.Generator().manual_seed(10))
    assert sliced_wasserstein(result.images, exact) < 0.3
    x0 = flows.reflow_pairs(flows.velocity_fn(net), noise, model=net)
    torch.manual_seed(1)
    straighter = TimeMLP()
    fit(straighter, lambda g: _paired_loss(straighter, x0, noise, g), steps=400, lr=5e-3, progress=False)
    again = flows.sample_flow(flows.velocity_fn(straighter), noise, 20, "heun", trajectory=True, model=straighter)
    assert flows.straightness(again.trajectory.x_t).mean() < flows.straightness(result.trajectory.x_t).mean()


def _paired_loss(net, x0, noise, generator):
    pick = torch.randint(0, len(x0), (256,), generator=generator)
    return flows.flow_loss(net, x0[pick], noise=noise[pick], generator=generator)


def test_denoising_score_matching_learns_the_score():
    """A short DSM run already gives the exact score within ~25 % at moderate noise (where the net sees data)."""
    torch.manual_seed(0)
    ring = GaussianMixture.ring()
    net = TimeMLP()
    fit(net, lambda g: dsm_loss(net, ring.sample(256, g), 0.05, 3.0, g), steps=500, lr=5e-3, progress=False)
    learned = score_fn(net, 0.05, 3.0)
    generator = torch.Generator().manual_seed(11)
    for sigma, tolerance in ((1.0, 0.3), (2.0, 0.2)):
        x = ring.sample(500, generator).double() + sigma * torch.randn(500, 2, generator=generator, dtype=torch.float64)
        exact = ring.noised(1.0, sigma).score(x)
        error = (learned(x.float(), sigma).double() - exact).norm(dim=1).mean() / exact.norm(dim=1).mean()
        assert error < tolerance
