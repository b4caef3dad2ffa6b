"""Exercises of notebook 01, the forward process: schedules, q_sample, the posterior, conversions."""
from __future__ import annotations

import math

import numpy as np
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
    contract="a float64 tensor of shape (T,)",
    cases=lambda: [Case((10, 1e-4, 0.02), label="T=10"), Case((1000, 1e-4, 0.02), label="T=1000"),
                   Case((41, 1e-4, 0.02), label="T=41 (odd: a float step in arange rounds past the end)"),
                   Case((6, 0.1, 0.35), label="T=6, beta from 0.1 to 0.35"), Case((2,), label="T=2, defaults")],
    alternatives=[
        lambda T, b0=1e-4, b1=0.02: torch.tensor([b0 + (b1 - b0) * i / (T - 1) for i in range(T)], dtype=torch.float64),
        lambda T, b0=1e-4, b1=0.02: torch.from_numpy(np.linspace(b0, b1, T)),
    ],
    mistakes=[
        Mistake("float32", lambda T, b0, b1: torch.linspace(b0, b1, T),
                "Schedules are computed in float64 (products of many numbers near 1 lose digits in "
                "float32): pass dtype=torch.float64."),
        Mistake("misses the last value", lambda T, b0, b1: b0 + (b1 - b0) * torch.arange(T, dtype=torch.float64) / T,
                "The last beta must equal beta_end: torch.linspace(beta_start, beta_end, T) includes both "
                "ends, while arange(T) / T stops one step short."),
        Mistake("starts one step late", lambda T, b0, b1: torch.linspace(b0, b1, T + 1, dtype=torch.float64)[1:],
                "Index 0 is the first step, so betas[0] must equal beta_start."),
        Mistake("arange with a float step", lambda T, b0=1e-4, b1=0.02:
                torch.arange(b0, b1 + (b1 - b0) / (T - 1), (b1 - b0) / (T - 1), dtype=torch.float64),
                "torch.arange with a float step rounds: for some T (here an odd one) it returns one value too "
                "many. torch.linspace(beta_start, beta_end, T, dtype=torch.float64) always returns exactly T."),
        Mistake("a list", lambda T, b0=1e-4, b1=0.02: torch.linspace(b0, b1, T, dtype=torch.float64).tolist(),
                "Return a tensor, not a Python list: torch.linspace(...) already is one (a float64 tensor of "
                "shape (T,))."),
    ],
    hint="Return T values evenly spaced from beta_start to beta_end, both included, as float64.",
))


# ---------------------------------------------------------------- cumulative product
def _some_betas() -> torch.Tensor:
    return schedules.linear_betas(20, 0.01, 0.4)


def _alpha_bars_loop(betas):
    running, values = 1.0, []
    for beta in betas.tolist():
        running *= 1 - beta
        values.append(running)
    return torch.tensor(values, dtype=torch.float64)


register(Exercise(
    id="01.alpha_bars",
    title="alpha_bar, the cumulative product",
    reference=lambda betas: torch.cumprod(1 - betas, dim=0),
    contract="a tensor of the betas' shape (T,) and dtype (float64)",
    cases=lambda: [Case((_some_betas(),), label="20 linear betas"),
                   Case((schedules.cosine_betas(101),), label="101 cosine betas"),
                   Case((schedules.linear_betas(1000),), label="1000 linear betas"),
                   Case((torch.tensor([0.5], dtype=torch.float64),), label="a single beta of 0.5")],
    alternatives=[_alpha_bars_loop, lambda betas: torch.exp(torch.cumsum(torch.log1p(-betas), dim=0))],
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
        Mistake("in place on betas", lambda betas: torch.cumprod(betas.neg_().add_(1), dim=0),
                "betas.neg_().add_(1) overwrites the caller's betas. Write 1 - betas, which makes a new tensor."),
        Mistake("float32 product", lambda betas: torch.cumprod(1 - betas.float(), dim=0),
                "Keep float64: a product of a thousand numbers near 1 loses digits in float32 (.float() is "
                "float32). torch.cumprod(1 - betas, dim=0) keeps the betas' dtype."),
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


def _cosine_float32_grid(T, s=0.008, max_beta=0.999):
    u = torch.arange(T + 1) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta).double()


def _cosine_numpy(T, s=0.008, max_beta=0.999):
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
    return torch.from_numpy(np.minimum(1 - f[1:] / f[:-1], max_beta))


def _cosine_loop(T, s=0.008, max_beta=0.999):
    def alpha_bar(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    return torch.tensor([min(1 - alpha_bar((t + 1) / T) / alpha_bar(t / T), max_beta) for t in range(T)],
                        dtype=torch.float64)


register(Exercise(
    id="01.cosine_betas",
    title="cosine beta schedule",
    reference=schedules.cosine_betas,
    contract="a float64 tensor of shape (T,)",
    cases=lambda: [Case((10,), label="T=10"), Case((1000,), label="T=1000"), Case((37,), label="T=37 (odd)"),
                   Case((40,), {"s": 0.02, "max_beta": 0.5}, label="T=40, s=0.02, max_beta=0.5")],
    alternatives=[_cosine_numpy, _cosine_loop],
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
        Mistake("float32 arange", _cosine_float32_grid,
                "torch.arange(T + 1) / T is float32 in torch (NumPy would give float64): the small first betas "
                "lose digits. Build the grid in float64: torch.arange(T + 1, dtype=torch.float64) / T."),
        Mistake("float32 result", lambda T, s=0.008, max_beta=0.999: _cosine_variant(T, s, max_beta).float(),
                "Return float64: schedules are computed and kept in float64 (1 - alpha_bar near t = 0 needs "
                "the digits)."),
    ],
    hint="With u = torch.arange(T + 1, dtype=torch.float64) / T and f(u) = cos^2(pi/2 (u + s)/(1 + s)): beta_t = min(1 - f[t+1]/f[t], max_beta).",
))


# ---------------------------------------------------------------- q_sample
def _edge_cases(first_seed: int, shapes=((4, 1, 8, 8), (3, 3, 5, 5), (5, 2), (3, 2))):
    """(a, t, b, schedule) cases at the edges a student meets: t = 0, 1, T - 1, both schedules, an odd T."""
    plans = [(NoiseSchedule.linear(1000), [0, 1, 500, 999], "linear T=1000, t=[0, 1, 500, 999]"),
             (NoiseSchedule.cosine(51), [50, 1, 20], "cosine T=51 (odd), t=[50, 1, 20]"),
             (_coarse_schedule(), [0, 1, 2, 3, 49], "coarse linear T=50, t=[0, 1, 2, 3, 49]"),
             (NoiseSchedule.cosine(1000), [999, 0, 1], "cosine T=1000, t=[999, 0, 1]")]
    cases = []
    for index, ((schedule, steps, label), shape) in enumerate(zip(plans, shapes)):
        batch_shape = (len(steps), *shape[1:])
        seed = first_seed + 2 * index
        cases.append(Case((seeded_randn(*batch_shape, seed=seed), _timesteps(steps),
                           seeded_randn(*batch_shape, seed=seed + 1), schedule), label=label))
    return cases


def _q_sample_with(values_of, root=True, cast=True):
    def wrong(x0, t, noise, schedule):
        values = values_of(schedule, t)
        a = (values.to(x0.dtype) if cast else values).reshape(-1, *([1] * (x0.ndim - 1)))
        return (a.sqrt() * x0 + (1 - a).sqrt() * noise) if root else (a * x0 + (1 - a) * noise)
    return wrong


def _q_sample_in_place(x0, t, noise, schedule):
    a = _coefficient(schedule.alpha_bars, t, x0)
    return x0.mul_(a.sqrt()).add_((1 - a).sqrt() * noise)


def _q_sample_casts_the_schedule(x0, t, noise, schedule):
    schedule.alpha_bars = schedule.alpha_bars.to(x0.dtype)     # "fixes" the dtype once, for every later caller
    return forward.q_sample(x0, t, noise, schedule)


def _q_sample_float64_inside(x0, t, noise, schedule):
    a = schedule.alpha_bars[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return (a.sqrt() * x0.double() + (1 - a).sqrt() * noise.double()).to(x0.dtype)


def _q_sample_loop(x0, t, noise, schedule):
    return torch.stack([schedule.alpha_bars[s].sqrt().float() * x + (1 - schedule.alpha_bars[s]).sqrt().float() * n
                        for x, s, n in zip(x0, t.tolist(), noise)])


_T_MINUS_ONE_HINT = ("alpha_bars[t - 1] is not 'the previous value' at t = 0: index -1 wraps around to the last, "
                     "noisiest entry. For alpha_bar one step back use alpha_bars_prev[t] (1 at t = 0)")

register(Exercise(
    id="01.q_sample",
    title="sample q(x_t | x_0) in closed form",
    reference=forward.q_sample,
    contract="a tensor of x0's shape and dtype (float32 here)",
    cases=lambda: _edge_cases(1),
    alternatives=[_q_sample_float64_inside, _q_sample_loop],
    mistakes=[
        Mistake("alpha for alpha_bar", _q_sample_with(lambda s, t: s.alphas[t]),
                "Use the cumulative product alpha_bars[t], not alphas[t]: x_t is reached from x_0 through all "
                "steps up to t."),
        Mistake("no square roots", _q_sample_with(lambda s, t: s.alpha_bars[t], root=False),
                "alpha_bar and 1 - alpha_bar are variances; scale x0 and the noise by their square roots."),
        Mistake("one step behind", _q_sample_with(lambda s, t: s.alpha_bars_prev[t]),
                "Timesteps are 0-based: alpha_bars[t] already includes step t, alpha_bars_prev[t] is one step behind."),
        Mistake("alpha_bars[t - 1]", _q_sample_with(lambda s, t: s.alpha_bars[t - 1]),
                _T_MINUS_ONE_HINT + "; q_sample itself needs alpha_bars[t]: 0-based t already includes step t."),
        Mistake("float64 result", _q_sample_with(lambda s, t: s.alpha_bars[t], cast=False),
                "Schedule tensors are float64; cast the coefficient to x0's dtype (.to(x0.dtype)) so that x_t "
                "keeps the dtype of the data."),
        Mistake("in a tuple", lambda x0, t, noise, schedule: (forward.q_sample(x0, t, noise, schedule),),
                "Return the tensor x_t itself, not a tuple holding it: `return x_t`, not `return (x_t,)` or "
                "`return x_t,` (a trailing comma makes a tuple)."),
        Mistake("x0 changed in place", _q_sample_in_place,
                "x0.mul_(...) overwrites the caller's images. Build a new tensor: a.sqrt() * x0 + (1 - a).sqrt() * noise."),
        Mistake("schedule changed", _q_sample_casts_the_schedule,
                "schedule.alpha_bars = ... replaces a field of the caller's schedule, which every later cell "
                "shares (in float32 it loses precision for good). Keep the value in a new variable: "
                "a = schedule.alpha_bars[t].to(x0.dtype)."),
    ],
    hint="Pick alpha_bar for each batch item with alpha_bars[t], cast it to x0's dtype, reshape it to "
         "(B, 1, ..., 1) so it broadcasts, then x_t = sqrt(alpha_bar) * x0 + sqrt(1 - alpha_bar) * noise.",
))


# ---------------------------------------------------------------- posterior
def _posterior_cases():
    cases = []
    for case in _edge_cases(7):
        x0, t, noise, schedule = case.args
        cases.append(Case((x0, forward.q_sample(x0, t, noise, schedule), t, schedule), label=case.label))
    return cases


def _posterior_variant(prev_of=lambda s, t: s.alpha_bars_prev[t], root_alpha=True, variance_of=None, swap=False,
                       cast_variance=True, container=tuple):
    def wrong(x0, x_t, t, schedule):
        def per_item(values):
            return values.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
        a_bar, a_bar_prev = per_item(schedule.alpha_bars[t]), per_item(prev_of(schedule, t))
        beta = per_item(schedule.betas[t])
        coef_x0 = a_bar_prev.sqrt() * beta / (1 - a_bar)
        coef_xt = ((1 - beta).sqrt() if root_alpha else 1 - beta) * (1 - a_bar_prev) / (1 - a_bar)
        if swap:
            coef_x0, coef_xt = coef_xt, coef_x0
        if variance_of:
            variance = per_item(variance_of(schedule)[t])
        elif cast_variance:
            variance = (1 - a_bar_prev) / (1 - a_bar) * beta
        else:
            variance = schedule.posterior_variance[t].reshape(-1, *([1] * (x0.ndim - 1)))
        return container([coef_x0 * x0 + coef_xt * x_t, variance])
    return wrong


def _posterior_from_fields(x0, x_t, t, schedule):
    def per_item(values):
        return values[t].to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    mean = per_item(schedule.posterior_mean_coef_x0) * x0 + per_item(schedule.posterior_mean_coef_xt) * x_t
    return mean, per_item(schedule.posterior_variance)


def _posterior_float64_inside(x0, x_t, t, schedule):
    shape = (-1, *([1] * (x0.ndim - 1)))
    a_bar, a_prev = schedule.alpha_bars[t].reshape(shape), schedule.alpha_bars_prev[t].reshape(shape)
    beta = schedule.betas[t].reshape(shape)
    mean = a_prev.sqrt() * beta / (1 - a_bar) * x0.double() + (1 - beta).sqrt() * (1 - a_prev) / (1 - a_bar) * x_t.double()
    return mean.to(x0.dtype), ((1 - a_prev) / (1 - a_bar) * beta).to(x0.dtype)


register(Exercise(
    id="01.q_posterior",
    title="posterior q(x_{t-1} | x_t, x_0)",
    reference=forward.q_posterior,
    contract="a tuple (mean, variance): mean of x0's shape, variance of shape (B, 1, ..., 1), both in x0's dtype",
    cases=_posterior_cases,
    alternatives=[_posterior_from_fields, _posterior_float64_inside],
    mistakes=[
        Mistake("alpha_bar for alpha_bar_prev", _posterior_variant(prev_of=lambda s, t: s.alpha_bars[t]),
                "The posterior needs alpha_bar one step back: use alpha_bars_prev[t] for alpha_bar_{t-1}."),
        Mistake("alpha_bars[t - 1]", _posterior_variant(prev_of=lambda s, t: s.alpha_bars[t - 1]),
                _T_MINUS_ONE_HINT + "."),
        Mistake("variance beta_t", _posterior_variant(variance_of=lambda s: s.betas),
                "The posterior variance is beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t, "
                "smaller than beta_t."),
        Mistake("coefficients swapped", _posterior_variant(swap=True),
                "x0 is weighted by sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t); x_t by "
                "sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)."),
        Mistake("alpha without square root", _posterior_variant(root_alpha=False),
                "The x_t coefficient has sqrt(alpha_t), not alpha_t."),
        Mistake("float64 variance", _posterior_variant(cast_variance=False),
                "The variance came out float64 (schedule.posterior_variance is float64): cast it to x0's dtype, "
                "like the mean."),
        Mistake("a list", _posterior_variant(container=list),
                "Return a tuple, `return mean, variance`, not a list [mean, variance]."),
    ],
    hint="mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) * x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) * x_t; "
         "variance = (1 - abar_{t-1}) / (1 - abar_t) * beta_t, shaped (B, 1, ..., 1).",
))


# ---------------------------------------------------------------- conversions
def _ab(schedule, t, like, table="alpha_bars", shift=0):
    return _coefficient(getattr(schedule, table), t - shift, like)


def _float64_inside(formula):
    """A correct answer that computes in float64 and casts back: accepted, like float32 arithmetic."""
    def answer(a, t, b, schedule):
        ab = schedule.alpha_bars[t].reshape(-1, *([1] * (a.ndim - 1)))
        return formula(a.double(), b.double() if isinstance(b, torch.Tensor) else b, ab).to(a.dtype)
    return answer


def _uncast(formula):
    """The formula with the float64 schedule value left uncast: the result comes out float64."""
    def wrong(a, t, b, schedule):
        return formula(a, b, schedule.alpha_bars[t].reshape(-1, *([1] * (a.ndim - 1))))
    return wrong


def _x0_formula(x_t, eps, ab):
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()


register(Exercise(
    id="01.x0_from_eps",
    title="x0 from x_t and the noise",
    reference=forward.x0_from_eps,
    contract="a tensor of x_t's shape and dtype (float32 here)",
    cases=lambda: _edge_cases(20),
    alternatives=[_float64_inside(_x0_formula),
                  lambda x_t, t, eps, s: x_t / _ab(s, t, x_t).sqrt() - (1 / _ab(s, t, x_t) - 1).sqrt() * eps],
    mistakes=[
        Mistake("no division", lambda x_t, t, eps, s: x_t - (1 - _ab(s, t, x_t)).sqrt() * eps,
                "After removing the noise, x_t still holds sqrt(alpha_bar) * x0: divide by sqrt(alpha_bar_t)."),
        Mistake("noise added", lambda x_t, t, eps, s: (x_t + (1 - _ab(s, t, x_t)).sqrt() * eps) / _ab(s, t, x_t).sqrt(),
                "Subtract the scaled noise: x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)."),
        Mistake("no square roots", lambda x_t, t, eps, s: (x_t - (1 - _ab(s, t, x_t)) * eps) / _ab(s, t, x_t),
                "The coefficients of q_sample are square roots of alpha_bar and 1 - alpha_bar."),
        Mistake("float64 result", _uncast(_x0_formula),
                "Your x0 is float64 because schedule.alpha_bars is: cast the coefficient to x_t's dtype "
                "(schedule.alpha_bars[t].to(x_t.dtype)) before using it."),
        Mistake("alpha_bars[t - 1]", lambda x_t, t, eps, s: _x0_formula(x_t, eps, _ab(s, t, x_t, shift=1)),
                _T_MINUS_ONE_HINT + "; here x_t was made with alpha_bars[t] itself, so invert with that."),
        Mistake("alpha for alpha_bar", lambda x_t, t, eps, s: _x0_formula(x_t, eps, _ab(s, t, x_t, "alphas")),
                "Use alpha_bars[t], the cumulative product that q_sample used, not alphas[t]."),
    ],
    hint="Solve x_t = sqrt(abar) x0 + sqrt(1 - abar) eps for x0.",
))


def _v_formula(x0, eps, ab):
    return ab.sqrt() * eps - (1 - ab).sqrt() * x0


register(Exercise(
    id="01.v_from_x0_eps",
    title="the velocity target v",
    reference=forward.v_from_x0_eps,
    contract="a tensor of x0's shape and dtype (float32 here)",
    cases=lambda: _edge_cases(30),
    alternatives=[lambda x0, t, eps, s: _float64_inside(_v_formula)(x0, t, eps, s),
                  lambda x0, t, eps, s: _ab(s, t, x0).sqrt() * (eps - (1 / _ab(s, t, x0) - 1).sqrt() * x0)],
    mistakes=[
        Mistake("roles swapped", lambda x0, t, eps, s: _ab(s, t, x0).sqrt() * x0 - (1 - _ab(s, t, x0)).sqrt() * eps,
                "v = sqrt(abar) * eps - sqrt(1 - abar) * x0: the noise carries sqrt(alpha_bar)."),
        Mistake("sign flipped", lambda x0, t, eps, s: (1 - _ab(s, t, x0)).sqrt() * x0 - _ab(s, t, x0).sqrt() * eps,
                "The sign matters: v = sqrt(abar) eps - sqrt(1 - abar) x0 (positive on the noise)."),
        Mistake("no square roots", lambda x0, t, eps, s: _ab(s, t, x0) * eps - (1 - _ab(s, t, x0)) * x0,
                "Use the square roots, so that v has unit variance like eps and x_t."),
        Mistake("float64 result", lambda x0, t, eps, s: _uncast(_v_formula)(x0, t, eps, s),
                "Your v is float64 because schedule.alpha_bars is: cast the coefficient to x0's dtype "
                "(schedule.alpha_bars[t].to(x0.dtype)) before using it."),
        Mistake("alpha_bars[t - 1]", lambda x0, t, eps, s: _v_formula(x0, eps, _ab(s, t, x0, shift=1)),
                _T_MINUS_ONE_HINT + "; v at step t uses alpha_bars[t] itself."),
        Mistake("alpha for alpha_bar", lambda x0, t, eps, s: _v_formula(x0, eps, _ab(s, t, x0, "alphas")),
                "Use alpha_bars[t], the cumulative product, not the per-step alphas[t]."),
    ],
    hint="v = sqrt(alpha_bar_t) * eps - sqrt(1 - alpha_bar_t) * x0.",
))


def _score_formula(eps, unused, ab):
    return -eps / (1 - ab).sqrt()


register(Exercise(
    id="01.score_from_eps",
    title="the score from the noise prediction",
    reference=forward.score_from_eps,
    contract="a tensor of eps's shape and dtype (float32 here)",
    cases=lambda: [Case((c.args[0], c.args[1], c.args[3]), label=c.label) for c in _edge_cases(40)],
    alternatives=[lambda eps, t, s: _float64_inside(_score_formula)(eps, t, None, s),
                  lambda eps, t, s: -eps * torch.rsqrt(1 - _ab(s, t, eps)),
                  lambda eps, t, s: torch.from_numpy(-eps.numpy() / np.sqrt(1 - s.alpha_bars[t].numpy()).reshape(
                      -1, *([1] * (eps.ndim - 1)))).to(eps.dtype)],
    mistakes=[
        Mistake("no minus sign", lambda eps, t, s: eps / (1 - _ab(s, t, eps)).sqrt(),
                "The score points back toward the data, against the noise: score = -eps / sqrt(1 - alpha_bar)."),
        Mistake("no square root", lambda eps, t, s: -eps / (1 - _ab(s, t, eps)),
                "Divide by the standard deviation sqrt(1 - alpha_bar), not by the variance."),
        Mistake("multiplied", lambda eps, t, s: -eps * (1 - _ab(s, t, eps)).sqrt(),
                "That is the way back (eps from the score); to get the score, divide by sqrt(1 - alpha_bar)."),
        Mistake("float64 result", lambda eps, t, s: _uncast(_score_formula)(eps, t, None, s),
                "Your score is float64 because schedule.alpha_bars is: cast the coefficient to eps's dtype "
                "(schedule.alpha_bars[t].to(eps.dtype)) before using it."),
        Mistake("sqrt(alpha_bar)", lambda eps, t, s: -eps / _ab(s, t, eps).sqrt(),
                "The noise's standard deviation at step t is sqrt(1 - alpha_bar_t), not sqrt(alpha_bar_t)."),
        Mistake("alpha_bars[t - 1]", lambda eps, t, s: _score_formula(eps, None, _ab(s, t, eps, shift=1)),
                _T_MINUS_ONE_HINT + "; the score at step t uses alpha_bars[t] itself."),
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


def _coefficients_closed_form(betas):
    """DDPM eq. 7 as printed, rather than Bayes' rule worked through."""
    alpha_bars = torch.cumprod(1 - betas, dim=0)
    prev = torch.cat([torch.ones(1, dtype=betas.dtype), alpha_bars[:-1]])
    return (prev.sqrt() * betas / (1 - alpha_bars), (1 - betas).sqrt() * (1 - prev) / (1 - alpha_bars),
            (1 - prev) / (1 - alpha_bars) * betas)


def _coefficients_loop(betas):
    coef_x0, coef_xt, variance, alpha_bar = [], [], [], 1.0
    for beta in betas.tolist():
        prev, alpha_bar = alpha_bar, alpha_bar * (1 - beta)
        coef_x0.append(math.sqrt(prev) * beta / (1 - alpha_bar))
        coef_xt.append(math.sqrt(1 - beta) * (1 - prev) / (1 - alpha_bar))
        variance.append((1 - prev) * beta / (1 - alpha_bar))
    return tuple(torch.tensor(values, dtype=torch.float64) for values in (coef_x0, coef_xt, variance))


register(Exercise(
    id="01.posterior_coefficients",
    title="the posterior's coefficients from Bayes' rule",
    reference=posterior_coefficients_reference,
    contract="a tuple of three float64 tensors of shape (T,): (coefficient of x0, coefficient of x_t, variance)",
    cases=_coefficient_cases,
    alternatives=[_coefficients_closed_form, _coefficients_loop],
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
