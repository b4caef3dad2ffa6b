"""Sampling: the one reverse loop every sampler plugs into, the DDPM step, and ``sample``.

    run_reverse     the loop: walks a plan of (t, t_next) pairs, owns the progress bar, the generator,
                    the trajectory and eval mode / no_grad; a sampler is a step function passed to it
    ddpm_step       one ancestral step x_t -> x_{t-1} (Ho et al. 2020, Alg. 2, written via the posterior)
    ddpm_step_fn    ddpm_step as a step function for run_reverse
    sample          a whole run from x_T ~ N(0, I): DDPM over every timestep, or DDIM (ddim.py) over any number

A step function is ``step(x, t, t_next, generator) -> (x_next, x0_estimate)``: it moves x (B, ...) from time t
to t_next and returns the x0 it estimated on the way (or None, e.g. for a pure ODE solver). Discrete samplers
use 0-based int timesteps (t_next = -1: clean data); notebook 07's solvers use float times in [0, 1];
run_reverse never looks inside t. Randomness: every Gaussian draw is made on the CPU from one torch.Generator,
then moved to the device (``gaussian_like``), so a seed means the same numbers on every device.
A model is any callable ``model(x_t, t, **model_kwargs)`` with t int64 (B,) on x_t's device.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from . import _validate as check
from .forward import PARAMETERIZATIONS, model_eps, q_posterior, x0_from_eps
from .progress import progress_bar
from .schedules import NoiseSchedule, gather

SAMPLERS = ("ddpm", "ddim")
TRAJECTORY_FRAMES = 50      # default number of recorded steps, so animations of 1000-step runs stay small


# ---------------------------------------------------------------- the loop
@dataclass
class Trajectory:
    """Frames of one run, on the CPU, for pictures and animations. F frames:

    timesteps: (F,) the t of each recorded step (int64; float32 for continuous times), then the plan's last
               t_next (-1: the finished samples).
    x_t:       (F, B, ...) the samples entering each recorded step (frame 0 is x_T), then the final samples.
    x0_pred:   (F, B, ...) the x0 estimate made at that step, then the final samples; None when the step
               function gives no estimate.
    """
    timesteps: torch.Tensor
    x_t: torch.Tensor
    x0_pred: torch.Tensor | None


@dataclass
class SampleResult:
    """images: the final samples (B, ...); trajectory: a ``Trajectory`` when one was asked for, else None."""
    images: torch.Tensor
    trajectory: Trajectory | None = None


def gaussian_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, I) noise of x's shape and dtype, drawn on the CPU so that a seed gives the same numbers on every device."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


@contextmanager
def evaluation_mode(model):
    """torch.no_grad(), plus eval() when model is an nn.Module; every submodule's own mode is restored afterwards."""
    modes = [(module, module.training) for module in model.modules()] if isinstance(model, nn.Module) else []
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def plan_from_times(times) -> list[tuple]:
    """The (t, t_next) pairs of a run visiting ``times`` in order, the end included: [a, b, c] -> [(a, b), (b, c)]."""
    times = list(times)
    return list(zip(times[:-1], times[1:]))


def ddpm_plan(T: int) -> list[tuple[int, int]]:
    """Every timestep: [(T-1, T-2), ..., (0, -1)]."""
    return plan_from_times(range(T - 1, -2, -1))


def run_reverse(model, x_T: torch.Tensor, plan, step, generator: torch.Generator | None = None,
                progress: bool = True, desc: str = "sampling", trajectory: bool = False,
                trajectory_every: int | None = None) -> SampleResult:
    """Run ``x = step(x, t, t_next, generator)[0]`` over every (t, t_next) of ``plan``, starting from x_T (B, ...).

    The one reverse loop: DDPM, DDIM, inversion, inpainting and guided sampling are step functions or model
    wrappers passed here. It runs under torch.no_grad() with ``model`` in eval mode when it is an nn.Module
    (each submodule's mode restored afterwards; pass None when there is none), shows one tqdm.auto bar, and with
    ``trajectory`` records every ``trajectory_every``-th step (default: about 50 frames) plus the final samples.
    Returns a ``SampleResult``.
    """
    every = trajectory_every or math.ceil(len(plan) / TRAJECTORY_FRAMES)
    frames = []
    x = x_T
    with evaluation_mode(model):
        for i, (t, t_next) in enumerate(progress_bar(plan, desc=desc, unit="step", disable=not progress)):
            x_next, x0_estimate = step(x, t, t_next, generator)
            if trajectory and i % every == 0:
                frames.append((t, x.cpu(), None if x0_estimate is None else x0_estimate.cpu()))
            x = x_next
    if not trajectory:
        return SampleResult(x)
    times, xs, x0s = zip(*frames, (plan[-1][1], x.cpu(), x.cpu()))
    x0_pred = None if any(x0 is None for x0 in x0s) else torch.stack(x0s)
    return SampleResult(x, Trajectory(torch.tensor(times), torch.stack(xs), x0_pred))


# ---------------------------------------------------------------- DDPM
def ddpm_step(x_t: torch.Tensor, t, eps: torch.Tensor, schedule: NoiseSchedule, noise: torch.Tensor | None = None,
              clip_x0: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Ancestral step x_t -> x_{t-1} ~ N(mu, beta_tilde_t I) (Ho et al. 2020, Alg. 2, via DDPM eqs. 6-7, 15):

        x0_hat  = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)          (clamped to [-1, 1] when clip_x0)
        mu, beta_tilde_t = q_posterior(x0_hat, x_t, t)
        x_{t-1} = mu + sqrt(beta_tilde_t) z

    Without clipping, mu equals Alg. 2's (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t).
    x_t, eps: (B, ...); t: int or (B,), 0-based. z is ``noise`` when given, else drawn from ``generator``
    (the global RNG when None). At t = 0, beta_tilde = 0 exactly, so no noise is added and none is drawn.
    Returns x_{t-1} of shape (B, ...).
    """
    x0_hat = x0_from_eps(x_t, t, eps, schedule)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
    mean, _ = q_posterior(x0_hat, x_t, t, schedule)
    if noise is None:
        if (t == 0) if isinstance(t, int) else bool(torch.all(t == 0)):
            return mean
        noise = gaussian_like(x_t, generator)
    return mean + gather(schedule.sqrt_posterior_variance, t, x_t) * noise


def ddpm_step_fn(eps_fn, schedule: NoiseSchedule, clip_x0: bool = False):
    """``ddpm_step`` as a run_reverse step function; eps_fn(x_t, t) -> eps is the noise predictor."""
    def step(x, t, t_prev, generator):
        eps = eps_fn(x, t)
        x0_hat = x0_from_eps(x, t, eps, schedule)
        x0_hat = x0_hat.clamp(-1.0, 1.0) if clip_x0 else x0_hat
        return ddpm_step(x, t, eps, schedule, clip_x0=clip_x0, generator=generator), x0_hat
    return step


# ---------------------------------------------------------------- whole runs (an edge: inputs are checked here)
def sampler_plan(sampler: str, T: int, steps, eta) -> list[tuple[int, int]]:
    """The checked (t, t_prev) pairs of a 'ddpm' or 'ddim' run, from t = T - 1 down to t_prev = -1."""
    check.require_choice(sampler, "sampler", SAMPLERS)
    if sampler == "ddpm":
        if eta != 0:
            raise ValueError(f"eta applies to sampler='ddim' only (DDPM's noise is its posterior variance; DDIM with "
                             f"eta=1 reproduces it), got eta={eta}")
        if steps is not None and steps != T:
            raise ValueError(f"DDPM visits every timestep: steps must be None or T={T}, got {steps!r}; "
                             f"for fewer steps use sampler='ddim' (eta=1.0 keeps DDPM-like noise)")
        return ddpm_plan(T)
    from .ddim import ddim_plan     # imported here: ddim.py builds on this module

    # Beyond 1, sigma^2 can exceed 1 - abar_prev and the eps coefficient sqrt(1 - abar_prev - sigma^2) is undefined.
    check.require_number(eta, "eta (0: deterministic DDIM, 1: DDPM's variance)", 0.0, 1.0)
    steps = T if steps is None else check.require_int(steps, "steps", minimum=1)
    if steps > T:
        raise ValueError(f"steps must lie in 1..T={T} (each step visits a distinct timestep), got {steps}")
    return ddim_plan(T, steps)


def sample(model, schedule: NoiseSchedule, shape, sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0,
           seed: int | torch.Generator | None = None, clip_x0: bool = False, device="cpu", progress: bool = True,
           trajectory: bool = False, trajectory_every: int | None = None, x_T: torch.Tensor | None = None,
           parameterization: str = "eps", model_kwargs: dict | None = None) -> SampleResult:
    """Draw samples of ``shape`` (B, ...) by running the reverse process from x_T ~ N(0, I) to t = -1.

    sampler="ddpm": ``ddpm_step`` at every t = T-1, ..., 0 (steps must be None or T; eta must be 0).
    sampler="ddim": ``ddim.ddim_step`` over ``ddim.ddim_timesteps(T, steps)`` then to -1 (steps: 1..T, default T),
    with noise scale ``eta`` in [0, 1] (0: deterministic given x_T; 1 with steps = T: DDPM again).

    model: ``model(x_t, t, **model_kwargs)``, t int64 (B,), returning eps, x0 or v (``parameterization``).
        It runs under torch.no_grad(); an nn.Module is put in eval mode and every submodule's mode restored
        afterwards. A lambda around a net is called as is, so for dropout nets pass the net itself with
        model_kwargs={"y": labels}.
    seed: int, CPU torch.Generator, or None (the global RNG). It draws x_T first, then every step's noise,
        all on the CPU, so the same seed gives bit-identical samples and x_T is shared by both samplers.
    clip_x0: clamp each step's x0 estimate to [-1, 1] (image models).
    x_T: optional starting noise of ``shape``; its dtype is kept (float32 otherwise).
    device: where x_t and the model's inputs live. progress: a tqdm.auto bar over the steps.
    trajectory: also record a ``Trajectory`` (CPU) of every ``trajectory_every``-th step (default: about
        50 frames) plus the final samples.
    Returns a ``SampleResult``: ``.images`` (B, ...) on ``device`` and ``.trajectory`` (or None).
    """
    check.require_callable(model, "model", "model(x_t, t) -> eps")
    check.require_schedule(schedule)
    shape = check.require_shape(shape)
    plan = sampler_plan(sampler, schedule.T, steps, eta)
    check.require_choice(parameterization, "parameterization", PARAMETERIZATIONS)
    generator = check.make_generator(seed)
    model_kwargs = check.require_model_kwargs(model_kwargs)
    if trajectory_every is not None:
        check.require_int(trajectory_every, "trajectory_every", minimum=1)
    device = torch.device(device)
    if x_T is None:
        x = torch.randn(shape, generator=generator).to(device)
    else:
        check.require_float_tensor(x_T, "x_T")
        if tuple(x_T.shape) != shape:
            raise ValueError(f"x_T must have the requested shape {shape}, got {tuple(x_T.shape)}")
        x = x_T.to(device)

    def eps_fn(x_t, t):
        return model_eps(model, x_t, t, schedule, parameterization, **model_kwargs)

    if sampler == "ddpm":
        step = ddpm_step_fn(eps_fn, schedule, clip_x0)
    else:
        from .ddim import ddim_step_fn
        step = ddim_step_fn(eps_fn, schedule, eta, clip_x0)
    return run_reverse(model, x, plan, step, generator, progress, f"{sampler.upper()} sampling", trajectory,
                       trajectory_every)
