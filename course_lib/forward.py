"""The forward process q and the conversions between what a network may predict.

Shapes: data ``x0``, noisy ``x_t``, noise ``eps`` and targets are (B, ...) float tensors (images are
(B, C, H, W) in [-1, 1]); ``t`` is an int or an int64 tensor of shape (B,) with 0-based timesteps.
Every coefficient comes from the float64 ``NoiseSchedule`` through ``gather``, which casts it to
the tensor's dtype and device.
"""
from __future__ import annotations

import torch

from ._validate import require_float_tensor, require_same_shape
from .schedules import NoiseSchedule, gather, require_schedule


def _check(schedule, **tensors) -> torch.Tensor:
    require_schedule(schedule)
    (first_name, first), *rest = tensors.items()
    require_float_tensor(first, first_name)
    for name, tensor in rest:
        require_float_tensor(tensor, name)
        require_same_shape(first, tensor, first_name, name)
    return first


def q_sample(x0: torch.Tensor, t, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Sample q(x_t | x_0) in closed form (DDPM eq. 4): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.

    x0, noise: (B, ...); t: int or (B,). Returns x_t of shape (B, ...).
    """
    _check(schedule, x0=x0, noise=noise)
    return (gather(schedule.sqrt_alpha_bars, t, x0) * x0
            + gather(schedule.sqrt_one_minus_alpha_bars, t, x0) * noise)


def q_posterior(x0: torch.Tensor, x_t: torch.Tensor, t, schedule: NoiseSchedule):
    """Mean and variance of q(x_{t-1} | x_t, x_0) (DDPM eqs. 6-7).

    mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) * x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) * x_t
    variance = beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t
    x0, x_t: (B, ...). Returns mean (B, ...) and variance (B, 1, ..., 1), which broadcasts against x_t.
    At t = 0, abar_{-1} = 1: the mean is x0 and the variance 0.
    """
    _check(schedule, x0=x0, x_t=x_t)
    mean = gather(schedule.posterior_mean_coef_x0, t, x0) * x0 + gather(schedule.posterior_mean_coef_xt, t, x0) * x_t
    return mean, gather(schedule.posterior_variance, t, x0)


def predict_x0(x_t: torch.Tensor, t, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Invert q_sample for x0 given the noise: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t). Shapes (B, ...)."""
    _check(schedule, x_t=x_t, eps=eps)
    return (x_t - gather(schedule.sqrt_one_minus_alpha_bars, t, x_t) * eps) / gather(schedule.sqrt_alpha_bars, t, x_t)


def predict_eps(x_t: torch.Tensor, t, x0: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Invert q_sample for the noise given x0: eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t). Shapes (B, ...)."""
    _check(schedule, x_t=x_t, x0=x0)
    return (x_t - gather(schedule.sqrt_alpha_bars, t, x_t) * x0) / gather(schedule.sqrt_one_minus_alpha_bars, t, x_t)


def v_target(x0: torch.Tensor, eps: torch.Tensor, t, schedule: NoiseSchedule) -> torch.Tensor:
    """Velocity (Salimans & Ho 2022): v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0. Shapes (B, ...)."""
    _check(schedule, x0=x0, eps=eps)
    return gather(schedule.sqrt_alpha_bars, t, x0) * eps - gather(schedule.sqrt_one_minus_alpha_bars, t, x0) * x0


def x0_from_v(x_t: torch.Tensor, t, v: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v: the rotation that defines v, undone. Shapes (B, ...)."""
    _check(schedule, x_t=x_t, v=v)
    return gather(schedule.sqrt_alpha_bars, t, x_t) * x_t - gather(schedule.sqrt_one_minus_alpha_bars, t, x_t) * v


def eps_from_v(x_t: torch.Tensor, t, v: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v. Shapes (B, ...)."""
    _check(schedule, x_t=x_t, v=v)
    return gather(schedule.sqrt_one_minus_alpha_bars, t, x_t) * x_t + gather(schedule.sqrt_alpha_bars, t, x_t) * v


def score_from_eps(eps: torch.Tensor, t, schedule: NoiseSchedule) -> torch.Tensor:
    """Score of q(x_t) from the optimal noise prediction: grad log q(x_t) = -eps / sqrt(1 - abar_t). Shapes (B, ...)."""
    _check(schedule, eps=eps)
    return -eps / gather(schedule.sqrt_one_minus_alpha_bars, t, eps)


def eps_from_score(score: torch.Tensor, t, schedule: NoiseSchedule) -> torch.Tensor:
    """eps = -sqrt(1 - abar_t) * score, the inverse of ``score_from_eps``. Shapes (B, ...)."""
    _check(schedule, score=score)
    return -gather(schedule.sqrt_one_minus_alpha_bars, t, score) * score
