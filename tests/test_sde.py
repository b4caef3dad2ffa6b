"""Continuous time: closed-form marginals, the reverse SDE and probability-flow ODE, their solvers, and how the
discrete samplers relate to them (DDIM = Euler in DDIM's variables; DDPM -> the reverse SDE)."""
import math

import pytest
import torch

from course_lib import sde
from course_lib.ddim import ddim_step
from course_lib.sampler_error import sliced_wasserstein
from course_lib.sampling import ddpm_step
from course_lib.schedules import NoiseSchedule
from course_lib.toy import GaussianMixture


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("vp", [sde.VPSDE(), sde.VPSDE(kind="cosine")], ids=["linear", "cosine"])
def test_alpha_bar_is_exp_of_minus_integrated_beta(vp):
    for tau in (0.1, 0.5, 0.9):
        grid = torch.linspace(0, tau, 20001, dtype=torch.float64)
        integral = torch.trapezoid(torch.tensor([vp.beta(u) for u in grid.tolist()], dtype=torch.float64), grid)
        assert vp.alpha_bar(tau) == pytest.approx(math.exp(-integral.item()), rel=1e-6)
        assert vp.std(tau) ** 2 + vp.mean_scale(tau) ** 2 == pytest.approx(1.0, abs=1e-12)
        assert vp.tau_from_alpha_bar(vp.alpha_bar(tau)) == pytest.approx(tau, abs=1e-10)


def test_continuous_schedules_are_the_limits_of_the_discrete_ones():
    T = 1000
    taus = [(t + 1) / T for t in range(T)]
    cosine = NoiseSchedule.cosine(T).alpha_bars[:-1]          # the last discrete beta is clipped at 0.999
    assert torch.allclose(torch.tensor([sde.VPSDE(kind="cosine").alpha_bar(u) for u in taus[:-1]],
                                       dtype=torch.float64), cosine, rtol=1e-10)
    # linear: sum of log(1 - beta_t) vs -integral of beta; they agree to O(beta^2) per step
    linear = NoiseSchedule.linear(T).alpha_bars
    continuous = torch.tensor([sde.VPSDE().alpha_bar(u) for u in taus], dtype=torch.float64)
    assert torch.allclose(continuous.log(), linear.log(), rtol=0.02, atol=1e-3)


@pytest.mark.parametrize("forward", [sde.VPSDE(), sde.VESDE(sigma_min=0.01, sigma_max=5.0)], ids=["VP", "VE"])
def test_forward_sde_simulation_has_the_closed_form_marginal(forward):
    """Euler-Maruyama on dx = f dt + g dw from a fixed x0: mean and variance at tau match mean_scale x0 and std^2."""
    generator = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1), 1.5, dtype=torch.float64)
    x, steps, tau_end = x0.clone(), 2000, 0.6
    dt = tau_end / steps
    for i in range(steps):
        tau = i * dt
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        x = x + forward.drift(x, tau) * dt + forward.diffusion(tau) * math.sqrt(dt) * noise
    expected_var = forward.std(tau_end) ** 2 - (forward.std(0.0) ** 2 if isinstance(forward, sde.VESDE) else 0.0)
    assert x.mean().item() == pytest.approx(forward.mean_scale(tau_end) * 1.5, abs=0.02)
    assert x.var().item() == pytest.approx(expected_var, rel=0.03)


def test_pf_ode_in_ddim_variables_is_d_xbar_d_sigma_equals_eps():
    """Change of variables: with x_bar = x / sqrt(abar) and sigma = sqrt((1 - abar) / abar), the PF-ODE
    dx/dtau = f - g^2/2 score becomes dx_bar/dsigma = eps (score = -eps / sqrt(1 - abar))."""
    vp = sde.VPSDE()
    x, eps = _randn(5, 3, seed=1), _randn(5, 3, seed=2)
    for tau in (0.05, 0.3, 0.8):
        alpha_bar = vp.alpha_bar(tau)
        dx_dtau = sde.pf_ode_drift(vp, x, tau, -eps / vp.std(tau))
        d_sqrt_alpha_bar = -0.5 * vp.beta(tau) * math.sqrt(alpha_bar)
        dxbar_dtau = dx_dtau / math.sqrt(alpha_bar) - x * d_sqrt_alpha_bar / alpha_bar
        h = 1e-6
        dsigma_dtau = (sde.sigma_from_alpha_bar(vp.alpha_bar(tau + h))
                       - sde.sigma_from_alpha_bar(vp.alpha_bar(tau - h))) / (2 * h)
        assert torch.allclose(dxbar_dtau / dsigma_dtau, eps, rtol=1e-6)


def test_ddim_eta0_is_euler_in_ddim_variables_step_for_step():
    """Along a whole run, each DDIM (eta = 0) step equals one Euler step of dx_bar/dsigma = eps, to round-off."""
    schedule = NoiseSchedule.cosine(1000)
    mixture = GaussianMixture.ring()
    timesteps = list(range(999, -1, -50)) + [-1]
    x = _randn(64, 2, seed=3)
    for t, t_prev in zip(timesteps[:-1], timesteps[1:]):
        eps = mixture.eps(x, t, schedule)
        alpha_bar = schedule.alpha_bars[t].item()
        alpha_bar_prev = schedule.alpha_bars[t_prev].item() if t_prev >= 0 else 1.0
        x_bar_next = sde.euler_step(x / math.sqrt(alpha_bar), sde.sigma_from_alpha_bar(alpha_bar),
                                    sde.sigma_from_alpha_bar(alpha_bar_prev), lambda y, s: eps)
        x_ddim = ddim_step(x, t, t_prev, eps, schedule, eta=0.0)
        assert torch.allclose(x_ddim, math.sqrt(alpha_bar_prev) * x_bar_next, rtol=1e-12, atol=1e-12)
        x = x_ddim


def test_ddim_run_equals_euler_run_on_the_same_grid():
    vp, mixture = sde.VPSDE(), GaussianMixture.ring()
    times = sde.karras_times(vp, 12)
    x_T = _randn(32, 2, seed=4)

    def eps_fn(x, tau):
        return -vp.std(tau) * mixture.noised(vp.mean_scale(tau), vp.std(tau)).score(x)

    respaced = sde.respaced_schedule(vp, times)
    x = x_T
    for i in range(respaced.T - 1, -1, -1):
        x = ddim_step(x, i, i - 1, eps_fn(x, times[-2 - i]), respaced)
    sigmas = [sde.sigma_from_alpha_bar(vp.alpha_bar(tau)) for tau in times]
    euler = sde.integrate(sde.ode_step_fn(sde.ddim_velocity(eps_fn, vp), "euler"),
                          x_T / vp.mean_scale(times[0]), sigmas).images
    assert torch.allclose(x, euler, rtol=1e-10, atol=1e-10)


def test_ddpm_step_approaches_the_reverse_sde_step():
    """With the same noise, |DDPM step - Euler-Maruyama step| shrinks faster than the step: o(dtau)."""
    vp, x, noise, score = sde.VPSDE(), _randn(16, 2, seed=5), _randn(16, 2, seed=6), _randn(16, 2, seed=7)
    gaps = []
    for n in (50, 100, 200, 400):
        times = sde.uniform_times(n)
        respaced = sde.respaced_schedule(vp, times)
        i, tau = n // 2, times[n - 1 - n // 2]                 # the same time tau = 0.5 for every n
        eps = -vp.std(tau) * score
        step_ddpm = ddpm_step(x, i, eps, respaced, noise=noise)
        step_em = sde.euler_maruyama_step(vp, x, tau, tau - 1 / n, score, noise)
        gaps.append((step_ddpm - step_em).abs().max().item() * n)    # gap / dtau
    assert all(later < 0.8 * earlier for earlier, later in zip(gaps, gaps[1:]))


def test_heun_is_second_order_and_euler_first_order():
    """On dy/ds = -y from s = 1 to 0 (exact: y e), halving the steps divides Euler's error by 2, Heun's by 4."""
    velocity = lambda y, s: y      # integrating downwards in s: dy/ds = y means y(0) = y(1) / e
    y1 = torch.ones(1, dtype=torch.float64)
    errors = {}
    for method in ("euler", "heun"):
        errors[method] = []
        for n in (10, 20, 40):
            y = y1
            times = sde.uniform_times(n)
            for s, s_next in zip(times[:-1], times[1:]):
                y = sde.euler_step(y, s, s_next, velocity) if method == "euler" else sde.heun_step(y, s, s_next, velocity)
            errors[method].append(abs(y.item() - math.exp(-1)))
    for method, order in (("euler", 1), ("heun", 2)):
        ratios = [a / b for a, b in zip(errors[method], errors[method][1:])]
        assert all(abs(math.log2(r) - order) < 0.15 for r in ratios), (method, ratios)


def test_karras_grid_and_respaced_schedule():
    vp = sde.VPSDE()
    sigmas = sde.karras_sigmas(5, 0.002, 80.0)
    assert sigmas[0] == pytest.approx(80.0) and sigmas[-2] == pytest.approx(0.002) and sigmas[-1] == 0.0
    times = sde.karras_times(vp, 8)
    assert times[0] == 1.0 and times[-1] == 0.0 and all(a > b for a, b in zip(times, times[1:]))
    respaced = sde.respaced_schedule(vp, times)
    assert respaced.T == 8
    assert torch.allclose(respaced.alpha_bars, torch.tensor([vp.alpha_bar(u) for u in reversed(times[:-1])],
                                                            dtype=torch.float64), rtol=1e-12)


def test_exact_score_samplers_reproduce_the_mixture():
    """With the exact score, Euler-Maruyama (200 steps) and Heun (20 steps) end close to exact samples."""
    vp, mixture = sde.VPSDE(), GaussianMixture.ring()
    generator = torch.Generator().manual_seed(8)
    exact, other = mixture.sample(1000, generator).double(), mixture.sample(1000, generator).double()
    floor = sliced_wasserstein(exact, other)
    x_T = torch.randn(1000, 2, generator=generator, dtype=torch.float64)

    def score_fn(x, tau):
        return mixture.noised(vp.mean_scale(tau), vp.std(tau)).score(x)

    def eps_fn(x, tau):
        return -vp.std(tau) * score_fn(x, tau)

    em = sde.integrate(sde.euler_maruyama_step_fn(vp, score_fn), x_T, sde.karras_times(vp, 200),
                       generator=generator).images
    sigmas = [sde.sigma_from_alpha_bar(vp.alpha_bar(u)) for u in sde.karras_times(vp, 20)]
    heun = sde.integrate(sde.ode_step_fn(sde.ddim_velocity(eps_fn, vp), "heun"), x_T / vp.mean_scale(1.0), sigmas).images
    for samples in (em, heun):
        assert sliced_wasserstein(samples, exact) < 1.6 * floor


def test_langevin_samples_a_gaussian_and_annealing_finds_every_mode():
    generator = torch.Generator().manual_seed(9)
    x = torch.full((4000, 1), 5.0, dtype=torch.float64)
    x = sde.langevin(lambda z: -(z - 1.0) / 0.25, x, step_size=0.01, n_steps=600, generator=generator)
    assert x.mean().item() == pytest.approx(1.0, abs=0.03) and x.std().item() == pytest.approx(0.5, rel=0.05)

    ring = GaussianMixture.ring()
    start = torch.randn(2000, 2, generator=generator, dtype=torch.float64) * 3
    sigmas = torch.logspace(math.log10(3.0), math.log10(0.05), 10).tolist()
    samples = sde.annealed_langevin(lambda z, s: ring.noised(1.0, s).score(z), start, sigmas, 30, 2e-5 * 20,
                                    generator=generator)
    nearest = torch.cdist(samples, ring.means).argmin(1)
    shares = torch.bincount(nearest, minlength=8).double() / len(samples)
    assert shares.min() > 0.08 and shares.max() < 0.17
