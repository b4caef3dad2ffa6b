"""The forward process q and the conversions between what a network may predict.

    q_sample        x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps                      (DDPM eq. 4)
    q_posterior     mean and variance of q(x_{t-1} | x_t, x0)                           (DDPM eqs. 6-7)
    A_from_B        one conversion per pair, all from x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps:
                    x0_from_eps, eps_from_x0, v_from_x0_eps, x0_from_v, eps_from_v, score_from_eps, eps_from_score
    model_eps       call a network and turn its output (eps, x0 or v) into the noise prediction samplers use

Shapes: data ``x0``, noisy ``x_t``, noise ``eps`` and targets are (B, ...) float tensors (images are
(B, C, H, W) in [-1, 1]); ``t`` is an int or an int64 tensor of shape (B,) with 0-based timesteps.
Every coefficient comes from the float64 ``NoiseSchedule`` through ``gather``, which casts it to the
tensor's dtype and device. These are formula functions: they trust their inputs (see ``_validate``).
"""
from __future__ import annotations

import torch

from .schedules import NoiseSchedule, gather, timestep_tensor

PARAMETERIZATIONS = ("eps", "x0", "v")


def q_sample(x0: torch.Tensor, t, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Sample q(x_t | x_0) in closed form (DDPM eq. 4): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.

    x0, noise: (B, ...); t: int or (B,). Returns x_t of shape (B, ...).
    """
    return gather(schedule.sqrt_alpha_bars, t, x0) * x0 + gather(schedule.sqrt_one_minus_alpha_bars, t, x0) * noise


def q_posterior(x0: torch.Tensor, x_t: torch.Tensor, t, schedule: NoiseSchedule):
    """Mean and variance of q(x_{t-1} | x_t, x_0) (DDPM eqs. 6-7):

        mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
        variance = beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t

    x0, x_t: (B, ...); t: int or (B,). Returns mean (B, ...) and variance (B, 1, ..., 1), which broadcasts
    against x_t. At t = 0, abar_{-1} = 1: the mean is x0 and the variance 0.
    """
    mean = gather(schedule.posterior_mean_coef_x0, t, x0) * x0 + gather(schedule.posterior_mean_coef_xt, t, x0) * x_t
    return mean, gather(schedule.posterior_variance, t, x0)


def x0_from_eps(x_t: torch.Tensor, t, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """DDPM eq. 4 solved for x0: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t). x_t, eps: (B, ...); t: int or (B,)."""
    return (x_t - gather(schedule.sqrt_one_minus_alpha_bars, t, x_t) * eps) / gather(schedule.sqrt_alpha_bars, t, x_t)


def eps_from_x0(x_t: torch.Tensor, t, x0: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """DDPM eq. 4 solved for the noise: eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t). x_t, x0: (B, ...); t: int or (B,)."""
    return (x_t - gather(schedule.sqrt_alpha_bars, t, x_t) * x0) / gather(schedule.sqrt_one_minus_alpha_bars, t, x_t)


def v_from_x0_eps(x0: torch.Tensor, t, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """The velocity (Salimans & Ho 2022, sec. 4): v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0. x0, eps: (B, ...)."""
    return gather(schedule.sqrt_alpha_bars, t, x0) * eps - gather(schedule.sqrt_one_minus_alpha_bars, t, x0) * x0


def x0_from_v(x_t: torch.Tensor, t, v: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v: the rotation that defines v, undone. x_t, v: (B, ...)."""
    return gather(schedule.sqrt_alpha_bars, t, x_t) * x_t - gather(schedule.sqrt_one_minus_alpha_bars, t, x_t) * v


def eps_from_v(x_t: torch.Tensor, t, v: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v. x_t, v: (B, ...)."""
    return gather(schedule.sqrt_one_minus_alpha_bars, t, x_t) * x_t + gather(schedule.sqrt_alpha_bars, t, x_t) * v


def score_from_eps(eps: torch.Tensor, t, schedule: NoiseSchedule) -> torch.Tensor:
    """Score of q(x_t) from the optimal noise prediction (Song et al. 2021, eq. 3 for the VP SDE):
    grad log q(x_t) = -eps / sqrt(1 - abar_t). eps: (B, ...)."""
    return -eps / gather(schedule.sqrt_one_minus_alpha_bars, t, eps)


def eps_from_score(score: torch.Tensor, t, schedule: NoiseSchedule) -> torch.Tensor:
    """eps = -sqrt(1 - abar_t) score, the inverse of ``score_from_eps``. score: (B, ...)."""
    return -gather(schedule.sqrt_one_minus_alpha_bars, t, score) * score


def model_eps(model, x_t: torch.Tensor, t, schedule: NoiseSchedule | None = None, parameterization: str = "eps",
              **model_kwargs) -> torch.Tensor:
    """The noise prediction of a network trained to output eps, x0 or v (``parameterization``).

    Calls ``model(x_t, timestep_tensor(t, x_t), **model_kwargs)`` (t as int64 (B,) on x_t's device) and converts
    its output: eps as is, x0 by ``eps_from_x0``, v by ``eps_from_v`` (these two need the schedule).
    x_t: (B, ...); t: int or (B,). Returns eps (B, ...).
    """
    output = model(x_t, timestep_tensor(t, x_t), **model_kwargs)
    if not isinstance(output, torch.Tensor) or output.shape != x_t.shape:
        # The model is the user's code: its output is where a wrong network shows up first.
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"model(x_t, t) must return a tensor of x_t's shape {tuple(x_t.shape)}; got {got}")
    if parameterization == "eps":
        return output
    if parameterization == "x0":
        return eps_from_x0(x_t, t, output, schedule)
    return eps_from_v(x_t, t, output, schedule)


def q_sample_stats(x0: torch.Tensor, schedule: NoiseSchedule):
    """Pixel mean and standard deviation of one noised image x_t ~ q(x_t | x0), at every step, as float64 (T,).

    With m0, v0 the mean and variance (dividing by N) over all of x0's elements:
    mean_t = sqrt(abar_t) m0 and std_t = sqrt(abar_t v0 + 1 - abar_t), the values an image with many
    pixels has (the noise's own sample mean and its correlation with x0 vanish as N grows).
    """
    x0 = x0.detach().to(torch.float64)
    mean, variance = x0.mean(), x0.var(correction=0)
    return schedule.sqrt_alpha_bars * mean, (schedule.alpha_bars * variance + 1 - schedule.alpha_bars).sqrt()
