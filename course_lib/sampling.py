"""Sampling: run the reverse process from noise to data with a noise-prediction model eps_theta(x_t, t).

    estimate_x0        x0_hat from x_t and a noise prediction, optionally clamped to [-1, 1]
    ddpm_step          one ancestral step x_t -> x_{t-1} (Ho et al. 2020, Alg. 2, written via the posterior)
    ddim_sigma         the DDIM noise scale sigma(eta) (Song et al. 2021, eq. 16)
    ddim_step          one DDIM step x_t -> x_{t_prev} for any t_prev < t (Song et al. 2021, eq. 12)
    ddim_timesteps     the evenly spaced ("trailing") timesteps a DDIM run visits
    sample             a whole run from x_T ~ N(0, I): DDPM over every timestep, or DDIM over any number
    ddim_invert_step   the deterministic DDIM update run towards noise: x_t -> x_{t_next}, t_next > t
    ddim_invert        data -> x_T, the latent that deterministic DDIM decodes back to the data

Conventions (as in the rest of course_lib, and diffusers):
* Timesteps are 0-based, t in {0, ..., T-1}. ``t_prev = -1`` stands for clean data: abar_{-1} = 1.
* x_t, eps and noise are (B, ...) float tensors of one shape (images: (B, C, H, W)); t is an int or
  an int64 tensor of shape (B,). Results have x_t's shape, dtype and device.
* A model is any callable ``model(x_t, t, **model_kwargs) -> eps`` with t an int64 tensor (B,) on x_t's
  device; a class-conditional UNet is ``sample(net, ..., model_kwargs={"y": labels})`` or a lambda.
* Randomness: every Gaussian draw is made on the CPU from one torch.Generator, then moved to the
  device, so a seed means the same noise on every device. ``sample`` draws x_T first, so every
  sampler starts from the same x_T for a given seed.
* Schedule coefficients are combined in float64 and only then cast to x_t's dtype.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ._validate import require_choice, require_float_tensor, require_int, require_same_shape, require_tensor
from .forward import predict_eps, predict_x0, q_posterior
from .schedules import NoiseSchedule, as_timestep_tensor, check_timesteps, gather, require_schedule

SAMPLERS = ("ddpm", "ddim")
TRAJECTORY_FRAMES = 50      # default number of recorded steps, so animations of 1000-step runs stay small


# ---------------------------------------------------------------- input checks
def _check_step_inputs(schedule, x_t, eps, noise, generator) -> None:
    require_schedule(schedule)
    require_float_tensor(x_t, "x_t")
    require_float_tensor(eps, "eps")
    require_same_shape(x_t, eps, "x_t", "eps")
    if noise is not None:
        require_float_tensor(noise, "noise")
        require_same_shape(x_t, noise, "x_t", "noise")
        if generator is not None:
            raise ValueError("pass either noise or a generator to draw it from, not both")


def _check_eta(eta) -> float:
    if isinstance(eta, bool) or not isinstance(eta, (int, float)):
        raise TypeError(f"eta must be a number in [0, 1], got {type(eta).__name__}")
    if not 0.0 <= eta <= 1.0:
        # Beyond 1, sigma^2 can exceed 1 - abar_prev and the eps coefficient sqrt(1 - abar_prev - sigma^2) is undefined.
        raise ValueError(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM's variance), got {eta}")
    return float(eta)


def _check_earlier_timesteps(earlier, later: torch.Tensor, earlier_name: str, later_name: str,
                             batch: int | None = None) -> torch.Tensor:
    """``earlier`` (an int or an integer tensor of shape () or (B,), -1 allowed) as a CPU int64 tensor of shape (B,) or (1,).

    Every value must satisfy -1 <= earlier < later (elementwise; ``later`` is already a checked tensor), and
    the two must hold 1 timestep or one per batch item.
    """
    earlier = as_timestep_tensor(earlier, earlier_name)
    sizes = {earlier.numel(), later.numel()} | ({batch} if batch is not None else set())
    if len(sizes - {1}) > 1:
        raise ValueError(f"{later_name} and {earlier_name} must each hold 1 timestep or one per batch item; got "
                         f"{later.numel()} and {earlier.numel()}" + (f" for a batch of {batch}" if batch else ""))
    if earlier.min() < -1:
        raise ValueError(f"{earlier_name} must be >= -1 (-1 means clean data), got {earlier.min().item()}")
    if torch.any(earlier >= later):
        raise ValueError(f"{earlier_name} must be smaller than {later_name} elementwise; got {later_name}="
                         f"{later.tolist()} and {earlier_name}={earlier.tolist()}")
    return earlier


# ---------------------------------------------------------------- small shared pieces
def _alpha_bar(schedule: NoiseSchedule, steps: torch.Tensor) -> torch.Tensor:
    """abar at CPU int64 timesteps, float64, with abar_{-1} = 1 (clean data)."""
    return torch.where(steps >= 0, schedule.alpha_bars[steps.clamp(min=0)], torch.ones((), dtype=torch.float64))


def _like(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """float64 per-item values (B,) or (1,) -> (B, 1, ..., 1) in like's dtype and device, broadcasting against like."""
    return values.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _gaussian_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, I) noise of x's shape and dtype, drawn on the CPU so that a seed gives the same numbers on every device."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


# ---------------------------------------------------------------- one step
def estimate_x0(x_t: torch.Tensor, t, eps: torch.Tensor, schedule: NoiseSchedule, clip_x0: bool = False) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (q_sample solved for x0), clamped to [-1, 1] when clip_x0.

    Clamping helps image models, whose data lie in [-1, 1]: early, noisy steps can overshoot by a lot.
    x_t, eps: (B, ...); t: int or (B,). Returns (B, ...).
    """
    x0_hat = predict_x0(x_t, t, eps, require_schedule(schedule))
    return x0_hat.clamp(-1.0, 1.0) if clip_x0 else x0_hat


def ddpm_step(x_t: torch.Tensor, t, eps: torch.Tensor, schedule: NoiseSchedule, noise: torch.Tensor | None = None,
              clip_x0: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Ancestral step x_t -> x_{t-1} ~ N(mu, beta_tilde_t I) (Ho et al. 2020, Alg. 2, via DDPM eqs. 6-7, 15).

        x0_hat = estimate_x0(x_t, t, eps)                      (clamped to [-1, 1] when clip_x0)
        mu     = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0_hat + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
        x_{t-1} = mu + sqrt(beta_tilde_t) z,   beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t

    Without clipping, mu equals Alg. 2's (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t).
    x_t, eps: (B, ...); t: int or (B,), 0-based. z is ``noise`` when given, else drawn from ``generator``
    (the global RNG when None). At t = 0, beta_tilde = 0 exactly, so no noise is added and none is drawn.
    Returns x_{t-1} of shape (B, ...).
    """
    _check_step_inputs(schedule, x_t, eps, noise, generator)
    x0_hat = estimate_x0(x_t, t, eps, schedule, clip_x0)
    mean, _ = q_posterior(x0_hat, x_t, t, schedule)
    if noise is None:
        if torch.all(check_timesteps(t, schedule.T) == 0):
            return mean
        noise = _gaussian_like(x_t, generator)
    return mean + gather(schedule.posterior_variance.sqrt(), t, x_t) * noise


def ddim_sigma(t, t_prev, schedule: NoiseSchedule, eta: float) -> torch.Tensor:
    """DDIM's noise scale (Song et al. 2021, eq. 16), float64 of shape (B,) or (1,):

        sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)

    eta = 0 gives the deterministic DDIM; eta = 1 with t_prev = t - 1 gives DDPM's beta_tilde_t = sigma^2.
    t: int or (B,) in 0..T-1; t_prev: int or (B,) with -1 <= t_prev < t (-1: abar_prev = 1, and sigma = 0).
    """
    require_schedule(schedule)
    eta = _check_eta(eta)
    steps = check_timesteps(t, schedule.T)
    prev_steps = _check_earlier_timesteps(t_prev, steps, "t_prev", "t")
    alpha_bar, alpha_bar_prev = _alpha_bar(schedule, steps), _alpha_bar(schedule, prev_steps)
    return eta * ((1 - alpha_bar_prev) / (1 - alpha_bar)).sqrt() * (1 - alpha_bar / alpha_bar_prev).sqrt()


def ddim_step(x_t: torch.Tensor, t, t_prev, eps: torch.Tensor, schedule: NoiseSchedule, eta: float = 0.0,
              noise: torch.Tensor | None = None, clip_x0: bool = False,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12), for any -1 <= t_prev < t:

        x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z,   sigma = ddim_sigma(eta)

    The first term is "the predicted x0", the second "the direction pointing to x_t", the third fresh noise.
    With the true eps and eta = 0, x_t = q_sample(x0, t, eps) lands exactly on q_sample(x0, t_prev, eps):
    the noise is kept, only its amount changes. t_prev = -1 means abar_prev = 1: the step returns x0_hat.
    With clip_x0, eps is recomputed from the clamped x0_hat so that x_t, x0_hat and eps stay consistent
    (as in improved-diffusion). x_t, eps: (B, ...); t, t_prev: int or (B,). z is ``noise`` when given,
    else drawn from ``generator`` when sigma > 0. Returns x_{t_prev} of shape (B, ...).
    """
    _check_step_inputs(schedule, x_t, eps, noise, generator)
    steps = check_timesteps(t, schedule.T, batch=x_t.shape[0])
    prev_steps = _check_earlier_timesteps(t_prev, steps, "t_prev", "t", batch=x_t.shape[0])
    sigma = ddim_sigma(steps, prev_steps, schedule, eta)
    alpha_bar_prev = _alpha_bar(schedule, prev_steps)
    x0_hat = estimate_x0(x_t, steps, eps, schedule, clip_x0)
    if clip_x0:
        eps = predict_eps(x_t, steps, x0_hat, schedule)
    # clamp: with eta <= 1 the argument is >= 0 exactly; the guard only absorbs float64 rounding.
    direction_scale = (1 - alpha_bar_prev - sigma ** 2).clamp(min=0).sqrt()
    x_prev = _like(alpha_bar_prev.sqrt(), x_t) * x0_hat + _like(direction_scale, x_t) * eps
    if noise is None:
        if not torch.any(sigma > 0):
            return x_prev
        noise = _gaussian_like(x_t, generator)
    return x_prev + _like(sigma, x_t) * noise


def ddim_invert_step(x_t: torch.Tensor, t, t_next, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """The eta = 0 DDIM update run towards noise: x_t -> x_{t_next} with t_next > t (t = -1: x_t is clean data).

        x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),   x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next) eps

    Given the same eps, ``ddim_step(x_next, t_next, t, eps)`` returns x_t exactly: the two are inverse maps.
    x_t, eps: (B, ...); t: int or (B,) with -1 <= t < t_next; t_next: int or (B,) in 0..T-1. Returns (B, ...).
    """
    _check_step_inputs(schedule, x_t, eps, None, None)
    next_steps = check_timesteps(t_next, schedule.T, batch=x_t.shape[0])
    steps = _check_earlier_timesteps(t, next_steps, "t", "t_next", batch=x_t.shape[0])
    alpha_bar, alpha_bar_next = _alpha_bar(schedule, steps), _alpha_bar(schedule, next_steps)
    x0_hat = (x_t - _like((1 - alpha_bar).sqrt(), x_t) * eps) / _like(alpha_bar.sqrt(), x_t)
    return _like(alpha_bar_next.sqrt(), x_t) * x0_hat + _like((1 - alpha_bar_next).sqrt(), x_t) * eps


# ---------------------------------------------------------------- whole runs
def ddim_timesteps(T: int, steps: int) -> torch.Tensor:
    """The timesteps a DDIM run of ``steps`` steps visits, decreasing, as an int64 tensor of shape (steps,).

    "Trailing" spacing (diffusers' ``timestep_spacing="trailing"``): t_i = T - 1 - round(i T / steps),
    i = 0..steps-1, followed by a last step to t = -1 (clean data). In the paper's 1-based steps this is
    tau = {T, T - k, ..., k} then 0, with k = T / steps (Song et al. 2021, sec. 4.2). It always starts at
    t = T - 1, where x_T ~ N(0, I) is a faithful start, and ends at k - 1, so no model call is spent on
    the nearly clean t = 0 unless steps = T; then the run visits every timestep, like DDPM.
    """
    T, steps = require_int(T, "T", minimum=1), require_int(steps, "steps", minimum=1)
    if steps > T:
        raise ValueError(f"steps must lie in 1..T={T} (each step visits a distinct timestep), got {steps}")
    # Spacing T / steps >= 1, so the rounded offsets are distinct.
    offsets = (torch.arange(steps, dtype=torch.float64) * T / steps).round().to(torch.int64)
    return T - 1 - offsets


@dataclass
class Trajectory:
    """Frames of one sampling run, on the CPU, for pictures and animations. F frames:

    timesteps: (F,) int64, decreasing: the t of each recorded step, then -1 for the finished samples.
    x_t:       (F, B, ...) the samples entering each recorded step (frame 0 is x_T), then the final samples.
    x0_pred:   (F, B, ...) the x0 estimate made at that step (clamped when clip_x0), then the final samples.
    """
    timesteps: torch.Tensor
    x_t: torch.Tensor
    x0_pred: torch.Tensor


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


def predict_noise(model, x: torch.Tensor, t: int, model_kwargs: dict) -> torch.Tensor:
    """model(x, t) for one timestep t shared by the batch, checked to return a tensor of x's shape (the noise)."""
    eps = model(x, torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device), **model_kwargs)
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"model(x_t, t) must return the predicted noise, a tensor of x_t's shape {tuple(x.shape)}; "
                         f"got {got}")
    return eps


def make_generator(seed) -> torch.Generator | None:
    """A CPU generator from an int seed; a given CPU generator as is; None -> None (the global RNG, torch.manual_seed)."""
    if seed is None:
        return None
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ValueError(f"the generator must live on the CPU (noise is drawn there, then moved), got {seed.device}")
        return seed
    return torch.Generator().manual_seed(require_int(seed, "seed", minimum=0))


def _check_shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list, torch.Size)):
        raise TypeError(f"shape must be a tuple of ints such as (B, C, H, W), got {type(shape).__name__}")
    if len(shape) == 0 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape):
        raise ValueError(f"shape must be a non-empty tuple of positive ints such as (B, C, H, W), got {tuple(shape)}")
    return tuple(shape)


def sampling_plan(sampler: str, T: int, steps, eta) -> list[tuple[int, int]]:
    """The (t, t_prev) pairs of a run, from t = T - 1 down to t_prev = -1."""
    if sampler == "ddpm":
        if eta != 0:
            raise ValueError(f"eta applies to sampler='ddim' only (DDPM's noise is its posterior variance; DDIM with "
                             f"eta=1 reproduces it), got eta={eta}")
        if steps is not None and steps != T:
            raise ValueError(f"DDPM visits every timestep: steps must be None or T={T}, got {steps!r}; "
                             f"for fewer steps use sampler='ddim' (eta=1.0 keeps DDPM-like noise)")
        timesteps = list(range(T - 1, -1, -1))
    else:
        _check_eta(eta)
        timesteps = ddim_timesteps(T, T if steps is None else steps).tolist()
    return list(zip(timesteps, timesteps[1:] + [-1]))


def sample(model, schedule: NoiseSchedule, shape, sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0,
           seed: int | torch.Generator | None = None, clip_x0: bool = False, device="cpu", progress: bool = True,
           return_trajectory: bool = False, trajectory_every: int | None = None, x_T: torch.Tensor | None = None,
           model_kwargs: dict | None = None):
    """Draw samples of ``shape`` (B, ...) by running the reverse process from x_T ~ N(0, I) to t = -1.

    sampler="ddpm": ``ddpm_step`` at every t = T-1, ..., 0 (steps must be None or T; eta must be 0).
    sampler="ddim": ``ddim_step`` over ``ddim_timesteps(T, steps)`` then to -1 (steps: 1..T, default T),
    with noise scale ``eta`` in [0, 1] (0: deterministic given x_T; 1 with steps = T: DDPM again).

    model: ``model(x_t, t, **model_kwargs) -> eps``, t int64 (B,). It runs under torch.no_grad(); an
        nn.Module is put in eval mode and every submodule's mode restored afterwards. A lambda around a
        net is called as is, so for dropout nets pass the net itself with model_kwargs={"y": labels}.
    seed: int, CPU torch.Generator, or None (the global RNG). It draws x_T first, then every step's noise,
        all on the CPU, so the same seed gives bit-identical samples and x_T is shared by both samplers.
    x_T: optional starting noise of ``shape``; its dtype is kept (float32 otherwise).
    device: where x_t and the model's inputs live.
    progress: a tqdm.auto bar over the steps.
    return_trajectory: also return a ``Trajectory`` (CPU) recording every ``trajectory_every``-th step
        (default: about 50 frames) plus the final samples.
    Returns the samples (B, ...) on ``device``, or (samples, trajectory).
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x_t, t) -> eps, got {type(model).__name__}")
    require_schedule(schedule)
    require_choice(sampler, "sampler", SAMPLERS)
    shape = _check_shape(shape)
    pairs = sampling_plan(sampler, schedule.T, steps, eta)
    generator = make_generator(seed)
    device = torch.device(device)
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict of extra model arguments, got {type(model_kwargs).__name__}")
    if trajectory_every is None:
        trajectory_every = math.ceil(len(pairs) / TRAJECTORY_FRAMES)
    trajectory_every = require_int(trajectory_every, "trajectory_every", minimum=1)
    if x_T is None:
        x = torch.randn(shape, generator=generator).to(device)
    else:
        require_float_tensor(x_T, "x_T")
        if tuple(x_T.shape) != shape:
            raise ValueError(f"x_T must have the requested shape {shape}, got {tuple(x_T.shape)}")
        x = x_T.to(device)

    from tqdm.auto import tqdm      # imported here: only runs need it, not every import of the module
    frames_t, frames_x, frames_x0 = [], [], []
    with evaluation_mode(model):
        for i, (t, t_prev) in enumerate(tqdm(pairs, desc=f"{sampler.upper()} sampling", unit="step",
                                             disable=not progress)):
            eps = predict_noise(model, x, t, model_kwargs or {})
            if return_trajectory and i % trajectory_every == 0:
                frames_t.append(t)
                frames_x.append(x.cpu())
                frames_x0.append(estimate_x0(x, t, eps, schedule, clip_x0).cpu())
            if sampler == "ddpm":
                x = ddpm_step(x, t, eps, schedule, clip_x0=clip_x0, generator=generator)
            else:
                x = ddim_step(x, t, t_prev, eps, schedule, eta=eta, clip_x0=clip_x0, generator=generator)
    if not return_trajectory:
        return x
    frames_t.append(-1)
    frames_x.append(x.cpu())
    frames_x0.append(x.cpu())
    return x, Trajectory(torch.tensor(frames_t), torch.stack(frames_x), torch.stack(frames_x0))


def ddim_invert(model, x0: torch.Tensor, schedule: NoiseSchedule, steps: int, progress: bool = True,
                model_kwargs: dict | None = None, fixed_point_iterations: int = 0) -> torch.Tensor:
    """Deterministic DDIM inversion: the x_T that ``sample(..., sampler="ddim", steps=steps, eta=0, x_T=x_T)``
    decodes back to (nearly) x0. Visits ``ddim_timesteps(T, steps)`` in increasing order, from t = -1 (x0).

    Each ``ddim_invert_step`` t -> t_next needs eps at (x_{t_next}, t_next), the value the decoder will use,
    but x_{t_next} is not known yet: like diffusers' DDIMInverseScheduler, the step uses eps(x_t, t_next).
    This is where reconstructions drift, most where eps changes fast (near the data, with large steps).
    ``fixed_point_iterations`` > 0 then re-solves x_next = invert_step(x_t, eps(x_next, t_next)) that many
    times (one extra model call each), which converges to the exact inverse of the decoder's step.
    x0: (B, ...) float; runs under no_grad, in eval mode as ``sample``. Returns x_T of x0's shape, dtype, device.
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x_t, t) -> eps, got {type(model).__name__}")
    require_schedule(schedule)
    require_float_tensor(x0, "x0")
    require_int(fixed_point_iterations, "fixed_point_iterations", minimum=0)
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict of extra model arguments, got {type(model_kwargs).__name__}")
    timesteps = ddim_timesteps(schedule.T, steps).flip(0).tolist()

    from tqdm.auto import tqdm
    x = x0
    with evaluation_mode(model):
        for t, t_next in tqdm(list(zip([-1] + timesteps[:-1], timesteps)), desc="DDIM inversion", unit="step",
                              disable=not progress):
            x_next = ddim_invert_step(x, t, t_next, predict_noise(model, x, t_next, model_kwargs or {}), schedule)
            for _ in range(fixed_point_iterations):
                x_next = ddim_invert_step(x, t, t_next, predict_noise(model, x_next, t_next, model_kwargs or {}),
                                          schedule)
            x = x_next
    return x


# ---------------------------------------------------------------- moving between starting noises
def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation between two noise tensors seen as single vectors (Shoemake 1985):

        slerp(z0, z1; alpha) = sin((1 - alpha) theta) / sin(theta) z0 + sin(alpha theta) / sin(theta) z1,
        theta = arccos(<z0, z1> / (|z0| |z1|)).

    alpha = 0 gives z0 and alpha = 1 gives z1. Unlike a straight line, the path keeps the norm of
    Gaussian noise near sqrt(D), where the sampler expects x_T to be. z0, z1: the same shape.
    """
    require_float_tensor(z0, "z0", min_dims=0)
    require_float_tensor(z1, "z1", min_dims=0)
    require_same_shape(z0, z1, "z0", "z1")
    cos_theta = (z0 * z1).sum() / (z0.norm() * z1.norm())
    theta = torch.arccos(cos_theta.clamp(-1.0, 1.0))
    if torch.sin(theta) == 0:
        raise ValueError("slerp needs two noises that are not parallel (the angle between them is 0 or pi)")
    return (torch.sin((1 - alpha) * theta) * z0 + torch.sin(alpha * theta) * z1) / torch.sin(theta)
