"""Samplers: single steps against the closed-form posterior, whole runs against exact Gaussian mixtures,
determinism, inversion, the U-Net as a model, and input errors."""
import math

import pytest
import torch
from torch import nn

from course_lib import ddim, forward, sampling
from course_lib.schedules import NoiseSchedule
from course_lib.toy import GaussianMixture
from course_lib.unet import UNet


@pytest.fixture
def schedule():
    return NoiseSchedule.linear(T=100, beta_start=1e-3, beta_end=0.2)    # abar_{T-1} ~ 2e-5: x_T is pure noise


def gaussian(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def noised(schedule, t, shape=(6, 3), seed=0):
    """x0, the true eps, and x_t = q_sample(x0, t, eps), in float64."""
    x0, eps = gaussian(*shape, seed=seed), gaussian(*shape, seed=seed + 1)
    return x0, eps, forward.q_sample(x0, t, eps, schedule)


# ---------------------------------------------------------------- ddpm_step
@pytest.mark.parametrize("t", [1, 10, 50, 99])
def test_ddpm_step_with_the_true_eps_samples_the_posterior(schedule, t):
    """x_{t-1} ~ q(x_{t-1} | x_t, x0): the standardised residual (x_{t-1} - mean) / sqrt(beta_tilde) is N(0, 1)."""
    n = 100_000
    x0, eps, x_t = noised(schedule, t, shape=(n, 2))
    mean, variance = forward.q_posterior(x0, x_t, t, schedule)
    x_prev = sampling.ddpm_step(x_t, t, eps, schedule, generator=torch.Generator().manual_seed(t))
    residual = (x_prev - mean) / variance.sqrt()
    assert abs(residual.mean().item()) < 5 / math.sqrt(2 * n)
    assert abs(residual.var().item() - 1) < 5 * math.sqrt(2 / (2 * n))
    # the same step written as in Ho et al. Alg. 2 (no clipping): mu = (x_t - beta / sqrt(1 - abar) eps) / sqrt(alpha)
    z = gaussian(n, 2, seed=99)
    alg2_mean = (x_t - schedule.betas[t] / (1 - schedule.alpha_bars[t]).sqrt() * eps) / schedule.alphas[t].sqrt()
    expected = alg2_mean + schedule.posterior_variance[t].sqrt() * z
    assert torch.allclose(sampling.ddpm_step(x_t, t, eps, schedule, noise=z), expected, atol=1e-12)


def test_ddpm_step_adds_no_noise_at_t0(schedule):
    x0, eps, x_t = noised(schedule, 0)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    out = sampling.ddpm_step(x_t, 0, eps, schedule, generator=generator)
    assert torch.equal(generator.get_state(), state)                       # nothing drawn
    assert torch.allclose(out, x0, atol=1e-12)
    assert torch.equal(sampling.ddpm_step(x_t, 0, eps, schedule, noise=gaussian(6, 3, seed=5)), out)
    # mixed batch: the t = 0 row ignores the noise, the t = 5 row does not
    t = torch.tensor([0, 5])
    x_t = forward.q_sample(x0[:2], t, eps[:2], schedule)
    quiet = sampling.ddpm_step(x_t, t, eps[:2], schedule, noise=torch.zeros(2, 3, dtype=torch.float64))
    loud = sampling.ddpm_step(x_t, t, eps[:2], schedule, noise=torch.ones(2, 3, dtype=torch.float64))
    assert torch.equal(quiet[0], loud[0]) and not torch.allclose(quiet[1], loud[1])


def test_clip_x0_clamps_the_estimate_before_the_posterior(schedule):
    x0 = torch.full((2, 4), 3.0, dtype=torch.float64)           # outside the image range [-1, 1]
    eps = gaussian(2, 4)
    x_t = forward.q_sample(x0, 20, eps, schedule)
    assert torch.allclose(forward.x0_from_eps(x_t, 20, eps, schedule), x0)
    zero = torch.zeros_like(x0)
    clipped = sampling.ddpm_step(x_t, 20, eps, schedule, noise=zero, clip_x0=True)
    assert torch.allclose(clipped, forward.q_posterior(torch.ones_like(x0), x_t, 20, schedule)[0])
    unclipped = sampling.ddpm_step(x_t, 20, eps, schedule, noise=zero)
    assert torch.allclose(unclipped, forward.q_posterior(x0, x_t, 20, schedule)[0])


# ---------------------------------------------------------------- ddim_step
@pytest.mark.parametrize("t, t_prev", [(99, 0), (99, 49), (50, 10), (1, 0), (torch.tensor([99, 60, 30, 5, 2, 1]),
                                                                             torch.tensor([80, 0, 29, 4, 0, 0]))])
def test_ddim_eta0_with_the_true_eps_keeps_the_noise(schedule, t, t_prev):
    """Deterministic DDIM maps q_sample(x0, t, eps) exactly onto q_sample(x0, t_prev, eps)."""
    x0, eps, x_t = noised(schedule, t)
    assert torch.allclose(ddim.ddim_step(x_t, t, t_prev, eps, schedule), forward.q_sample(x0, t_prev, eps, schedule),
                          atol=1e-12)
    x_t32, eps32 = x_t.float(), eps.float()
    out32 = ddim.ddim_step(x_t32, t, t_prev, eps32, schedule)
    assert out32.dtype == torch.float32
    assert torch.allclose(out32, forward.q_sample(x0, t_prev, eps, schedule).float(), atol=1e-4)


@pytest.mark.parametrize("t", [0, 30, 99])
def test_ddim_step_to_minus_one_returns_the_x0_estimate(schedule, t):
    x0, eps, x_t = noised(schedule, t)
    out = ddim.ddim_step(x_t, t, -1, eps, schedule, eta=1.0, generator=torch.Generator())
    assert torch.equal(out, forward.x0_from_eps(x_t, t, eps, schedule))      # sigma = 0 there: no noise, even at eta = 1
    assert torch.allclose(out, x0, atol=1e-10)


def test_ddim_sigma_at_eta1_on_consecutive_steps_is_the_ddpm_posterior_variance(schedule):
    t = torch.arange(schedule.T)
    sigma = ddim.ddim_sigma(t, t - 1, schedule, eta=1.0)
    assert sigma.dtype == torch.float64
    assert torch.allclose(sigma ** 2, schedule.posterior_variance, rtol=1e-12, atol=0)
    assert torch.equal(ddim.ddim_sigma(t, t - 1, schedule, eta=0.0), torch.zeros(schedule.T, dtype=torch.float64))
    assert torch.allclose(ddim.ddim_sigma(t, t - 1, schedule, eta=0.3), 0.3 * sigma)


@pytest.mark.parametrize("clip_x0", [False, True])
def test_ddim_eta1_on_consecutive_steps_is_the_ddpm_step(schedule, clip_x0):
    """Same mean and same variance: given the same z, the two steps agree for any x_t and eps."""
    x_t, eps, z = gaussian(8, 5, seed=0) * 2, gaussian(8, 5, seed=1), gaussian(8, 5, seed=2)
    t = torch.tensor([99, 70, 40, 20, 10, 3, 1, 0])
    via_ddim = ddim.ddim_step(x_t, t, t - 1, eps, schedule, eta=1.0, noise=z, clip_x0=clip_x0)
    via_ddpm = sampling.ddpm_step(x_t, t, eps, schedule, noise=z, clip_x0=clip_x0)
    assert torch.allclose(via_ddim, via_ddpm, atol=1e-10)


def test_ddim_eta1_draws_noise_with_the_posterior_variance(schedule):
    n, t = 100_000, 40
    x0, eps, x_t = noised(schedule, t, shape=(n, 2))
    x_prev = ddim.ddim_step(x_t, t, t - 1, eps, schedule, eta=1.0, generator=torch.Generator().manual_seed(1))
    mean, variance = forward.q_posterior(x0, x_t, t, schedule)
    residual = (x_prev - mean) / variance.sqrt()
    assert abs(residual.mean().item()) < 5 / math.sqrt(2 * n)
    assert abs(residual.var().item() - 1) < 5 * math.sqrt(2 / (2 * n))


def test_ddim_invert_step_undoes_ddim_step_given_the_same_eps(schedule):
    x, eps = gaussian(4, 3, seed=0), gaussian(4, 3, seed=1)
    for t, t_next in [(-1, 9), (9, 59), (59, 99), (-1, 99)]:
        x_next = ddim.ddim_invert_step(x, t, t_next, eps, schedule)
        assert torch.allclose(ddim.ddim_step(x_next, t_next, t, eps, schedule), x, atol=1e-10)


# ---------------------------------------------------------------- timesteps
def test_ddim_timesteps_trailing_spacing():
    assert ddim.ddim_timesteps(100, 20).tolist() == list(range(99, -1, -5))
    assert ddim.ddim_timesteps(10, 4).tolist() == [9, 7, 4, 1]          # diffusers "trailing" for T=10, 4 steps
    assert ddim.ddim_timesteps(10, 10).tolist() == list(range(9, -1, -1))
    assert ddim.ddim_timesteps(10, 1).tolist() == [9]
    for T in (7, 100, 1000):
        for steps in range(1, T + 1, max(1, T // 37)):
            timesteps = ddim.ddim_timesteps(T, steps)
            assert timesteps.dtype == torch.int64 and timesteps.shape == (steps,)
            assert timesteps[0] == T - 1 and timesteps[-1] >= 0
            # distinct and evenly spaced, the last jump (to clean data, t = -1) included
            gaps = -torch.cat([timesteps, torch.tensor([-1])]).diff()
            assert torch.all(gaps >= 1) and gaps.max() - gaps.min() <= 1


# ---------------------------------------------------------------- whole runs on an exact model
@pytest.fixture(scope="module")
def mixture():
    """Three well-separated, anisotropic, unequally weighted components in 2-D."""
    means = torch.tensor([[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0]], dtype=torch.float64)
    covariances = torch.tensor([[[0.09, 0.03], [0.03, 0.04]], [[0.04, 0.0], [0.0, 0.16]],
                                [[0.06, -0.02], [-0.02, 0.06]]], dtype=torch.float64)
    return GaussianMixture(means, covariances, weights=torch.tensor([0.5, 0.3, 0.2]))


def exact_model(mixture, schedule):
    return lambda x, t: mixture.eps(x, t, schedule)


@pytest.mark.parametrize("options", [dict(sampler="ddpm"), dict(sampler="ddim", steps=25),
                                     dict(sampler="ddim", steps=50, eta=1.0)], ids=["ddpm", "ddim25", "ddim50-eta1"])
def test_sampling_a_gaussian_mixture_with_its_exact_eps_recovers_it(mixture, options):
    schedule = NoiseSchedule.cosine(T=100)
    n = 4000
    x = sampling.sample(exact_model(mixture, schedule), schedule, (n, 2), seed=0, progress=False, **options).images
    assert x.shape == (n, 2) and x.dtype == torch.float32
    x = x.double()
    weights, means, covariances = mixture.weights, mixture.means, mixture.covariances
    mean = weights @ means
    covariance = (weights[:, None, None] * (covariances + means[:, :, None] * means[:, None, :])).sum(0) - mean.outer(mean)
    # Tolerances: ~4 standard errors of a 4000-sample estimate plus the few-step discretisation bias (a few
    # percent of the covariance for DDIM, measured with 40 000 samples).
    assert torch.allclose(x.mean(0), mean, atol=0.1)
    assert torch.allclose(x.T.cov(), covariance, atol=0.25)
    component = torch.cdist(x, means).argmin(1)                 # components are > 10 std apart: nearest mean is exact
    assert torch.allclose(torch.bincount(component, minlength=3) / n, weights.float(), atol=0.03)
    if options.get("eta", 0.0) == 0.0:
        # Points land on their component with about its width. (Ancestral steps with exact E[x0 | x_t] but a
        # fixed variance undershoot it when steps are large, by ~half at 50 DDIM steps with eta = 1.)
        for k in range(3):
            spread = (x[component == k] - means[k]).T.cov().diagonal().sqrt()
            assert torch.all((spread / covariances[k].diagonal().sqrt() - 1).abs() < 0.2)


def test_ddim_with_every_step_and_eta1_is_ddpm(mixture, schedule):
    """Same seed -> same x_T and the same noise draws, and each step agrees: the runs coincide."""
    model = exact_model(mixture, schedule)
    via_ddpm = sampling.sample(model, schedule, (64, 2), seed=3, progress=False).images
    via_ddim = sampling.sample(model, schedule, (64, 2), sampler="ddim", eta=1.0, seed=3, progress=False).images
    assert torch.allclose(via_ddpm, via_ddim, atol=1e-4)


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("options", [dict(sampler="ddpm"), dict(sampler="ddim", steps=10, eta=0.5)])
def test_same_seed_same_samples_and_different_seeds_differ(mixture, schedule, options):
    model = exact_model(mixture, schedule)
    run = lambda seed: sampling.sample(model, schedule, (16, 2), seed=seed, progress=False, **options).images
    assert torch.equal(run(7), run(7))
    assert not torch.allclose(run(7), run(8))
    assert torch.equal(run(torch.Generator().manual_seed(7)), run(7))
    torch.manual_seed(11)
    first = run(None)
    torch.manual_seed(11)
    assert torch.equal(run(None), first)                        # seed=None follows torch.manual_seed


def test_ddim_eta0_is_deterministic_given_x_T_and_the_seed_only_draws_x_T(mixture, schedule):
    model = exact_model(mixture, schedule)
    x_T = gaussian(16, 2, seed=4, dtype=torch.float32)
    runs = [sampling.sample(model, schedule, (16, 2), sampler="ddim", steps=10, seed=seed, x_T=x_T, progress=False).images
            for seed in (0, 1, None)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    trajectory = sampling.sample(model, schedule, (16, 2), sampler="ddim", steps=10, seed=5, progress=False,
                                 trajectory=True).trajectory
    assert torch.equal(trajectory.x_t[0], torch.randn(16, 2, generator=torch.Generator().manual_seed(5)))


def test_trajectory_records_every_kth_step_and_the_result(mixture, schedule):
    model = exact_model(mixture, schedule)
    result = sampling.sample(model, schedule, (5, 2), sampler="ddim", steps=20, seed=0, progress=False,
                             trajectory=True, trajectory_every=3)
    x, trajectory = result.images, result.trajectory
    timesteps = ddim.ddim_timesteps(100, 20)
    assert trajectory.timesteps.tolist() == timesteps[::3].tolist() + [-1]
    assert trajectory.x_t.shape == trajectory.x0_pred.shape == (8, 5, 2)
    assert torch.equal(trajectory.x_t[-1], x) and torch.equal(trajectory.x0_pred[-1], x)
    first = trajectory.x_t[0]
    assert torch.equal(trajectory.x0_pred[0], forward.x0_from_eps(first, 99, model(first, torch.full((5,), 99)), schedule))
    default = sampling.sample(model, schedule, (5, 2), seed=0, progress=False, trajectory=True).trajectory
    assert len(default.timesteps) <= sampling.TRAJECTORY_FRAMES + 1        # 100 DDPM steps -> every 2nd, plus the result


# ---------------------------------------------------------------- the loop itself
def test_run_reverse_takes_continuous_times_and_any_step_function():
    """A float plan and a step without an x0 estimate (an Euler step of dx/dtau = -x, as notebook 07's solvers)."""
    calls = []

    def euler(x, t, t_next, generator):
        calls.append((t, t_next, generator))
        return x + (t_next - t) * (-x), None

    times = torch.linspace(1.0, 0.0, 11).tolist()
    generator = torch.Generator().manual_seed(0)
    result = sampling.run_reverse(None, torch.ones(3, 2), sampling.plan_from_times(times), euler, generator,
                                  progress=False, trajectory=True, trajectory_every=5)
    assert [c[:2] for c in calls] == list(zip(times[:-1], times[1:])) and all(c[2] is generator for c in calls)
    assert torch.allclose(result.images, torch.full((3, 2), 1.1 ** 10))        # (1 + 0.1)^10: Euler backwards in tau
    assert result.trajectory.x0_pred is None
    assert result.trajectory.timesteps.dtype == torch.float32 and result.trajectory.timesteps.tolist()[-1] == 0.0
    assert result.trajectory.x_t.shape == (3, 3, 2)                            # steps 0 and 5, then the result


def test_ddpm_plan_visits_every_timestep_down_to_clean_data():
    assert sampling.ddpm_plan(4) == [(3, 2), (2, 1), (1, 0), (0, -1)]
    assert ddim.ddim_plan(10, 4) == [(9, 7), (7, 4), (4, 1), (1, -1)]


# ---------------------------------------------------------------- inversion
@pytest.fixture(scope="module")
def smooth_mixture():
    """Broad components: the probability-flow map is smooth, so few-step DDIM inversion is well posed."""
    return GaussianMixture(torch.tensor([[-1.0, 0.5], [1.0, -0.5]], dtype=torch.float64), 0.5,
                           weights=torch.tensor([0.6, 0.4]))


def test_ddim_invert_then_decode_reconstructs_x0(smooth_mixture, schedule):
    model = exact_model(smooth_mixture, schedule)
    x0 = smooth_mixture.sample(2000, torch.Generator().manual_seed(1)).double()

    def reconstruction_error(steps, fixed_point_iterations=0):
        x_T = ddim.ddim_invert(model, x0, schedule, steps, progress=False,
                                   fixed_point_iterations=fixed_point_iterations)
        decoded = sampling.sample(model, schedule, tuple(x0.shape), sampler="ddim", steps=steps, x_T=x_T, progress=False).images
        return x_T, (decoded - x0).norm(dim=1).pow(2).mean().sqrt().item()

    x_T, error_50 = reconstruction_error(50)
    assert x_T.shape == x0.shape and x_T.dtype == torch.float64
    assert error_50 < 0.06                                     # the data's spread is ~1.2
    _, error_100 = reconstruction_error(100)
    assert 0.35 < error_100 / error_50 < 0.65                  # first order: the error halves with twice the steps
    _, error_fixed_point = reconstruction_error(50, fixed_point_iterations=3)
    assert error_fixed_point < 1e-3
    # The probability-flow map carries the data distribution to the prior: the latents look like N(0, I).
    assert torch.allclose(x_T.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.1)
    assert torch.allclose(x_T.T.cov(), torch.eye(2, dtype=torch.float64), atol=0.15)


# ---------------------------------------------------------------- the U-Net as a model
def tiny_unet(**options):
    torch.manual_seed(0)
    return UNet(base_channels=8, channel_mults=(1, 2), **options)


@pytest.mark.parametrize("options", [dict(sampler="ddpm"), dict(sampler="ddim", steps=3, eta=0.5, clip_x0=True)])
def test_sample_runs_a_unet_and_restores_its_mode(options):
    schedule = NoiseSchedule.linear(T=10)
    net = tiny_unet()
    net.train()
    net.mid[1].eval()                                           # a submodule in its own mode must keep it
    x = sampling.sample(net, schedule, (2, 1, 8, 8), seed=0, progress=False, **options).images
    assert x.shape == (2, 1, 8, 8) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert not x.requires_grad
    assert net.training and not net.mid[1].training and net.conv_in.training
    if options.get("clip_x0"):
        assert x.abs().max() <= 1 + 1e-6                        # the last step returns the clamped x0 estimate
    net.eval()
    sampling.sample(net, schedule, (2, 1, 8, 8), seed=0, progress=False, **options)
    assert not net.training


def test_sample_calls_the_model_in_eval_mode_with_int64_timesteps():
    seen = []

    class Recorder(nn.Module):
        def forward(self, x, t):
            seen.append((self.training, torch.is_grad_enabled(), t.dtype, tuple(t.shape), t[0].item()))
            return torch.zeros_like(x)

    sampling.sample(Recorder().train(), NoiseSchedule.linear(T=10), (3, 2), sampler="ddim", steps=4, progress=False)
    assert seen == [(False, False, torch.int64, (3,), t) for t in (9, 7, 4, 1)]


def test_class_conditional_unet_via_lambda_or_model_kwargs():
    schedule = NoiseSchedule.linear(T=10)
    net = tiny_unet(num_classes=3).eval()
    y = torch.tensor([0, 2])
    via_lambda = sampling.sample(lambda x, t: net(x, t, y), schedule, (2, 1, 8, 8), sampler="ddim", steps=4, seed=1,
                                 progress=False).images
    via_kwargs = sampling.sample(net, schedule, (2, 1, 8, 8), sampler="ddim", steps=4, seed=1, progress=False,
                                 model_kwargs={"y": y}).images
    unconditional = sampling.sample(net, schedule, (2, 1, 8, 8), sampler="ddim", steps=4, seed=1, progress=False).images
    assert torch.equal(via_lambda, via_kwargs)
    assert not torch.allclose(via_kwargs, unconditional)        # the label reaches the model


def test_ddim_invert_accepts_a_unet():
    schedule = NoiseSchedule.linear(T=10)
    net = tiny_unet().train()
    x0 = gaussian(2, 1, 8, 8, dtype=torch.float32).clamp(-1, 1)
    x_T = ddim.ddim_invert(net, x0, schedule, steps=5, progress=False)
    assert x_T.shape == x0.shape and torch.isfinite(x_T).all() and net.training


# ---------------------------------------------------------------- input errors
def _bad_calls():
    s = NoiseSchedule.linear(T=10)
    x, eps = torch.zeros(2, 3), torch.zeros(2, 3)
    zero_model = lambda x, t: torch.zeros_like(x)
    return [
        ("model not callable", lambda: sampling.sample("net", s, (2, 3)), TypeError, "model must be callable"),
        ("unknown sampler", lambda: sampling.sample(zero_model, s, (2, 3), sampler="euler"), ValueError,
         r"unknown sampler 'euler'; expected one of \['ddim', 'ddpm'\]"),
        ("ddpm steps", lambda: sampling.sample(zero_model, s, (2, 3), steps=5), ValueError,
         "steps must be None or T=10, got 5"),
        ("ddpm eta", lambda: sampling.sample(zero_model, s, (2, 3), eta=0.5), ValueError, "eta applies to sampler='ddim'"),
        ("ddim steps", lambda: sampling.sample(zero_model, s, (2, 3), sampler="ddim", steps=20), ValueError,
         r"steps must lie in 1\.\.T=10 .*got 20"),
        ("ddim eta", lambda: sampling.sample(zero_model, s, (2, 3), sampler="ddim", eta=-1.0), ValueError,
         r"eta \(0: deterministic DDIM, 1: DDPM's variance\) must be a finite number in \[0.0, 1.0\], got -1.0"),
        ("ddim eta type", lambda: sampling.sample(zero_model, s, (2, 3), sampler="ddim", eta="0"), TypeError,
         "eta .* must be a number"),
        ("ddim steps 0", lambda: sampling.sample(zero_model, s, (2, 3), sampler="ddim", steps=0), ValueError,
         "steps must be >= 1"),
        ("ddim steps float", lambda: sampling.sample(zero_model, s, (2, 3), sampler="ddim", steps=2.0), TypeError,
         "steps must be an int"),
        ("parameterization", lambda: sampling.sample(zero_model, s, (2, 3), parameterization="score"), ValueError,
         "unknown parameterization 'score'"),
        ("shape type", lambda: sampling.sample(zero_model, s, 6), TypeError, "shape must be a tuple"),
        ("shape values", lambda: sampling.sample(zero_model, s, (2, 0)), ValueError, r"positive ints .* got \(2, 0\)"),
        ("seed type", lambda: sampling.sample(zero_model, s, (2, 3), seed=1.5), TypeError, "seed must be an int"),
        ("x_T shape", lambda: sampling.sample(zero_model, s, (2, 3), x_T=torch.zeros(2, 4)), ValueError,
         r"x_T must have the requested shape \(2, 3\)"),
        ("model output", lambda: sampling.sample(lambda x, t: x[:, :1], s, (2, 3)), ValueError,
         r"model\(x_t, t\) must return a tensor of x_t's shape \(2, 3\); got \(2, 1\)"),
        ("model returns a list", lambda: sampling.sample(lambda x, t: [0], s, (2, 3)), ValueError, "got list"),
        ("model_kwargs", lambda: sampling.sample(zero_model, s, (2, 3), model_kwargs=[1]), TypeError,
         "model_kwargs must be a dict"),
        ("trajectory_every", lambda: sampling.sample(zero_model, s, (2, 3), trajectory_every=0), ValueError,
         "trajectory_every must be >= 1"),
        ("invert steps", lambda: ddim.ddim_invert(zero_model, x, s, steps=11), ValueError, r"steps must lie in 1\.\.T"),
        ("invert x0", lambda: ddim.ddim_invert(zero_model, [1.0], s, steps=2), TypeError, "x0 must be a torch.Tensor"),
    ]


@pytest.mark.parametrize("call, error, message", [case[1:] for case in _bad_calls()], ids=[case[0] for case in _bad_calls()])
def test_bad_inputs_raise_helpful_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_slerp_ends_at_its_endpoints_and_keeps_the_norm_of_orthogonal_noises():
    from course_lib.ddim import slerp

    generator = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 1, 8, 8, generator=generator)
    assert torch.allclose(slerp(z0, z1, 0.0), z0, atol=1e-6) and torch.allclose(slerp(z0, z1, 1.0), z1, atol=1e-6)
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    halfway = slerp(e0, e1, 0.5)
    assert torch.allclose(halfway, torch.tensor([0.5 ** 0.5, 0.5 ** 0.5]))
    assert halfway.norm().item() == pytest.approx(1.0)       # a straight line would dip to 0.71
