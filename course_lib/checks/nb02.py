"""Exercises of notebook 02, the procedural demo: easing, noise schedule, one blend step, statistics.

The library computes in NumPy, but its formula functions use only operators that torch tensors
share, so these checks hand the student torch tensors, like every other notebook.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import forward, procedural
from ..procedural import EASINGS, EXPONENTIAL_RATE, MAX_NOISE, NOISE_SCHEDULES, ease, noise_scale, progress_of
from ..schedules import NoiseSchedule
from ._framework import Case, Exercise, Mistake, register, seeded_generator



# ---------------------------------------------------------------- easing
def _progress_grid() -> torch.Tensor:
    return torch.linspace(0, 1, 21, dtype=torch.float64)


def _ease_out(progress, easing="cubic"):
    return 1 - EASINGS[easing](1 - progress)


def _always_cubic(progress, easing="cubic"):
    return progress ** 3


def _smoothstep_powers_swapped(progress, easing="cubic"):
    return 3 * progress ** 3 - 2 * progress ** 2 if easing == "smoothstep" else EASINGS[easing](progress)


def _ease_always_tensor(progress, easing="cubic"):
    return ease(torch.as_tensor(progress, dtype=torch.float64), easing)


def _ease_in_place(progress, easing="cubic"):
    if isinstance(progress, torch.Tensor) and easing == "cubic":
        return progress.pow_(3)
    return ease(progress, easing)


def _ease_branches(progress, easing="cubic"):
    if easing == "quadratic":
        return progress * progress
    if easing == "cubic":
        return progress * progress * progress
    if easing == "quartic":
        return (progress * progress) ** 2
    return progress ** 2 * (3 - 2 * progress)


def _ease_numpy(progress, easing="cubic"):
    power = {"quadratic": 2, "cubic": 3, "quartic": 4}
    values = np.asarray(progress, dtype=np.float64)
    result = values ** power[easing] if easing in power else 3 * values ** 2 - 2 * values ** 3
    return torch.from_numpy(result) if isinstance(progress, torch.Tensor) else float(result)


register(Exercise(
    id="02.easing",
    title="easing: blend strength from progress",
    reference=ease,
    contract="the same kind as progress: a Python float for a float, a tensor of progress's shape and dtype "
             "for a tensor",
    cases=lambda: [Case((_progress_grid(), "cubic"), label="cubic, 21 progress values"),
                   Case((_progress_grid(), "smoothstep"), label="smoothstep"),
                   Case((_progress_grid(), "quadratic"), label="quadratic"),
                   Case((_progress_grid(), "quartic"), label="quartic"),
                   Case((0.5,), label="a float, default easing"),
                   Case((0.0, "smoothstep"), label="progress 0.0, smoothstep"),
                   Case((1.0, "quartic"), label="progress 1.0, quartic")],
    alternatives=[_ease_branches, _ease_numpy],
    mistakes=[
        Mistake("ease-out", _ease_out,
                "That is the ease-out curve, steep at the start. The demo eases in: p**2, p**3, p**4 start flat "
                "(f'(0) = 0), so the pattern shows up late."),
        Mistake("easing ignored", _always_cubic,
                "Use the `easing` argument: 'quadratic' is p**2, 'cubic' p**3, 'quartic' p**4, 'smoothstep' "
                "3 p**2 - 2 p**3."),
        Mistake("smoothstep powers swapped", _smoothstep_powers_swapped,
                "smoothstep is 3 p**2 - 2 p**3: the square carries the 3. It starts and ends flat."),
        Mistake("a tensor for a float", _ease_always_tensor,
                "Given a Python float, return a Python float: apply the formula to progress as it comes "
                "(p ** 3 works on floats and tensors alike) instead of converting it to a tensor."),
        Mistake("progress changed in place", _ease_in_place,
                "progress.pow_(3) overwrites the caller's tensor. Write progress ** 3, which makes a new one."),
    ],
    hint="Return progress**2, progress**3, progress**4 or 3 progress**2 - 2 progress**3, chosen by `easing`.",
))


# ---------------------------------------------------------------- noise scale gamma(t)

def _noise_scale_with(shapes, zero_at_end=True, fraction=lambda t, T: t / T):
    def wrong(t, T, noise_schedule="quadratic"):
        if zero_at_end and t == 0:
            return 0.0
        return MAX_NOISE * shapes[noise_schedule](fraction(t, T))
    return wrong


def _noise_scale_branches(t, T, noise_schedule="quadratic"):
    fraction_left = t / T
    if t == 0:
        return 0.0
    return {"quadratic": 0.1 * fraction_left * fraction_left, "linear": 0.1 * fraction_left,
            "exponential": 0.1 * math.exp(-5 * (T - t) / T)}[noise_schedule]


def _noise_scale_numpy(t, T, noise_schedule="quadratic"):
    r = np.float64(t) / T
    value = {"quadratic": r ** 2, "linear": r, "exponential": np.exp(-5 * (1 - r))}[noise_schedule]
    return 0.0 if t == 0 else float(0.1 * value)


register(Exercise(
    id="02.noise_scale",
    title="noise scale gamma(t)",
    reference=noise_scale,
    contract="a Python float",
    alternatives=[_noise_scale_branches, _noise_scale_numpy],
    cases=lambda: [Case((40, 50, "quadratic"), label="t=40, T=50, quadratic"),
                   Case((1, 7, "exponential"), label="t=1, T=7 (odd), exponential"),
                   Case((7, 7, "linear"), label="t=T=7, linear"),
                   Case((7, 20), label="t=7, T=20, default schedule"),
                   Case((10, 50, "linear"), label="t=10, T=50, linear"),
                   Case((10, 50, "exponential"), label="t=10, T=50, exponential"),
                   Case((50, 50, "exponential"), label="t=T=50, exponential"),
                   Case((0, 50, "exponential"), label="t=0, exponential"),
                   Case((0, 50, "quadratic"), label="t=0, quadratic")],
    mistakes=[
        Mistake("not squared", _noise_scale_with(NOISE_SCHEDULES | {"quadratic": lambda r: r}),
                "The quadratic schedule squares the fraction of time left: gamma(t) = (t/T)**2 * 0.1."),
        Mistake("exponential of t/T as written",
                _noise_scale_with(NOISE_SCHEDULES | {"exponential": lambda r: math.exp(-EXPONENTIAL_RATE * r)}),
                "exp(-5 t/T) grows as t falls, so the noise would be strongest at the end. Decay with the progress "
                "instead: gamma(t) = 0.1 * exp(-5 * (T - t) / T), which is 0.1 at t = T."),
        Mistake("progress for t/T", _noise_scale_with(NOISE_SCHEDULES, fraction=progress_of),
                "g must be largest at the start (t = T) and shrink toward t = 0: use the fraction of time left, "
                "t / T, not the progress (T - t) / T."),
        Mistake("noise at t = 0", _noise_scale_with(NOISE_SCHEDULES, zero_at_end=False),
                "No noise is added at the last step: return 0.0 when t == 0 (the exponential schedule is not 0 "
                "there by itself)."),
        Mistake("exponential without 0.1", _noise_scale_with(NOISE_SCHEDULES | {"exponential": lambda r:
                                                                                  math.exp(-EXPONENTIAL_RATE * (1 - r)) / MAX_NOISE}),
                "Check the end point: at t = T every schedule starts at the same strength, 0.1. The "
                "exponential one is 0.1 * exp(-5 * (T - t) / T), so the factor 0.1 belongs in front."),
        Mistake("a tensor", lambda t, T, noise_schedule="quadratic": torch.tensor(noise_scale(t, T, noise_schedule)),
                "Return a Python float (math.exp, not torch.exp; or .item() on a one-element tensor): gamma(t) is "
                "one number that multiplies the noise tensor."),
    ],
    hint="r = t / T; quadratic 0.1 r**2, linear 0.1 r, exponential 0.1 exp(-5 (1 - r)); and 0.0 at t = 0.",
))


# ---------------------------------------------------------------- one blend step
def _blend_cases():
    generator = seeded_generator(2)
    noise, pattern = torch.rand(6, 5, 3, generator=generator), torch.rand(6, 5, 3, generator=generator)
    z = torch.randn(6, 5, 3, generator=generator)
    return [Case((noise, pattern, 50, 50, z), label="t = T = 50: the noise plus 0.1 z"),
            Case((noise, pattern, 40, 50, z), label="t=40, T=50"),
            Case((noise, pattern, 3, 10, z, "smoothstep", "linear"), label="t=3, T=10, smoothstep, linear"),
            Case((noise, pattern, 0, 50, z), label="t=0: the pattern"),
            Case((noise, pattern, 1, 7, z, "smoothstep", "exponential"), label="t=1, T=7 (odd), exponential"),
            Case((noise, pattern, 10, 50, z, "quartic", "exponential"), label="t=10, T=50, quartic, exponential")]


def _blend_with(strength_of=lambda t, T, easing: ease(progress_of(t, T), easing), scale_of=noise_scale, clip=True):
    def wrong(noise, pattern, t, T, z, easing="cubic", noise_schedule="quadratic"):
        strength = strength_of(t, T, easing)
        current = noise * (1 - strength) + pattern * strength + scale_of(t, T, noise_schedule) * z
        return current.clip(0, 1) if clip else current
    return wrong


def _blend_in_place(noise, pattern, t, T, z, easing="cubic", noise_schedule="quadratic"):
    s = ease(progress_of(t, T), easing)
    return (noise.mul_(1 - s) + pattern * s + noise_scale(t, T, noise_schedule) * z).clip(0, 1)


def _blend_clamp(noise, pattern, t, T, z, easing="cubic", noise_schedule="quadratic"):
    s = ease((T - t) / T, easing)
    return torch.clamp(noise + s * (pattern - noise) + noise_scale(t, T, noise_schedule) * z, 0.0, 1.0)


def _blend_numpy(noise, pattern, t, T, z, easing="cubic", noise_schedule="quadratic"):
    s = ease((T - t) / T, easing)
    mixed = noise.numpy() * (1 - s) + pattern.numpy() * s + noise_scale(t, T, noise_schedule) * z.numpy()
    return torch.from_numpy(np.clip(mixed, 0, 1))


register(Exercise(
    id="02.blend_step",
    title="one step of the demo's reverse process",
    reference=procedural.blend_step,
    contract="a tensor of noise's shape and dtype (float32 here), values in [0, 1]",
    cases=_blend_cases,
    alternatives=[_blend_clamp, _blend_numpy],
    mistakes=[
        Mistake("easing of t/T", _blend_with(strength_of=lambda t, T, easing: ease(t / T, easing)),
                "Ease the progress (T - t) / T, not t / T: the strength must be 0 at t = T (pure noise) and 1 at "
                "t = 0 (pure pattern)."),
        Mistake("no clip", _blend_with(clip=False),
                "Clip the result to [0, 1] (.clip(0, 1)): the injected noise pushes some pixels outside."),
        Mistake("no easing", _blend_with(strength_of=lambda t, T, easing: progress_of(t, T)),
                "The blend weight is the eased progress, kappa = ease((T - t) / T, easing), not the progress itself."),
        Mistake("schedule ignored", _blend_with(scale_of=lambda t, T, noise_schedule: noise_scale(t, T)),
                "Pass `noise_schedule` on: the injected noise is gamma(t) for the chosen schedule, not always the "
                "quadratic one."),
        Mistake("noise changed in place", _blend_in_place,
                "noise.mul_(...) overwrites the caller's noise image, which the next step needs again. Write "
                "noise * (1 - s), which makes a new tensor."),
        Mistake("gamma(t) squared", _blend_with(scale_of=lambda t, T, noise_schedule: noise_scale(t, T, noise_schedule) ** 2),
                "gamma(t) is the standard deviation of the injected noise: add gamma(t) * z, not gamma(t) ** 2 * z (z already "
                "has standard deviation 1)."),
    ],
    hint="s = ease((T - t) / T, easing); return (noise * (1 - s) + pattern * s + noise_scale(t, T, noise_schedule) * z)"
         ".clip(0, 1).",
))


# ---------------------------------------------------------------- statistics
def _stats_cases():
    return [Case((torch.rand(8, 8, 3, generator=seeded_generator(3)),), label="an 8x8 RGB image"),
            Case((torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64).reshape(2, 2, 1),),
                 label="four pixels 0, 1, 1, 1"),
            Case((torch.rand(5, 7, 1, generator=seeded_generator(4)) * 0.5 + 0.25,), label="a grey image in [0.25, 0.75]"),
            Case((torch.full((1, 1, 1), 0.75),), label="a single pixel")]


def _stats_ddof_1(image):
    return image.mean().item(), image.std().item(), image.min().item(), image.max().item()


def _stats_variance(image):
    mean = image.mean()
    return mean.item(), ((image - mean) ** 2).mean().item(), image.min().item(), image.max().item()


def _stats_per_channel(image):
    channels = image.reshape(-1, image.shape[-1])
    return (channels.mean(0).mean().item(), channels.std(0, correction=0).mean().item(),
            channels.min(0).values.mean().item(), channels.max(0).values.mean().item())


register(Exercise(
    id="02.image_stats",
    title="the statistics record: mean, std, min, max",
    reference=procedural.image_stats,
    contract="a tuple of four Python floats (mean, std, min, max)",
    cases=_stats_cases,
    alternatives=[lambda image: tuple(float(v) for v in (image.double().mean(), image.double().std(correction=0),
                                                          image.min(), image.max())),
                  lambda image: (float(image.numpy().mean()), float(image.numpy().std()), float(image.numpy().min()),
                                 float(image.numpy().max()))],
    mistakes=[
        Mistake("std divides by N - 1", _stats_ddof_1,
                "torch's .std() divides by N - 1 by default; the demo's statistics, like np.std, divide by N: "
                "use image.std(correction=0), or ((image - mean) ** 2).mean().sqrt()."),
        Mistake("variance", _stats_variance,
                "That is the variance; the standard deviation is its square root."),
        Mistake("per channel, then averaged", _stats_per_channel,
                "Take each statistic over all pixels and all channels at once, not per channel and then averaged: "
                "the std of the whole image includes the differences between channels."),
        Mistake("tensors, not floats", lambda image: (image.mean(), image.std(correction=0), image.min(), image.max()),
                "Return Python floats, not one-element tensors: .item() (or float(...)) on each statistic, so the "
                "record prints and saves as plain numbers."),
        Mistake("a list", lambda image: list(procedural.image_stats(image)),
                "Return a tuple, `return mean, std, minimum, maximum`, not a list."),
    ],
    hint="Return four Python floats (use .item()): image.mean(), the std dividing by N (correction=0), "
         "image.min(), image.max(), all over every pixel and channel.",
))


# ---------------------------------------------------------------- statistics of a forward-noised image
def _forward_stats_cases():
    generator = seeded_generator(5)
    return [Case((torch.rand(1, 3, 6, 5, generator=generator) * 2 - 1, NoiseSchedule.cosine(50)),
                 label="an RGB image, cosine T=50"),
            Case((torch.rand(2, 1, 8, 8, generator=generator) * 1.5 - 0.9, NoiseSchedule.linear(20, 0.01, 0.3)),
                 label="two grey images, linear T=20 with large betas"),
            Case((torch.tensor([[-1.0, 1.0], [1.0, 1.0]], dtype=torch.float64).reshape(1, 1, 2, 2),
                  NoiseSchedule.linear(10, 0.05, 0.5)), label="four pixels -1, 1, 1, 1")]


def _forward_stats_with(values_of=lambda s: s.alpha_bars, root_mean=True, add_stds=False, ddof=0,
                        keep_noise=True, dtype=torch.float64):
    def wrong(x0, schedule):
        a = values_of(schedule)
        x0 = x0.to(torch.float64)
        mean, variance = x0.mean(), x0.var(correction=ddof)
        if add_stds:
            std = a.sqrt() * variance.sqrt() + (1 - a).sqrt()
        else:
            std = (a * variance + ((1 - a) if keep_noise else 0)).sqrt()
        return ((a.sqrt() if root_mean else a) * mean).to(dtype), std.to(dtype)
    return wrong


def _forward_stats_numpy(x0, schedule):
    pixels, alpha_bars = x0.double().numpy(), schedule.alpha_bars.numpy()
    mean = np.sqrt(alpha_bars) * pixels.mean()
    return torch.from_numpy(mean), torch.from_numpy(np.sqrt(alpha_bars * pixels.var() + 1 - alpha_bars))


def _forward_stats_loop(x0, schedule):
    m0, v0 = x0.double().mean().item(), x0.double().var(correction=0).item()
    means = [math.sqrt(a) * m0 for a in schedule.alpha_bars.tolist()]
    stds = [math.sqrt(a * v0 + 1 - a) for a in schedule.alpha_bars.tolist()]
    return torch.tensor(means, dtype=torch.float64), torch.tensor(stds, dtype=torch.float64)


register(Exercise(
    id="02.forward_stats",
    title="the statistics of a forward-noised image",
    reference=forward.q_sample_stats,
    contract="a tuple (mean, std) of two float64 tensors of shape (T,)",
    cases=_forward_stats_cases,
    alternatives=[_forward_stats_numpy, _forward_stats_loop],
    mistakes=[
        Mistake("alpha_bar without root in the mean", _forward_stats_with(root_mean=False),
                "x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps: the signal is scaled by the square root of alpha_bar, "
                "so the mean is sqrt(abar_t) * mean(x0)."),
        Mistake("standard deviations added", _forward_stats_with(add_stds=True),
                "Independent parts add their variances, not their standard deviations: "
                "std_t = sqrt(abar_t * var(x0) + (1 - abar_t))."),
        Mistake("noise forgotten", _forward_stats_with(keep_noise=False),
                "The noise contributes variance 1 - abar_t to every pixel: std_t = sqrt(abar_t var(x0) + 1 - abar_t)."),
        Mistake("alpha for alpha_bar", _forward_stats_with(values_of=lambda s: s.alphas),
                "x_t is reached from x0 through every step up to t: use the cumulative alpha_bars, not alphas."),
        Mistake("one step behind", _forward_stats_with(values_of=lambda s: s.alpha_bars_prev),
                "alpha_bars[i] belongs to step i + 1 and already includes it; alpha_bars_prev is one step behind."),
        Mistake("variance divides by N - 1", _forward_stats_with(ddof=1),
                "Take x0's variance dividing by N (x0.var(correction=0)), as image_stats does."),
        Mistake("float32", _forward_stats_with(dtype=torch.float32),
                "Return float64 tensors, like the schedule's alpha_bars (convert x0 with .double())."),
    ],
    hint="m0, v0 = x0.mean(), x0.var(correction=0) (as float64); return sqrt(abar) * m0 and "
         "sqrt(abar * v0 + 1 - abar), with abar = schedule.alpha_bars (shape (T,)).",
))
