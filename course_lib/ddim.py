"""DDIM (Song, Meng & Ermon 2021): fewer steps, a noise knob eta, inversion, and moving between starting noises.

    ddim_timesteps    the evenly spaced ("trailing") timesteps a run of ``steps`` steps visits
    ddim_plan         the same as (t, t_prev) pairs for ``sampling.run_reverse``, ending at -1
    ddim_sigma        the noise scale sigma(eta) (eq. 16)
    ddim_step         one step x_t -> x_{t_prev} for any t_prev < t (eq. 12)
    ddim_step_fn      ddim_step as a run_reverse step function
    ddim_invert_step  the eta = 0 update run towards noise: x_t -> x_{t_next}, t_next > t
    ddim_invert       data -> x_T, the latent that deterministic DDIM decodes back to the data
    slerp             spherical interpolation between two noises

Timesteps are 0-based, t in {0, ..., T-1}; ``-1`` stands for clean data (abar_{-1} = 1). x_t and eps are
(B, ...); t, t_prev are ints or int64 tensors of shape (B,). Schedule coefficients are combined in float64
and only then cast to x_t's dtype. Formula functions trust their inputs; ``ddim_invert`` (and
``sampling.sample``) check theirs.
"""
from __future__ import annotations

import math

import torch

from . import _validate as check
from .forward import PARAMETERIZATIONS, eps_from_x0, model_eps, x0_from_eps
from .sampling import gaussian_like, plan_from_times, run_reverse
from .schedules import NoiseSchedule, derived


def _alpha_bar(schedule: NoiseSchedule, t):
    """abar_t in float64 with abar_{-1} = 1 (clean data): a Python float for an int t, else a tensor of t's shape.

    Python floats keep a sampler step's coefficient arithmetic from costing more than the step itself.
    """
    if isinstance(t, int):
        return derived(schedule.alpha_bars, "list", torch.Tensor.tolist)[t] if t >= 0 else 1.0
    t = t.cpu()
    return torch.where(t >= 0, schedule.alpha_bars[t.clamp(min=0)], torch.ones((), dtype=torch.float64))


def _sqrt(value):
    return math.sqrt(value) if isinstance(value, float) else value.sqrt()


def _non_negative(value):
    return max(value, 0.0) if isinstance(value, float) else value.clamp(min=0)


def _like(value, like: torch.Tensor):
    """A float64 coefficient, a Python float or per-item values of shape (B,), ready to multiply ``like`` (B, ...)."""
    if isinstance(value, float):
        return value
    return value.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def ddim_timesteps(T: int, steps: int) -> torch.Tensor:
    """The timesteps a DDIM run of ``steps`` steps visits, decreasing, as an int64 tensor of shape (steps,).

    "Trailing" spacing (diffusers' ``timestep_spacing="trailing"``): t_i = T - 1 - round(i T / steps),
    i = 0..steps-1, followed by a last step to t = -1 (clean data). In the paper's 1-based steps this is
    tau = {T, T - k, ..., k} then 0, with k = T / steps (Song et al. 2021, sec. 4.2). It always starts at
    t = T - 1, where x_T ~ N(0, I) is a faithful start, and ends at k - 1, so no model call is spent on
    the nearly clean t = 0 unless steps = T; then the run visits every timestep, like DDPM. 1 <= steps <= T.
    """
    offsets = (torch.arange(steps, dtype=torch.float64) * T / steps).round().to(torch.int64)
    return T - 1 - offsets


def ddim_plan(T: int, steps: int) -> list[tuple[int, int]]:
    """[(t_0, t_1), ..., (t_last, -1)] over ``ddim_timesteps(T, steps)``."""
    return plan_from_times(ddim_timesteps(T, steps).tolist() + [-1])


def ddim_sigma(t, t_prev, schedule: NoiseSchedule, eta: float) -> torch.Tensor:
    """DDIM's noise scale (Song et al. 2021, eq. 16), float64: a Python float for int timesteps, else a tensor (B,):

        sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)

    eta = 0 gives the deterministic DDIM; eta = 1 with t_prev = t - 1 gives DDPM's beta_tilde_t = sigma^2.
    t: int or (B,) in 0..T-1; t_prev: int or (B,) with -1 <= t_prev < t (-1: abar_prev = 1, and sigma = 0).
    """
    alpha_bar, alpha_bar_prev = _alpha_bar(schedule, t), _alpha_bar(schedule, t_prev)
    return eta * _sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * _sqrt(1 - alpha_bar / alpha_bar_prev)


def ddim_step(x_t: torch.Tensor, t, t_prev, eps: torch.Tensor, schedule: NoiseSchedule, eta: float = 0.0,
              noise: torch.Tensor | None = None, clip_x0: bool = False,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12), for any -1 <= t_prev < t:

        x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z,   sigma = ddim_sigma(eta)

    The first term is "the predicted x0", the second "the direction pointing to x_t", the third fresh noise.
    With the true eps and eta = 0, x_t = q_sample(x0, t, eps) lands exactly on q_sample(x0, t_prev, eps):
    the noise is kept, only its amount changes. t_prev = -1 means abar_prev = 1: the step returns x0_hat.
    With clip_x0, x0_hat is clamped to [-1, 1] and eps recomputed from it, so that x_t, x0_hat and eps stay
    consistent (as in improved-diffusion). x_t, eps: (B, ...); t, t_prev: int or (B,). z is ``noise`` when
    given, else drawn from ``generator`` when sigma > 0. Returns x_{t_prev} of shape (B, ...).
    """
    sigma = ddim_sigma(t, t_prev, schedule, eta)
    alpha_bar_prev = _alpha_bar(schedule, t_prev)
    x0_hat = x0_from_eps(x_t, t, eps, schedule)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
        eps = eps_from_x0(x_t, t, x0_hat, schedule)
    # max(0, .): with eta <= 1 the argument is >= 0 exactly; the guard only absorbs float64 rounding.
    direction_scale = _sqrt(_non_negative(1 - alpha_bar_prev - sigma * sigma))
    x_prev = _like(_sqrt(alpha_bar_prev), x_t) * x0_hat + _like(direction_scale, x_t) * eps
    if noise is None:
        if eta == 0 or not bool((torch.as_tensor(sigma) > 0).any()):
            return x_prev
        noise = gaussian_like(x_t, generator)
    return x_prev + _like(sigma, x_t) * noise


def ddim_step_fn(eps_fn, schedule: NoiseSchedule, eta: float = 0.0, clip_x0: bool = False):
    """``ddim_step`` as a run_reverse step function; eps_fn(x_t, t) -> eps is the noise predictor."""
    def step(x, t, t_prev, generator):
        eps = eps_fn(x, t)
        x0_hat = x0_from_eps(x, t, eps, schedule)
        x0_hat = x0_hat.clamp(-1.0, 1.0) if clip_x0 else x0_hat
        return ddim_step(x, t, t_prev, eps, schedule, eta, clip_x0=clip_x0, generator=generator), x0_hat
    return step


def ddim_invert_step(x_t: torch.Tensor, t, t_next, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """The eta = 0 DDIM update (eq. 12) run towards noise: x_t -> x_{t_next} with t_next > t (t = -1: x_t is data).

        x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),   x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next) eps

    Given the same eps, ``ddim_step(x_next, t_next, t, eps)`` returns x_t exactly: the two are inverse maps.
    x_t, eps: (B, ...); t: int or (B,) with -1 <= t < t_next; t_next: int or (B,) in 0..T-1. Returns (B, ...).
    """
    alpha_bar, alpha_bar_next = _alpha_bar(schedule, t), _alpha_bar(schedule, t_next)
    x0_hat = (x_t - _like(_sqrt(1 - alpha_bar), x_t) * eps) / _like(_sqrt(alpha_bar), x_t)
    return _like(_sqrt(alpha_bar_next), x_t) * x0_hat + _like(_sqrt(1 - alpha_bar_next), x_t) * eps


def ddim_invert(model, x0: torch.Tensor, schedule: NoiseSchedule, steps: int, progress: bool = True,
                fixed_point_iterations: int = 0, parameterization: str = "eps",
                model_kwargs: dict | None = None) -> torch.Tensor:
    """Deterministic DDIM inversion: the x_T that ``sample(..., sampler="ddim", steps=steps, eta=0, x_T=x_T)``
    decodes back to (nearly) x0. Visits ``ddim_timesteps(T, steps)`` in increasing order, from t = -1 (x0).

    Each ``ddim_invert_step`` t -> t_next needs eps at (x_{t_next}, t_next), the value the decoder will use,
    but x_{t_next} is not known yet: like diffusers' DDIMInverseScheduler, the step uses eps(x_t, t_next).
    This is where reconstructions drift, most where eps changes fast (near the data, with large steps).
    ``fixed_point_iterations`` > 0 then re-solves x_next = invert_step(x_t, eps(x_next, t_next)) that many
    times (one extra model call each), which converges to the exact inverse of the decoder's step.
    model, parameterization, model_kwargs: as in ``sampling.sample``; runs through ``sampling.run_reverse``.
    x0: (B, ...) float. Returns x_T of x0's shape, dtype and device.
    """
    check.require_callable(model, "model", "model(x_t, t) -> eps")
    check.require_schedule(schedule)
    check.require_float_tensor(x0, "x0")
    steps = check.require_int(steps, "steps", minimum=1)
    if steps > schedule.T:
        raise ValueError(f"steps must lie in 1..T={schedule.T}, got {steps}")
    check.require_int(fixed_point_iterations, "fixed_point_iterations", minimum=0)
    check.require_choice(parameterization, "parameterization", PARAMETERIZATIONS)
    model_kwargs = check.require_model_kwargs(model_kwargs)

    def eps_fn(x_t, t):
        return model_eps(model, x_t, t, schedule, parameterization, **model_kwargs)

    def step(x, t, t_next, generator):
        x_next = ddim_invert_step(x, t, t_next, eps_fn(x, t_next), schedule)
        for _ in range(fixed_point_iterations):
            x_next = ddim_invert_step(x, t, t_next, eps_fn(x_next, t_next), schedule)
        return x_next, None

    plan = plan_from_times([-1] + ddim_timesteps(schedule.T, steps).flip(0).tolist())
    return run_reverse(model, x0, plan, step, progress=progress, desc="DDIM inversion").images


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation between two noise tensors seen as single vectors (Shoemake 1985):

        slerp(z0, z1; alpha) = sin((1 - alpha) theta) / sin(theta) z0 + sin(alpha theta) / sin(theta) z1,
        theta = arccos(<z0, z1> / (|z0| |z1|)).

    alpha = 0 gives z0 and alpha = 1 gives z1. Unlike a straight line, the path keeps the norm of
    Gaussian noise near sqrt(D), where the sampler expects x_T to be. z0, z1: the same shape, not parallel.
    """
    check.require_interpolable(z0, z1)
    theta = torch.arccos(((z0 * z1).sum() / (z0.norm() * z1.norm())).clamp(-1.0, 1.0))
    return (torch.sin((1 - alpha) * theta) * z0 + torch.sin(alpha * theta) * z1) / torch.sin(theta)
