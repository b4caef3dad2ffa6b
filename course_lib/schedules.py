"""Noise schedules: the betas of the forward process and every quantity derived from them.

Conventions (as in diffusers): timesteps are 0-based indices t in {0, ..., T-1}; index t is the
paper's step t+1. ``alpha_bars[t] = prod_{s <= t} (1 - betas[s])`` and ``alpha_bars_prev[0] = 1``.
All quantities are float64 on the CPU: the product of a thousand numbers just below one, and
``1 - alpha_bar`` near t = 0, lose digits in float32. ``gather`` hands them to the model's dtype
and device when they are used.
"""
from __future__ import annotations

import math

import torch

from ._validate import require_choice, require_int, require_tensor

SCHEDULE_NAMES = ("linear", "cosine")


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. (2020), sec. 4: betas evenly spaced from beta_start to beta_end, both ends included.

    Returns a float64 tensor of shape (T,).
    """
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021), eq. 17: beta_t = min(1 - f((t+1)/T) / f(t/T), max_beta) for 0-based t,
    f(u) = cos((u + s) / (1 + s) * pi / 2)^2.

    Clipping at max_beta avoids the singularity at the end of the schedule, where f(1) = 0.
    Returns a float64 tensor of shape (T,).
    """
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta)


class NoiseSchedule:
    """Every per-timestep quantity of the forward process, derived once from ``betas`` (float64, shape (T,)).

    Attributes (all float64 tensors of shape (T,)):
        betas, alphas = 1 - betas, alpha_bars = cumprod(alphas),
        alpha_bars_prev (alpha_bars shifted right, with alpha_bars_prev[0] = 1),
        posterior_variance = beta_tilde_t = (1 - alpha_bars_prev) / (1 - alpha_bars) * betas   (DDPM eq. 7),
        snr = alpha_bars / (1 - alpha_bars),
        sqrt_alpha_bars, sqrt_one_minus_alpha_bars, sqrt_posterior_variance, and the two posterior-mean coefficients
        posterior_mean_coef_x0 = sqrt(abar_{t-1}) beta_t / (1 - abar_t),
        posterior_mean_coef_xt = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)   (DDPM eq. 7).
    """

    def __init__(self, betas: torch.Tensor):
        require_tensor(betas, "betas")
        if betas.ndim != 1 or betas.numel() == 0:
            raise ValueError(f"betas must be a non-empty 1-D tensor of shape (T,), got shape {tuple(betas.shape)}")
        betas = betas.detach().to(device="cpu", dtype=torch.float64)
        if not torch.all((betas > 0) & (betas < 1)):
            raise ValueError(f"every beta must lie in (0, 1); got min {betas.min().item():.3g}, "
                             f"max {betas.max().item():.3g}")
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)
        self.alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars[:-1]])
        self.posterior_variance = (1.0 - self.alpha_bars_prev) / (1.0 - self.alpha_bars) * betas
        self.snr = self.alpha_bars / (1.0 - self.alpha_bars)
        # Coefficients used by the forward module, computed here in float64 because
        # 1 - alpha_bar near t = 0 is a difference of nearly equal numbers.
        self.sqrt_alpha_bars = self.alpha_bars.sqrt()
        self.sqrt_one_minus_alpha_bars = (1.0 - self.alpha_bars).sqrt()
        self.sqrt_posterior_variance = self.posterior_variance.sqrt()
        self.posterior_mean_coef_x0 = self.alpha_bars_prev.sqrt() * betas / (1.0 - self.alpha_bars)
        self.posterior_mean_coef_xt = self.alphas.sqrt() * (1.0 - self.alpha_bars_prev) / (1.0 - self.alpha_bars)

    @property
    def T(self) -> int:
        return self.betas.numel()

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        """``linear_betas(T, beta_start, beta_end)``, checked."""
        require_int(T, "T", minimum=1)
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(f"expected 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, "
                             f"beta_end={beta_end}")
        return cls(linear_betas(T, beta_start, beta_end))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """``cosine_betas(T, s, max_beta)``, checked."""
        require_int(T, "T", minimum=1)
        if not 0.0 <= s < 1.0:
            raise ValueError(f"expected 0 <= s < 1, got s={s}")
        if not 0.0 < max_beta < 1.0:
            raise ValueError(f"expected 0 < max_beta < 1, got max_beta={max_beta}")
        return cls(cosine_betas(T, s, max_beta))

    @classmethod
    def from_name(cls, name: str, T: int = 1000) -> "NoiseSchedule":
        """``"linear"`` or ``"cosine"`` with default parameters."""
        require_choice(name, "schedule name", SCHEDULE_NAMES)
        return cls.linear(T) if name == "linear" else cls.cosine(T)

    def __repr__(self) -> str:
        return (f"NoiseSchedule(T={self.T}, beta in [{self.betas[0].item():.3g}, {self.betas[-1].item():.3g}], "
                f"alpha_bar[T-1]={self.alpha_bars[-1].item():.3g})")


def timestep_tensor(t, like: torch.Tensor) -> torch.Tensor:
    """The one timestep helper: ``t`` (an int, or an integer tensor of 1 or B timesteps) as int64 (B,) on like's
    device, B = like.shape[0]; a single timestep is repeated for the whole batch. No range checks: the
    samplers' plans and the training loop only make valid timesteps."""
    return torch.as_tensor(t, dtype=torch.int64, device=like.device).reshape(-1).expand(like.shape[0])


def derived(values: torch.Tensor, key, make):
    """``make(values)`` computed once per schedule tensor and ``key``, then reused.

    Schedule tensors never change after construction, and casting a coefficient to the model's dtype on
    every call cost more than a sampler step's arithmetic (see benchmarks/step_overhead.py).
    """
    cache = values.__dict__.setdefault("_derived", {})
    if key not in cache:
        cache[key] = make(values)
    return cache[key]


def gather(values: torch.Tensor, t, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, ..., 1) to broadcast against ``like`` (B, ...), in like's dtype and device.

    ``values``: a float64 schedule tensor of shape (T,); ``t``: an int (giving shape (1, 1, ..., 1)) or an
    integer tensor of shape (B,).
    """
    column = derived(values, (like.dtype, like.device, like.ndim),
                     lambda v: v.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1))))
    return column[t:t + 1] if isinstance(t, int) else column[t.to(column.device)]
