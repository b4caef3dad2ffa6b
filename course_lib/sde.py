"""Continuous time: the forward SDE, its reverse, the probability-flow ODE, Langevin dynamics, and their solvers.

    VPSDE / VESDE          dx = f(x, τ) dτ + g(τ) dw on τ ∈ [0, 1], with closed-form marginals
    reverse_sde_drift      f − g² ∇log p_τ          (Anderson 1982; Song et al. 2021, eq. 6)
    pf_ode_drift           f − ½ g² ∇log p_τ        (Song et al. 2021, eq. 13: same marginals, no noise)
    euler_maruyama_step    one step of the reverse SDE
    euler_step, heun_step  one step of any ODE dy/ds = velocity(y, s)   (Karras et al. 2022, Alg. 1)
    langevin_step          x + δ ∇log p(x) + √(2δ) z  (Song & Ermon 2019, eq. 4); annealed_langevin (their Alg. 1)
    sigma_from_alpha_bar   the DDIM variables: x̄ = x / √ᾱ and σ = √((1 − ᾱ) / ᾱ), in which the
                           probability-flow ODE reads dx̄/dσ = ε(x, τ) and DDIM (η = 0) is its Euler method

Conventions: τ = 0 is data and τ = 1 noise; the discrete index t maps to τ = (t + 1) / T. A score or ε
function is called as ``fn(x, tau)`` with x (B, ...) and tau a Python float shared by the batch; samplers
visit a decreasing grid of times and plug into ``sampling.run_reverse`` through step functions
``step(x, t, t_next, generator) -> (x_next, x0_estimate)``. Formula functions do no input checks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .sampling import gaussian_like, plan_from_times, run_reverse
from .schedules import NoiseSchedule


# ---------------------------------------------------------------- the forward SDEs
@dataclass(frozen=True)
class VPSDE:
    """Variance preserving: dx = −½ β(τ) x dτ + √β(τ) dw (Song et al. 2021, eq. 11), the limit of DDPM.

    Its marginal is q_τ(x | x0) = N(√ᾱ(τ) x0, (1 − ᾱ(τ)) I) with ᾱ(τ) = exp(−∫₀^τ β(s) ds) (their eq. 29).
    kind="linear": β(τ) = β_min + τ (β_max − β_min), the limit of DDPM's linear betas times T
    (β_min = 1000 · 1e-4 = 0.1, β_max = 1000 · 0.02 = 20). kind="cosine": ᾱ(τ) = f(τ) / f(0),
    f(τ) = cos²(π/2 · (τ + s) / (1 + s)) (Nichol & Dhariwal 2021), so β(τ) = π / (1 + s) · tan(π/2 · (τ + s) / (1 + s)),
    which diverges at τ = 1 (ᾱ(1) = 0): samplers for the cosine SDE start just below τ = 1.
    """
    kind: str = "linear"
    beta_min: float = 0.1
    beta_max: float = 20.0
    s: float = 0.008

    def beta(self, tau: float) -> float:
        """β(τ) = −d log ᾱ / dτ."""
        if self.kind == "linear":
            return self.beta_min + tau * (self.beta_max - self.beta_min)
        return math.pi / (1 + self.s) * math.tan(math.pi / 2 * (tau + self.s) / (1 + self.s))

    def alpha_bar(self, tau: float) -> float:
        """ᾱ(τ) = exp(−∫₀^τ β(s) ds) in closed form."""
        if self.kind == "linear":
            return math.exp(-(self.beta_min * tau + 0.5 * (self.beta_max - self.beta_min) * tau ** 2))
        f = lambda u: math.cos(math.pi / 2 * (u + self.s) / (1 + self.s)) ** 2
        return f(tau) / f(0.0)

    def tau_from_alpha_bar(self, alpha_bar: float) -> float:
        """The inverse of ``alpha_bar``: the time at which ᾱ(τ) equals the given value in (0, 1]."""
        if self.kind == "linear":    # solve β_min τ + ½ (β_max − β_min) τ² = −log ᾱ for τ ≥ 0
            a, c = 0.5 * (self.beta_max - self.beta_min), -math.log(alpha_bar)
            return 2 * c / (self.beta_min + math.sqrt(self.beta_min ** 2 + 4 * a * c))
        f0 = math.cos(math.pi / 2 * self.s / (1 + self.s)) ** 2
        return (1 + self.s) * 2 / math.pi * math.acos(math.sqrt(alpha_bar * f0)) - self.s

    def mean_scale(self, tau: float) -> float:
        """The marginal's mean is mean_scale · x0 = √ᾱ(τ) x0."""
        return math.sqrt(self.alpha_bar(tau))

    def std(self, tau: float) -> float:
        """The marginal's standard deviation √(1 − ᾱ(τ)) (expm1 keeps its digits near τ = 0)."""
        if self.kind == "linear":
            return math.sqrt(-math.expm1(-(self.beta_min * tau + 0.5 * (self.beta_max - self.beta_min) * tau ** 2)))
        return math.sqrt(1 - self.alpha_bar(tau))

    def drift(self, x: torch.Tensor, tau: float) -> torch.Tensor:
        """f(x, τ) = −½ β(τ) x."""
        return -0.5 * self.beta(tau) * x

    def diffusion(self, tau: float) -> float:
        """g(τ) = √β(τ)."""
        return math.sqrt(self.beta(tau))


@dataclass(frozen=True)
class VESDE:
    """Variance exploding: dx = √(dσ²/dτ) dw with σ(τ) = σ_min (σ_max / σ_min)^τ (Song et al. 2021, eq. 9),
    the limit of the noise levels of Song & Ermon (2019). Marginal: q_τ(x | x0) = N(x0, σ(τ)² I)
    (plus the σ_min² the process starts with, which is ignored here as in the paper).
    """
    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def sigma(self, tau: float) -> float:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** tau

    def mean_scale(self, tau: float) -> float:
        return 1.0

    def std(self, tau: float) -> float:
        return self.sigma(tau)

    def drift(self, x: torch.Tensor, tau: float) -> torch.Tensor:
        """f = 0: the data are never shrunk, only buried in ever more noise."""
        return torch.zeros_like(x)

    def diffusion(self, tau: float) -> float:
        """g(τ) = √(dσ²/dτ) = σ(τ) √(2 log(σ_max / σ_min))."""
        return self.sigma(tau) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))


# ---------------------------------------------------------------- reverse SDE and probability-flow ODE
def reverse_sde_drift(sde, x: torch.Tensor, tau: float, score: torch.Tensor) -> torch.Tensor:
    """Drift of the reverse-time SDE dx = [f(x, τ) − g(τ)² ∇log p_τ(x)] dτ + g(τ) dw̄ (Anderson 1982; Song et al. 2021, eq. 6)."""
    return sde.drift(x, tau) - sde.diffusion(tau) ** 2 * score


def pf_ode_drift(sde, x: torch.Tensor, tau: float, score: torch.Tensor) -> torch.Tensor:
    """Velocity of the probability-flow ODE dx/dτ = f(x, τ) − ½ g(τ)² ∇log p_τ(x) (Song et al. 2021, eq. 13):
    its solutions have the SDE's marginals p_τ at every τ, and the map from noise to data is deterministic."""
    return sde.drift(x, tau) - 0.5 * sde.diffusion(tau) ** 2 * score


def euler_maruyama_step(sde, x: torch.Tensor, tau: float, tau_next: float, score: torch.Tensor,
                        noise: torch.Tensor) -> torch.Tensor:
    """One Euler–Maruyama step of the reverse SDE from τ down to τ_next < τ (Song et al. 2021, App. D):

        x_next = x − [f(x, τ) − g(τ)² s] Δ + g(τ) √Δ z,   Δ = τ − τ_next > 0,  s = ∇log p_τ(x),  z = noise.
    """
    step = tau - tau_next
    return x - reverse_sde_drift(sde, x, tau, score) * step + sde.diffusion(tau) * math.sqrt(step) * noise


def euler_step(y: torch.Tensor, s: float, s_next: float, velocity) -> torch.Tensor:
    """One Euler step of dy/ds = velocity(y, s): y + (s_next − s) · velocity(y, s). One evaluation."""
    return y + (s_next - s) * velocity(y, s)


def heun_step(y: torch.Tensor, s: float, s_next: float, velocity) -> torch.Tensor:
    """One Heun step (Karras et al. 2022, Alg. 1, lines 5–8): an Euler predictor, then the trapezoid rule

        d = velocity(y, s),  ỹ = y + (s_next − s) d,  y_next = y + (s_next − s) · ½ (d + velocity(ỹ, s_next)).

    Two evaluations; second order: halving every step divides the error by about four.
    """
    d = velocity(y, s)
    predicted = y + (s_next - s) * d
    return y + (s_next - s) * 0.5 * (d + velocity(predicted, s_next))


# ---------------------------------------------------------------- DDIM's variables
def sigma_from_alpha_bar(alpha_bar: float) -> float:
    """σ = √((1 − ᾱ) / ᾱ): the noise level of x̄ = x / √ᾱ = x0 + σ ε (Song et al. 2021 DDIM, eq. 14; Karras et al. 2022)."""
    return math.sqrt((1 - alpha_bar) / alpha_bar)


def alpha_bar_from_sigma(sigma: float) -> float:
    """ᾱ = 1 / (1 + σ²), the inverse of ``sigma_from_alpha_bar``."""
    return 1.0 / (1.0 + sigma ** 2)


def ddim_velocity(eps_fn, sde: VPSDE):
    """The probability-flow ODE of a VP-SDE in DDIM's variables: dx̄/dσ = ε̂(√ᾱ x̄, τ(σ)).

    Returns velocity(x̄, σ). Its Euler step x̄ + (σ_next − σ) ε̂ is exactly DDIM with η = 0; the change of
    variables x̄ = x / √ᾱ, σ = √((1 − ᾱ) / ᾱ) turns pf_ode_drift into this (tests/test_sde.py checks both).
    """
    def velocity(x_bar: torch.Tensor, sigma: float) -> torch.Tensor:
        alpha_bar = alpha_bar_from_sigma(sigma)
        return eps_fn(x_bar * math.sqrt(alpha_bar), sde.tau_from_alpha_bar(alpha_bar))
    return velocity


# ---------------------------------------------------------------- time grids and step functions
def uniform_times(steps: int, tau_max: float = 1.0, tau_min: float = 0.0) -> list[float]:
    """steps + 1 evenly spaced times from tau_max down to tau_min, both included."""
    return torch.linspace(tau_max, tau_min, steps + 1, dtype=torch.float64).tolist()


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> list[float]:
    """Karras et al. (2022, eq. 5): σ_i = (σ_max^(1/ρ) + i/(n−1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, i < n = steps,
    then σ_n = 0. ρ = 7 spends most steps at low noise, where the trajectories bend."""
    i = torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1)
    inner = sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return (inner ** rho).tolist() + [0.0]


def karras_times(sde: VPSDE, steps: int, sigma_min: float = 0.002, tau_max: float = 1.0, rho: float = 7.0) -> list[float]:
    """``karras_sigmas`` mapped to τ through ᾱ = 1 / (1 + σ²): a decreasing grid from tau_max to 0."""
    sigmas = karras_sigmas(steps, sigma_min, sigma_from_alpha_bar(sde.alpha_bar(tau_max)), rho)
    return [tau_max] + [sde.tau_from_alpha_bar(alpha_bar_from_sigma(s)) for s in sigmas[1:-1]] + [0.0]


def ode_step_fn(velocity, method: str = "heun"):
    """A run_reverse step that integrates dy/ds = velocity(y, s) from s to s_next by Euler or Heun.

    Heun's final step to s_next = 0 is an Euler step, as in Karras et al. (2022, Alg. 1): the velocity at
    zero noise is never needed (a network's ε̂ is undefined there). NFE: one per Euler step, two per Heun step.
    """
    def step(y, s, s_next, generator=None):
        if method == "euler" or s_next == 0:
            return euler_step(y, s, s_next, velocity), None
        return heun_step(y, s, s_next, velocity), None
    return step


def euler_maruyama_step_fn(sde, score_fn):
    """A run_reverse step for the reverse SDE: ``euler_maruyama_step`` with noise from the run's generator.
    The last step to τ = 0 adds no noise: its mean already is the sample (noise there is pure blur)."""
    def step(x, tau, tau_next, generator=None):
        noise = gaussian_like(x, generator) if tau_next > 0 else torch.zeros_like(x)
        return euler_maruyama_step(sde, x, tau, tau_next, score_fn(x, tau), noise), None
    return step


def respaced_schedule(sde: VPSDE, times: list[float]) -> NoiseSchedule:
    """The discrete NoiseSchedule whose ᾱ are the SDE's at a decreasing grid ending at τ = 0 (the last time,
    ᾱ = 1, is "clean data", index −1): index i is times[-2 - i]. DDPM and DDIM on it visit exactly the grid,
    so the discrete samplers run on the same noise levels as the continuous ones (improved-diffusion's respacing)."""
    alpha_bars = torch.tensor([sde.alpha_bar(tau) for tau in reversed(times[:-1])], dtype=torch.float64)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
    return NoiseSchedule(1 - alpha_bars / previous)


def integrate(step, x_start: torch.Tensor, times: list[float], generator: torch.Generator | None = None,
              model=None, progress: bool = False, trajectory: bool = False, desc: str = "solving"):
    """Run ``step`` over consecutive pairs of ``times`` with the one reverse loop; returns a SampleResult."""
    return run_reverse(model, x_start, plan_from_times(times), step, generator=generator, progress=progress,
                       trajectory=trajectory, desc=desc)


# ---------------------------------------------------------------- Langevin dynamics
def langevin_step(x: torch.Tensor, score: torch.Tensor, step_size: float, noise: torch.Tensor) -> torch.Tensor:
    """x + δ ∇log p(x) + √(2δ) z (Song & Ermon 2019, eq. 4): for small δ and many steps, x ~ p whatever the start."""
    return x + step_size * score + math.sqrt(2 * step_size) * noise


def langevin(score_fn, x: torch.Tensor, step_size: float, n_steps: int, generator: torch.Generator | None = None,
             record_every: int = 0):
    """``n_steps`` Langevin steps with score_fn(x) = ∇log p(x). Returns x, or (x, frames (F, B, ...)) when
    record_every > 0 (the start, then every record_every-th step)."""
    frames = [x]
    for i in range(n_steps):
        x = langevin_step(x, score_fn(x), step_size, gaussian_like(x, generator))
        if record_every and (i + 1) % record_every == 0:
            frames.append(x)
    return (x, torch.stack(frames)) if record_every else x


def annealed_langevin(score_fn, x: torch.Tensor, sigmas: list[float], steps_per_level: int, epsilon: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): for each noise level σ_i, from the largest down,
    ``steps_per_level`` Langevin steps on p_σi with score_fn(x, σ_i) and step size α_i = ε σ_i² / σ_L².
    Large σ first: their scores are reliable everywhere and carry samples across the empty space between modes."""
    for sigma in sigmas:
        step_size = epsilon * sigma ** 2 / sigmas[-1] ** 2
        for _ in range(steps_per_level):
            x = langevin_step(x, score_fn(x, sigma), step_size, gaussian_like(x, generator))
    return x
