"""Exercises of notebook 05, DDIM: the trailing timesteps, the deterministic update, sigma(eta), slerp."""
from __future__ import annotations

import torch

from .. import ddim
from ..schedules import NoiseSchedule
from ._framework import Case, Exercise, Mistake, register, seeded_randn



# ---------------------------------------------------------------- trailing timesteps
def _timestep_cases():
    return [Case((1000, 50), label="T=1000, 50 steps"),
            Case((1000, 7), label="T=1000, 7 steps (T not a multiple of steps)"),
            Case((100, 3), label="T=100, 3 steps"),
            Case((10, 10), label="T=10, every step")]


def _offsets(T, steps):
    return (torch.arange(steps, dtype=torch.float64) * T / steps).round().to(torch.int64)


register(Exercise(
    id="05.ddim_timesteps",
    title="the trailing DDIM timesteps",
    reference=ddim.ddim_timesteps,
    cases=_timestep_cases,
    mistakes=[
        Mistake("leading spacing", lambda T, steps: (torch.arange(steps) * (T // steps)).flip(0),
                "That is the 'leading' spacing: it starts at T - T/steps, not at T - 1, so the run begins "
                "from pure noise at a timestep that is not that noisy, and it spends its last call on t = 0. "
                "Trailing spacing counts back from T - 1: t_i = T - 1 - round(i * T / steps)."),
        Mistake("linspace", lambda T, steps: torch.linspace(T - 1, 0, steps).round().to(torch.int64),
                "linspace(T - 1, 0, steps) spends a model call at t = 0, where the image is already clean, "
                "and its stride is (T - 1) / (steps - 1), not T / steps. Use t_i = T - 1 - round(i * T / steps)."),
        Mistake("increasing", lambda T, steps: (T - 1 - _offsets(T, steps)).flip(0),
                "Return the timesteps in the order the sampler visits them: decreasing, from T - 1 (noise) "
                "down to the cleanest one."),
        Mistake("1-based", lambda T, steps: T - _offsets(T, steps),
                "Timesteps are 0-based in this course: the noisiest one is T - 1, so t_i = T - 1 - round(i * T / steps)."),
    ],
    hint="offsets = (torch.arange(steps, dtype=torch.float64) * T / steps).round().long(); return T - 1 - offsets "
         "(int64, decreasing, starting at T - 1).",
))


# ---------------------------------------------------------------- the deterministic DDIM step
def ddim_step_eta0(x_t, t, t_prev, eps, schedule):
    """x_{t_prev} = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps, x0_hat from x_t and eps; abar_{-1} = 1."""
    return ddim.ddim_step(x_t, t, t_prev, eps, schedule)


def _step_cases():
    cosine, coarse = NoiseSchedule.cosine(1000), NoiseSchedule.linear(T=50, beta_start=0.01, beta_end=0.3)
    return [Case((seeded_randn(4, 1, 8, 8, seed=1), 500, 400, seeded_randn(4, 1, 8, 8, seed=2), cosine),
                 label="cosine T=1000, t=500 -> 400"),
            Case((seeded_randn(3, 2, seed=3), 40, 20, seeded_randn(3, 2, seed=4), coarse), label="linear T=50, t=40 -> 20"),
            Case((seeded_randn(5, 1, 4, 4, seed=5), 19, -1, seeded_randn(5, 1, 4, 4, seed=6), cosine),
                 label="t=19 -> -1 (the last step, to clean data)")]


def _step_with(abar="alpha_bars", root=True, direction=True, prev="given"):
    def wrong(x_t, t, t_prev, eps, schedule):
        table = getattr(schedule, abar)
        abar_t = table[t]
        if prev == "one back":
            abar_prev = schedule.alpha_bars_prev[t]
        elif prev == "python index":
            abar_prev = table[t_prev]
        else:
            abar_prev = table[t_prev] if t_prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
        if root:
            x0_hat = (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
            out = abar_prev.sqrt() * x0_hat
            return out + (1 - abar_prev).sqrt() * eps if direction else out
        x0_hat = (x_t - (1 - abar_t) * eps) / abar_t
        return abar_prev * x0_hat + (1 - abar_prev) * eps
    return wrong


register(Exercise(
    id="05.ddim_step",
    title="one deterministic DDIM step (eta = 0)",
    reference=ddim_step_eta0,
    cases=_step_cases,
    mistakes=[
        Mistake("alpha for alpha_bar", _step_with(abar="alphas"),
                "Use the cumulative products schedule.alpha_bars (abar_t), not the per-step schedule.alphas: "
                "x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."),
        Mistake("no square roots", _step_with(root=False),
                "The coefficients are square roots: x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), "
                "then sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps."),
        Mistake("no direction term", _step_with(direction=False),
                "You kept only the predicted x0. Add the 'direction pointing to x_t', sqrt(1 - abar_prev) * eps: "
                "at t_prev the image still holds that much of the same noise."),
        Mistake("one step back", _step_with(prev="one back"),
                "The step jumps to t_prev, which may be many timesteps earlier: use abar at t_prev, not "
                "alpha_bars_prev[t] (that is abar_{t-1}, DDPM's single step)."),
        Mistake("alpha_bars[-1]", _step_with(prev="python index"),
                "t_prev = -1 means clean data, abar_prev = 1. In Python alpha_bars[-1] is the *last* entry, "
                "the noisiest timestep: treat t_prev < 0 separately."),
    ],
    hint="abar_t = schedule.alpha_bars[t]; abar_prev = alpha_bars[t_prev] if t_prev >= 0 else 1; "
         "x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); return sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps.",
    rtol=1e-4, atol=1e-5,
))


# ---------------------------------------------------------------- sigma(eta)
def ddim_sigma(alpha_bar_t, alpha_bar_prev, eta):
    """sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev) (Song et al. eq. 16)."""
    return eta * ((1 - alpha_bar_prev) / (1 - alpha_bar_t)).sqrt() * (1 - alpha_bar_t / alpha_bar_prev).sqrt()


def _sigma_cases():
    abar = NoiseSchedule.cosine(1000).alpha_bars
    t, t_prev = torch.tensor([999, 500, 100, 20]), torch.tensor([979, 400, 80, 0])
    linear = NoiseSchedule.linear(50, beta_start=0.01, beta_end=0.3)
    return [Case((abar[t], abar[t_prev], 0.5), label="cosine T=1000, eta=0.5"),
            Case((linear.alpha_bars[1:], linear.alpha_bars[:-1], 1.0), label="linear T=50, t_prev = t - 1, eta=1"),
            Case((abar[t], torch.ones(4, dtype=torch.float64), 0.3), label="last step (abar_prev = 1), eta=0.3")]


register(Exercise(
    id="05.ddim_sigma",
    title="DDIM's noise scale sigma(eta)",
    reference=ddim_sigma,
    cases=_sigma_cases,
    mistakes=[
        Mistake("variance, not std", lambda a, ap, eta: eta * ((1 - ap) / (1 - a)) * (1 - a / ap),
                "sigma is a standard deviation: take the square roots, "
                "sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev). Without them you have "
                "(a multiple of) the variance."),
        Mistake("ratio upside down", lambda a, ap, eta: eta * ((1 - a) / (1 - ap)).sqrt() * (1 - a / ap).sqrt(),
                "The first factor is (1 - abar_prev) / (1 - abar_t), the ratio of the noise variances at the "
                "target and at the start, which is below 1. It is what makes eta = 1 equal DDPM's beta_tilde."),
        Mistake("eta squared", lambda a, ap, eta: eta ** 2 * ((1 - ap) / (1 - a)).sqrt() * (1 - a / ap).sqrt(),
                "eta multiplies sigma itself (eta^2 multiplies the variance sigma^2)."),
    ],
    hint="return eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev) (use tensor .sqrt()).",
    rtol=1e-6, atol=1e-9,
))


# ---------------------------------------------------------------- slerp
def _slerp_cases():
    return [Case((seeded_randn(1, 8, 8, seed=1), seeded_randn(1, 8, 8, seed=2), 0.3), label="two 8x8 noise images, alpha=0.3"),
            Case((seeded_randn(16, seed=3), seeded_randn(16, seed=4), 0.75), label="16-vectors, alpha=0.75"),
            Case((seeded_randn(2, 3, 3, seed=5), seeded_randn(2, 3, 3, seed=6), 0.5), label="alpha=0.5")]


def _theta(z0, z1):
    return torch.arccos((z0 * z1).sum() / (z0.norm() * z1.norm()))


register(Exercise(
    id="05.slerp",
    title="spherical interpolation between two noises",
    reference=ddim.slerp,
    cases=_slerp_cases,
    mistakes=[
        Mistake("lerp", lambda z0, z1, alpha: (1 - alpha) * z0 + alpha * z1,
                "That is a straight line (lerp). Halfway between two independent Gaussian noises its norm "
                "shrinks by about 1/sqrt(2): the model sees noise that is too weak. Use the angle theta "
                "between z0 and z1 and the weights sin((1 - alpha) theta) / sin(theta), sin(alpha theta) / sin(theta)."),
        Mistake("weights swapped", lambda z0, z1, alpha:
                (torch.sin(alpha * _theta(z0, z1)) * z0 + torch.sin((1 - alpha) * _theta(z0, z1)) * z1)
                / torch.sin(_theta(z0, z1)),
                "alpha = 0 must give z0 and alpha = 1 give z1: z0's weight is sin((1 - alpha) theta) / sin(theta)."),
        Mistake("no division by sin(theta)", lambda z0, z1, alpha:
                torch.sin((1 - alpha) * _theta(z0, z1)) * z0 + torch.sin(alpha * _theta(z0, z1)) * z1,
                "Divide by sin(theta): without it alpha = 0 gives sin(theta) z0 instead of z0."),
        Mistake("rescaled lerp", lambda z0, z1, alpha: ((1 - alpha) * z0 + alpha * z1) * z0.norm()
                / ((1 - alpha) * z0 + alpha * z1).norm(),
                "Rescaling the straight line to z0's norm fixes the length but not the direction: the weights must "
                "be sin((1 - alpha) theta) / sin(theta) and sin(alpha theta) / sin(theta), theta the angle between "
                "z0 and z1."),
    ],
    hint="cos_theta = (z0 * z1).sum() / (z0.norm() * z1.norm()); theta = torch.arccos(cos_theta); return "
         "(sin((1 - alpha) theta) z0 + sin(alpha theta) z1) / sin(theta).",
    rtol=1e-4, atol=1e-5,
))
