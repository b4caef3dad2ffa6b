"""Exercises of notebook 01, the forward process: schedules, q_sample, the posterior, conversions."""
from __future__ import annotations

import math

import torch

from .. import forward, schedules
from ..schedules import NoiseSchedule
from ._framework import Case, Exercise, Mistake, register, seeded_randn



def _timesteps(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def _coefficient(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """How a student picks a schedule value per batch item: index, cast, reshape to broadcast."""
    return values[t].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


# A schedule with large betas, so that mistakes such as a missing square root show clearly.
def _coarse_schedule() -> NoiseSchedule:
    return NoiseSchedule.linear(T=50, beta_start=0.01, beta_end=0.3)


# ---------------------------------------------------------------- linear schedule
register(Exercise(
    id="01.linear_betas",
    title="linear beta schedule",
    reference=schedules.linear_betas,
    cases=lambda: [Case((10, 1e-4, 0.02), label="T=10"), Case((1000, 1e-4, 0.02), label="T=1000"),
                   Case((6, 0.1, 0.35), label="T=6, beta from 0.1 to 0.35")],
    mistakes=[
        Mistake("float32", lambda T, b0, b1: torch.linspace(b0, b1, T),
                "Schedules are computed in float64 (products of many numbers near 1 lose digits in "
                "float32): pass dtype=torch.float64."),
        Mistake("misses the last value", lambda T, b0, b1: b0 + (b1 - b0) * torch.arange(T, dtype=torch.float64) / T,
                "The last beta must equal beta_end: torch.linspace(beta_start, beta_end, T) includes both "
                "ends, while arange(T) / T stops one step short."),
        Mistake("starts one step late", lambda T, b0, b1: torch.linspace(b0, b1, T + 1, dtype=torch.float64)[1:],
                "Index 0 is the first step, so betas[0] must equal beta_start."),
    ],
    hint="Return T values evenly spaced from beta_start to beta_end, both included, as float64.",
))


# ---------------------------------------------------------------- cumulative product
def _some_betas() -> torch.Tensor:
    return schedules.linear_betas(20, 0.01, 0.4)


register(Exercise(
    id="01.alpha_bars",
    title="alpha_bar, the cumulative product",
    reference=lambda betas: torch.cumprod(1 - betas, dim=0),
    cases=lambda: [Case((_some_betas(),), label="20 linear betas"),
                   Case((schedules.cosine_betas(100),), label="100 cosine betas"),
                   Case((torch.tensor([0.5], dtype=torch.float64),), label="a single beta of 0.5")],
    mistakes=[
        Mistake("product of betas", lambda betas: torch.cumprod(betas, dim=0),
                "alpha_bar is the running product of the alphas, alpha = 1 - beta, not of the betas."),
        Mistake("alpha, not alpha_bar", lambda betas: 1 - betas,
                "That is alpha_t itself. alpha_bar_t multiplies every alpha up to and including t: "
                "torch.cumprod(1 - betas, dim=0)."),
        Mistake("shifted by one", lambda betas: torch.cat([torch.ones(1, dtype=betas.dtype),
                                                           torch.cumprod(1 - betas, dim=0)[:-1]]),
                "That is alpha_bars_prev. With 0-based t, alpha_bar[0] already includes the first step: "
                "alpha_bar[0] = 1 - beta[0]."),
        Mistake("a sum, not a product", lambda betas: 1 - torch.cumsum(betas, dim=0),
                "Keeping a fraction 1 - beta at every step multiplies; it does not subtract: use torch.cumprod."),
    ],
    hint="alpha_bar_t = prod_{s <= t} (1 - beta_s): torch.cumprod over the alphas.",
))


# ---------------------------------------------------------------- cosine schedule
def _cosine_variant(T, s=0.008, max_beta=0.999, square=True, offset=True, normalise=True, clip=True):
    """The cosine schedule with one ingredient switched off: each switch is a typical mistake."""
    u = torch.arange(T + 1, dtype=torch.float64) / T
    shift = s if offset else 0.0
    f = torch.cos((u + shift) / (1 + shift) * math.pi / 2) ** (2 if square else 1)
    previous = f[:-1] if normalise else torch.cat([torch.ones(1, dtype=torch.float64), f[1:-1]])
    betas = 1 - f[1:] / previous
    return torch.clamp(betas, max=max_beta) if clip else betas


register(Exercise(
    id="01.cosine_betas",
    title="cosine beta schedule",
    reference=schedules.cosine_betas,
    cases=lambda: [Case((10,), label="T=10"), Case((1000,), label="T=1000"),
                   Case((40,), {"s": 0.02, "max_beta": 0.5}, label="T=40, s=0.02, max_beta=0.5")],
    mistakes=[
        Mistake("no clipping", lambda T, s=0.008, max_beta=0.999: _cosine_variant(T, s, max_beta, clip=False),
                "Clip every beta at max_beta (torch.clamp(betas, max=max_beta)): f(1) = 0 makes the last beta 1, "
                "which would erase the signal in a single step."),
        Mistake("cos, not cos squared", lambda T, s=0.008, max_beta=0.999: _cosine_variant(T, s, max_beta, square=False),
                "f(u) = cos(pi/2 * (u + s) / (1 + s)) ** 2: the cosine is squared."),
        Mistake("no offset s", lambda T, s=0.008, max_beta=0.999: _cosine_variant(T, s, max_beta, offset=False),
                "Keep the small offset s inside the cosine, (u + s) / (1 + s): without it the first betas are "
                "nearly zero and the first steps add almost no noise."),
        Mistake("alpha_bar not normalised", lambda T, s=0.008, max_beta=0.999: _cosine_variant(T, s, max_beta, normalise=False),
                "alpha_bar(u) = f(u) / f(0), so beta_t = 1 - f((t+1)/T) / f(t/T); for t = 0 divide by f(0), not by 1."),
    ],
    hint="With u = arange(T + 1) / T and f(u) = cos^2(pi/2 (u + s)/(1 + s)): beta_t = min(1 - f[t+1]/f[t], max_beta).",
))


# ---------------------------------------------------------------- q_sample
def _q_sample_cases():
    linear, cosine = NoiseSchedule.linear(1000), NoiseSchedule.cosine(50)
    return [
        Case((seeded_randn(4, 1, 8, 8, seed=1), _timesteps([0, 10, 500, 999]), seeded_randn(4, 1, 8, 8, seed=2), linear),
             label="4 digits-sized images, linear T=1000, t=[0, 10, 500, 999]"),
        Case((seeded_randn(3, 3, 5, 5, seed=3), _timesteps([49, 1, 20]), seeded_randn(3, 3, 5, 5, seed=4), cosine),
             label="3 RGB images, cosine T=50"),
        Case((seeded_randn(5, 2, seed=5), _timesteps([0, 1, 2, 3, 4]), seeded_randn(5, 2, seed=6), _coarse_schedule()),
             label="5 points in 2-D, t=0..4"),
    ]


def _q_sample_with(values_of, root=True, cast=True):
    def wrong(x0, t, noise, schedule):
        values = values_of(schedule)[t]
        a = (values.to(x0.dtype) if cast else values).reshape(-1, *([1] * (x0.ndim - 1)))
        return (a.sqrt() * x0 + (1 - a).sqrt() * noise) if root else (a * x0 + (1 - a) * noise)
    return wrong


register(Exercise(
    id="01.q_sample",
    title="sample q(x_t | x_0) in closed form",
    reference=forward.q_sample,
    cases=_q_sample_cases,
    mistakes=[
        Mistake("alpha for alpha_bar", _q_sample_with(lambda s: s.alphas),
                "Use the cumulative product alpha_bars[t], not alphas[t]: x_t is reached from x_0 through all "
                "steps up to t."),
        Mistake("no square roots", _q_sample_with(lambda s: s.alpha_bars, root=False),
                "alpha_bar and 1 - alpha_bar are variances; scale x0 and the noise by their square roots."),
        Mistake("one step behind", _q_sample_with(lambda s: s.alpha_bars_prev),
                "Timesteps are 0-based: alpha_bars[t] already includes step t, alpha_bars_prev[t] is one step behind."),
        Mistake("float64 result", _q_sample_with(lambda s: s.alpha_bars, cast=False),
                "Schedule tensors are float64; cast the coefficient to x0's dtype (.to(x0.dtype)) so that x_t "
                "keeps the dtype of the data."),
    ],
    hint="Pick alpha_bar for each batch item with alpha_bars[t], cast it to x0's dtype, reshape it to "
         "(B, 1, ..., 1) so it broadcasts, then x_t = sqrt(alpha_bar) * x0 + sqrt(1 - alpha_bar) * noise.",
))


# ---------------------------------------------------------------- posterior
def _posterior_cases():
    coarse = _coarse_schedule()
    x0, noise = seeded_randn(4, 1, 6, 6, seed=7), seeded_randn(4, 1, 6, 6, seed=8)
    t = _timesteps([1, 5, 20, 49])
    x_t = forward.q_sample(x0, t, noise, coarse)
    pts, pts_t = seeded_randn(3, 2, seed=9), seeded_randn(3, 2, seed=10)
    return [Case((x0, x_t, t, coarse), label="4 images, t=[1, 5, 20, 49]"),
            Case((pts, pts_t, _timesteps([0, 2, 30]), coarse), label="3 points in 2-D, t=[0, 2, 30] (t=0 included)"),
            Case((x0[:2], x_t[:2], _timesteps([300, 999]), NoiseSchedule.linear(1000)), label="linear T=1000")]


def _posterior_variant(prev_of=lambda s: s.alpha_bars_prev, root_alpha=True, variance_of=None, swap=False):
    def wrong(x0, x_t, t, schedule):
        a_bar = _coefficient(schedule.alpha_bars, t, x0)
        a_bar_prev = _coefficient(prev_of(schedule), t, x0)
        beta = _coefficient(schedule.betas, t, x0)
        alpha = 1 - beta
        coef_x0 = a_bar_prev.sqrt() * beta / (1 - a_bar)
        coef_xt = (alpha.sqrt() if root_alpha else alpha) * (1 - a_bar_prev) / (1 - a_bar)
        if swap:
            coef_x0, coef_xt = coef_xt, coef_x0
        variance = (_coefficient(variance_of(schedule), t, x0) if variance_of
                    else (1 - a_bar_prev) / (1 - a_bar) * beta)
        return coef_x0 * x0 + coef_xt * x_t, variance
    return wrong


register(Exercise(
    id="01.q_posterior",
    title="posterior q(x_{t-1} | x_t, x_0)",
    reference=forward.q_posterior,
    cases=_posterior_cases,
    broadcast_ok=True,
    mistakes=[
        Mistake("alpha_bar for alpha_bar_prev", _posterior_variant(prev_of=lambda s: s.alpha_bars),
                "The posterior needs alpha_bar one step back: use alpha_bars_prev[t] for alpha_bar_{t-1}."),
        Mistake("variance beta_t", _posterior_variant(variance_of=lambda s: s.betas),
                "The posterior variance is beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t, "
                "smaller than beta_t."),
        Mistake("coefficients swapped", _posterior_variant(swap=True),
                "x0 is weighted by sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t); x_t by "
                "sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)."),
        Mistake("alpha without square root", _posterior_variant(root_alpha=False),
                "The x_t coefficient has sqrt(alpha_t), not alpha_t."),
    ],
    hint="mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) * x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) * x_t; "
         "variance = (1 - abar_{t-1}) / (1 - abar_t) * beta_t, shaped (B, 1, ..., 1).",
))


# ---------------------------------------------------------------- conversions
def _conversion_cases(first_seed: int):
    """(a, t, b, schedule) triples: images and points at early, middle and late t."""
    return [
        Case((seeded_randn(4, 1, 8, 8, seed=first_seed), _timesteps([0, 3, 25, 49]), seeded_randn(4, 1, 8, 8, seed=first_seed + 1),
              _coarse_schedule()), label="4 images, t=[0, 3, 25, 49]"),
        Case((seeded_randn(3, 2, seed=first_seed + 2), _timesteps([10, 500, 990]), seeded_randn(3, 2, seed=first_seed + 3),
              NoiseSchedule.linear(1000)), label="3 points, linear T=1000"),
    ]


def _ab(schedule, t, like):
    return _coefficient(schedule.alpha_bars, t, like)


register(Exercise(
    id="01.x0_from_eps",
    title="x0 from x_t and the noise",
    reference=forward.x0_from_eps,
    cases=lambda: _conversion_cases(20),
    rtol=1e-4,  # dividing by sqrt(alpha_bar) near the end of the chain magnifies float32 rounding
    mistakes=[
        Mistake("no division", lambda x_t, t, eps, s: x_t - (1 - _ab(s, t, x_t)).sqrt() * eps,
                "After removing the noise, x_t still holds sqrt(alpha_bar) * x0: divide by sqrt(alpha_bar_t)."),
        Mistake("noise added", lambda x_t, t, eps, s: (x_t + (1 - _ab(s, t, x_t)).sqrt() * eps) / _ab(s, t, x_t).sqrt(),
                "Subtract the scaled noise: x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)."),
        Mistake("no square roots", lambda x_t, t, eps, s: (x_t - (1 - _ab(s, t, x_t)) * eps) / _ab(s, t, x_t),
                "The coefficients of q_sample are square roots of alpha_bar and 1 - alpha_bar."),
    ],
    hint="Solve x_t = sqrt(abar) x0 + sqrt(1 - abar) eps for x0.",
))

register(Exercise(
    id="01.v_from_x0_eps",
    title="the velocity target v",
    reference=forward.v_from_x0_eps,
    cases=lambda: _conversion_cases(30),
    mistakes=[
        Mistake("roles swapped", lambda x0, t, eps, s: _ab(s, t, x0).sqrt() * x0 - (1 - _ab(s, t, x0)).sqrt() * eps,
                "v = sqrt(abar) * eps - sqrt(1 - abar) * x0: the noise carries sqrt(alpha_bar)."),
        Mistake("sign flipped", lambda x0, t, eps, s: (1 - _ab(s, t, x0)).sqrt() * x0 - _ab(s, t, x0).sqrt() * eps,
                "The sign matters: v = sqrt(abar) eps - sqrt(1 - abar) x0 (positive on the noise)."),
        Mistake("no square roots", lambda x0, t, eps, s: _ab(s, t, x0) * eps - (1 - _ab(s, t, x0)) * x0,
                "Use the square roots, so that v has unit variance like eps and x_t."),
    ],
    hint="v = sqrt(alpha_bar_t) * eps - sqrt(1 - alpha_bar_t) * x0.",
))

register(Exercise(
    id="01.score_from_eps",
    title="the score from the noise prediction",
    reference=forward.score_from_eps,
    cases=lambda: [Case((c.args[0], c.args[1], c.args[3]), label=c.label) for c in _conversion_cases(40)],
    mistakes=[
        Mistake("no minus sign", lambda eps, t, s: eps / (1 - _ab(s, t, eps)).sqrt(),
                "The score points back toward the data, against the noise: score = -eps / sqrt(1 - alpha_bar)."),
        Mistake("no square root", lambda eps, t, s: -eps / (1 - _ab(s, t, eps)),
                "Divide by the standard deviation sqrt(1 - alpha_bar), not by the variance."),
        Mistake("multiplied", lambda eps, t, s: -eps * (1 - _ab(s, t, eps)).sqrt(),
                "That is the way back (eps from the score); to get the score, divide by sqrt(1 - alpha_bar)."),
    ],
    hint="For q(x_t | x0) = N(sqrt(abar) x0, (1 - abar) I), grad log q = -(x_t - sqrt(abar) x0) / (1 - abar) "
         "= -eps / sqrt(1 - abar).",
))


# ---------------------------------------------------------------- posterior coefficients, derived by Bayes' rule
def posterior_coefficients_reference(betas: torch.Tensor):
    """The three numbers per step that Bayes' rule gives for q(x_{t-1} | x_t, x0) (DDPM eqs. 6-7)."""
    schedule = NoiseSchedule(betas)
    return schedule.posterior_mean_coef_x0, schedule.posterior_mean_coef_xt, schedule.posterior_variance


def _coefficient_cases():
    return [Case((schedules.linear_betas(10),), label="10 linear betas"),
            Case((schedules.linear_betas(50, 0.01, 0.3),), label="50 linear betas from 0.01 to 0.3"),
            Case((schedules.cosine_betas(40),), label="40 cosine betas"),
            Case((torch.tensor([0.5, 0.25], dtype=torch.float64),), label="two betas, 0.5 and 0.25")]


def _bayes_with(prev_of=None, likelihood_variance_of=lambda beta, alpha: beta / alpha, root=True, dtype=torch.float64):
    """Bayes' rule for the product of two Gaussians in x_{t-1}, with one typical slip switched in."""
    def wrong(betas):
        alphas = 1 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)
        prev = (prev_of or (lambda ab: torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])))(alpha_bars)
        root_of = torch.sqrt if root else (lambda x: x)
        # likelihood q(x_t | x_{t-1}) as a Gaussian in x_{t-1}: mean x_t / sqrt(alpha), variance beta / alpha;
        # prior q(x_{t-1} | x0): mean sqrt(prev) x0, variance 1 - prev. Precisions add, means are weighted.
        like_var, prior_var = likelihood_variance_of(betas, alphas), 1 - prev
        variance = like_var * prior_var / (like_var + prior_var)
        coef_xt = variance / like_var / root_of(alphas)
        coef_x0 = variance / prior_var * root_of(prev)
        coef_x0 = torch.where(prior_var == 0, torch.ones_like(coef_x0), coef_x0)    # the first step: x_{t-1} = x0
        return coef_x0.to(dtype), coef_xt.to(dtype), variance.to(dtype)
    return wrong


def _swapped(betas):
    coef_x0, coef_xt, variance = posterior_coefficients_reference(betas)
    return coef_xt, coef_x0, variance


def _standard_deviation(betas):
    coef_x0, coef_xt, variance = posterior_coefficients_reference(betas)
    return coef_x0, coef_xt, variance.sqrt()


register(Exercise(
    id="01.posterior_coefficients",
    title="the posterior's coefficients from Bayes' rule",
    reference=posterior_coefficients_reference,
    cases=_coefficient_cases,
    mistakes=[
        Mistake("likelihood variance beta", _bayes_with(likelihood_variance_of=lambda beta, alpha: beta),
                "Read q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t) as a function of x_{t-1}: it is "
                "N(x_t / sqrt(alpha_t), beta_t / alpha_t), so its precision is alpha_t / beta_t, not 1 / beta_t."),
        Mistake("alpha_bar_t in the prior", _bayes_with(prev_of=lambda ab: ab),
                "The prior is q(x_{t-1} | x0) = N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}): one step *before* t. "
                "Shift the cumulative product by one and start it with abar_0 = 1."),
        Mistake("wrapped around", _bayes_with(prev_of=lambda ab: torch.roll(ab, 1)),
                "torch.roll wraps the last value round to the front, so step 1 gets abar_T. abar_0 = 1: build "
                "the shifted product with torch.cat([ones(1), alpha_bars[:-1]])."),
        Mistake("no square roots", _bayes_with(root=False),
                "Means scale by square roots: x_{t-1} given x0 has mean sqrt(abar_{t-1}) x0, and undoing the "
                "forward step divides x_t by sqrt(alpha_t)."),
        Mistake("coefficients swapped", _swapped,
                "Return (coefficient of x0, coefficient of x_t, variance), in that order. At step 1 the x0 "
                "coefficient is 1 and the x_t coefficient 0."),
        Mistake("standard deviation", _standard_deviation,
                "The third value is the variance beta_tilde_t, not its square root."),
        Mistake("float32", _bayes_with(dtype=torch.float32),
                "Keep the schedule's float64: 1 - abar_t near the first step is a difference of nearly equal numbers."),
    ],
    hint="Multiply N(x_{t-1}; x_t / sqrt(alpha_t), beta_t / alpha_t) by N(x_{t-1}; sqrt(abar_{t-1}) x0, 1 - abar_{t-1}): "
         "1 / variance = alpha_t / beta_t + 1 / (1 - abar_{t-1}); mean = variance * (sqrt(alpha_t) / beta_t * x_t + "
         "sqrt(abar_{t-1}) / (1 - abar_{t-1}) * x0). Read off the two coefficients.",
))
