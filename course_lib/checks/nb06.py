"""Exercises of notebook 06, guidance: the CFG formula, the doubled CFG batch, classifier guidance, the inpainting merge."""
from __future__ import annotations

import torch

from .. import guidance
from ..forward import q_sample
from ..schedules import NoiseSchedule, gather
from ._framework import Case, Exercise, Mistake, register, seeded_randn



# ---------------------------------------------------------------- the CFG formula
def _cfg_cases():
    return [Case((seeded_randn(4, 1, 8, 8, seed=1), seeded_randn(4, 1, 8, 8, seed=2), 3.0), label="4 digits, w=3"),
            Case((seeded_randn(5, 2, seed=3), seeded_randn(5, 2, seed=4), 0.5), label="5 points in 2-D, w=0.5"),
            Case((seeded_randn(2, 3, 4, 4, seed=5), seeded_randn(2, 3, 4, 4, seed=6), 0.0), label="w=0 (unconditional)")]


register(Exercise(
    id="06.guided_eps",
    title="the classifier-free guidance formula",
    reference=guidance.guided_eps,
    contract="a tensor of eps_cond's shape and dtype",
    cases=_cfg_cases,
    alternatives=[lambda c, u, w: torch.lerp(u, c, w), lambda c, u, w: (1 - w) * u + w * c],
    mistakes=[
        Mistake("(1 + w) convention", lambda c, u, w: (1 + w) * c - w * u,
                "This course uses diffusers' convention: eps_uncond + w (eps_cond - eps_uncond), so w = 1 is the "
                "plain conditional model. (1 + w) eps_cond - w eps_uncond is the same family with w shifted by 1."),
        Mistake("branches swapped", lambda c, u, w: c + w * (u - c),
                "Start from the unconditional prediction and move towards (and past) the conditional one: "
                "eps_uncond + w * (eps_cond - eps_uncond). You swapped the two branches."),
        Mistake("no baseline", lambda c, u, w: w * (c - u),
                "The difference eps_cond - eps_uncond is only the push; add it (times w) to eps_uncond."),
        Mistake("eps_cond changed in place", lambda c, u, w: c.sub_(u).mul_(w).add_(u),
                "eps_cond.sub_(...) overwrites the caller's prediction. Write eps_uncond + w * (eps_cond - "
                "eps_uncond), which makes a new tensor."),
        Mistake("in a tuple", lambda c, u, w: (u + w * (c - u),),
                "Return the tensor itself, not a tuple holding it (a trailing comma after the return value makes "
                "a tuple)."),
    ],
    hint="Return eps_uncond + guidance_scale * (eps_cond - eps_uncond).",
))


# ---------------------------------------------------------------- one batched call for both branches
class _CountingNet:
    """A stand-in for a class-conditional U-Net that counts its calls and, like nn.Embedding, wants int64 labels."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t, y=None):
        self.calls += 1
        if y is None or y.dtype != torch.int64:
            raise TypeError(f"the model needs labels y as an int64 tensor (its embedding table is indexed by "
                            f"them), got {None if y is None else y.dtype}")
        shape = (-1, *([1] * (x.ndim - 1)))
        return torch.tanh(x) + 0.01 * t.to(x.dtype).reshape(shape) + 0.1 * (y.to(x.dtype) + 1).reshape(shape)


def _one_call(args, kwargs, result):
    calls = args[0].calls
    if calls != 1:
        return (f"your function called the model {calls} times; the point of this exercise is one call on the "
                f"doubled batch, which costs about as much as one (the two branches share every layer's work)")
    return None


def _reference_cfg_batch(model, x_t, t, y, guidance_scale, null_class):
    return guidance.cfg_model(model, y, guidance_scale, null_class)(x_t, t)


def _cfg_batch_cases():
    return [Case((_CountingNet(), seeded_randn(4, 1, 8, 8, seed=11), torch.tensor([999, 500, 1, 0]),
                  torch.tensor([3, 0, 9, 1]), 2.0, 10), label="4 digits, w=2, null class 10"),
            Case((_CountingNet(), seeded_randn(3, 2, seed=12), torch.tensor([5, 5, 5]), torch.tensor([1, 0, 2]), 4.0, 3),
                 label="3 points, w=4, null class 3"),
            Case((_CountingNet(), seeded_randn(1, 3, 2, 2, seed=13), torch.tensor([0]), torch.tensor([2]), 0.0, 3),
                 label="one image, w=0 (unconditional)")]


def _cfg_batch_with(null=None, swap=False, shifted=False, null_dtype=None, repeat_t=True):
    def wrong(model, x_t, t, y, guidance_scale, null_class):
        nulls = torch.full(y.shape, null_class if null is None else null, dtype=null_dtype or y.dtype)
        eps = model(torch.cat([x_t, x_t]), torch.cat([t, t]) if repeat_t else t, y=torch.cat([y, nulls]))
        eps_cond, eps_uncond = eps.chunk(2)
        if swap:
            eps_cond, eps_uncond = eps_uncond, eps_cond
        if shifted:
            return (1 + guidance_scale) * eps_cond - guidance_scale * eps_uncond
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)
    return wrong


def _cfg_two_calls(model, x_t, t, y, guidance_scale, null_class):
    eps_cond, eps_uncond = model(x_t, t, y=y), model(x_t, t, y=torch.full_like(y, null_class))
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def _cfg_slices(model, x_t, t, y, guidance_scale, null_class):
    batch = x_t.shape[0]
    eps = model(x_t.repeat(2, *([1] * (x_t.ndim - 1))), t.repeat(2), y=torch.cat([y, y.new_full(y.shape, null_class)]))
    return torch.lerp(eps[batch:], eps[:batch], guidance_scale)


def _cfg_stack(model, x_t, t, y, guidance_scale, null_class):
    labels = torch.stack([y, torch.full_like(y, null_class)]).reshape(-1)
    eps_cond, eps_uncond = model(torch.cat([x_t] * 2), torch.cat([t] * 2), y=labels).split(x_t.shape[0])
    return eps_cond * guidance_scale + eps_uncond * (1 - guidance_scale)


register(Exercise(
    id="06.cfg_batch",
    title="both CFG branches in one batched call",
    reference=_reference_cfg_batch,
    contract="a tensor of x_t's shape and dtype, from one model call on the doubled batch with int64 labels",
    cases=_cfg_batch_cases,
    after_call=_one_call,
    alternatives=[_cfg_slices, _cfg_stack],
    mistakes=[
        Mistake("halves swapped", _cfg_batch_with(swap=True),
                "The first half of the output belongs to the first half of the input: with labels "
                "cat([y, null]), eps.chunk(2) gives (eps_cond, eps_uncond) in that order."),
        Mistake("null label 0", _cfg_batch_with(null=0),
                "0 is a real class (the digit 0). The unconditional branch uses the extra null class, "
                "torch.full_like(y, null_class)."),
        Mistake("(1 + w) convention", _cfg_batch_with(shifted=True),
                "Combine with diffusers' convention, eps_uncond + w * (eps_cond - eps_uncond) (guidance.guided_eps), "
                "not (1 + w) eps_cond - w eps_uncond."),
        Mistake("two calls", _cfg_two_calls,
                "Call the model once: x = torch.cat([x_t, x_t]), t2 = torch.cat([t, t]), labels = "
                "torch.cat([y, torch.full_like(y, null_class)]); then split the output with eps.chunk(2)."),
        Mistake("float null labels", _cfg_batch_with(null_dtype=torch.float32),
                "Labels must stay int64: torch.full(y.shape, null_class) with a float (or dtype=torch.float32) "
                "makes float labels, and torch.cat then turns all of them into floats. Use "
                "torch.full_like(y, null_class), which copies y's dtype."),
        Mistake("t not doubled", _cfg_batch_with(repeat_t=False),
                "Double the timesteps too: the batch has 2B images, so the model needs torch.cat([t, t])."),
    ],
    hint="eps = model(cat([x_t, x_t]), cat([t, t]), y=cat([y, full_like(y, null_class)])); "
         "eps_cond, eps_uncond = eps.chunk(2); then the formula of 06.guided_eps.",
))


# ---------------------------------------------------------------- classifier guidance
def _classifier_cases():
    linear = NoiseSchedule.linear(1000)
    return [Case((seeded_randn(4, 2, seed=21), seeded_randn(4, 2, seed=22), torch.tensor([999, 300, 50, 5]), 3.0,
                  NoiseSchedule.cosine(1000)), label="4 points in 2-D, s=3, cosine"),
            Case((seeded_randn(3, 1, 8, 8, seed=23), seeded_randn(3, 1, 8, 8, seed=24), torch.tensor([600, 100, 20]), 1.0, linear),
                 label="3 digits, s=1, linear"),
            Case((seeded_randn(3, 2, seed=25), seeded_randn(3, 2, seed=26), torch.tensor([0, 1, 50]), 2.0,
                  NoiseSchedule.linear(51, beta_start=0.01, beta_end=0.3)), label="coarse T=51, t=[0, 1, 50]")]


def _classifier_with(sign=-1, factor="sqrt_one_minus"):
    def wrong(eps, gradient, t, scale, schedule):
        abar = gather(schedule.alpha_bars, t, eps)
        coefficient = {"sqrt_one_minus": (1 - abar).sqrt(), "one_minus": 1 - abar, "sqrt_abar": abar.sqrt(),
                       "none": torch.ones_like(abar)}[factor]
        return eps + sign * scale * coefficient * gradient
    return wrong


def _classifier_uncast(eps, gradient, t, scale, schedule):
    return eps - scale * schedule.sqrt_one_minus_alpha_bars[t].reshape(-1, *([1] * (eps.ndim - 1))) * gradient


def _classifier_shifted(eps, gradient, t, scale, schedule):
    return eps - scale * gather((1 - schedule.alpha_bars).sqrt(), t - 1, eps) * gradient


def _classifier_float64(eps, gradient, t, scale, schedule):
    std = (1 - schedule.alpha_bars[t]).sqrt().reshape(-1, *([1] * (eps.ndim - 1)))
    return (eps.double() - scale * std * gradient.double()).to(eps.dtype)


register(Exercise(
    id="06.classifier_guidance_eps",
    title="classifier guidance on the noise prediction",
    reference=guidance.classifier_guidance_eps,
    contract="a tensor of eps's shape and dtype (float32 here)",
    cases=_classifier_cases,
    alternatives=[_classifier_float64, lambda eps, gradient, t, scale, schedule: torch.addcmul(
        eps, gather(schedule.sqrt_one_minus_alpha_bars, t, eps), gradient, value=-scale)],
    mistakes=[
        Mistake("plus sign", _classifier_with(sign=+1),
                "eps points *against* the score (eps = -sqrt(1 - abar_t) score), so adding s grad log p(y|x_t) to "
                "the score means *subtracting* s sqrt(1 - abar_t) grad from eps."),
        Mistake("no sqrt(1 - abar)", _classifier_with(factor="none"),
                "Convert the score term to eps units: multiply the gradient by sqrt(1 - abar_t) "
                "(schedule.sqrt_one_minus_alpha_bars[t], reshaped to (B, 1, ...))."),
        Mistake("1 - abar without the root", _classifier_with(factor="one_minus"),
                "The factor is the *square root* sqrt(1 - abar_t), the noise's standard deviation, not 1 - abar_t."),
        Mistake("sqrt(abar)", _classifier_with(factor="sqrt_abar"),
                "The factor is sqrt(1 - alpha_bar_t), the noise's standard deviation, not sqrt(alpha_bar_t)."),
        Mistake("float64 result", _classifier_uncast,
                "Your result is float64 because the schedule is: cast the factor to eps's dtype "
                "(.to(eps.dtype)) before multiplying."),
        Mistake("alpha_bars[t - 1]", _classifier_shifted,
                "alpha_bars[t - 1] at t = 0 is alpha_bars[-1], the noisiest value (index -1 wraps around); "
                "the noise level of x_t is that of step t itself: alpha_bars[t]."),
    ],
    hint="Return eps - scale * s_t * gradient with s_t = sqrt(1 - alpha_bar_t) of shape (B, 1, ...), in eps's dtype.",
))


# ---------------------------------------------------------------- the inpainting merge
def _merge_cases():
    schedule = NoiseSchedule.cosine(1000)
    top_half = torch.zeros(1, 1, 8, 8)
    top_half[..., :4, :] = 1
    left = torch.zeros(3, 1, 6, 6)
    left[0, ..., :3] = 1
    left[1, ..., :2] = 1
    left[2, ..., 4:] = 1
    return [Case((seeded_randn(2, 1, 8, 8, seed=37), seeded_randn(2, 1, 8, 8, seed=38), top_half, torch.tensor([999, 1]),
                  seeded_randn(2, 1, 8, 8, seed=39), NoiseSchedule.linear(1000)), label="linear T=1000, t_prev=[999, 1]"),
            Case((seeded_randn(2, 1, 8, 8, seed=31), seeded_randn(2, 1, 8, 8, seed=32), top_half, torch.tensor([400, 30]),
                  seeded_randn(2, 1, 8, 8, seed=33), schedule), label="2 digits, top half known"),
            Case((seeded_randn(3, 1, 6, 6, seed=34), seeded_randn(3, 1, 6, 6, seed=35), left, torch.tensor([900, 0, 120]),
                  seeded_randn(3, 1, 6, 6, seed=36), schedule), label="one mask per image")]


def _merge_with(inverted=False, clean=False, no_root=False):
    def wrong(x_generated, known, mask, t_prev, noise, schedule):
        if clean:
            known_t = known
        elif no_root:
            abar = gather(schedule.alpha_bars, t_prev, known)
            known_t = abar * known + (1 - abar) * noise
        else:
            known_t = q_sample(known, t_prev, noise, schedule)
        m = 1 - mask if inverted else mask
        return m * known_t + (1 - m) * x_generated
    return wrong


def _merge_uncast(x_generated, known, mask, t_prev, noise, schedule):
    abar = schedule.alpha_bars[t_prev].reshape(-1, *([1] * (known.ndim - 1)))
    return mask * (abar.sqrt() * known + (1 - abar).sqrt() * noise) + (1 - mask) * x_generated


def _merge_float64(x_generated, known, mask, t_prev, noise, schedule):
    abar = schedule.alpha_bars[t_prev].reshape(-1, *([1] * (known.ndim - 1)))
    known_t = abar.sqrt() * known.double() + (1 - abar).sqrt() * noise.double()
    return torch.where(mask.bool(), known_t, x_generated.double()).to(x_generated.dtype)


def _merge_in_place(x_generated, known, mask, t_prev, noise, schedule):
    where = mask.bool().expand_as(x_generated)
    x_generated[where] = q_sample(known, t_prev, noise, schedule)[where]
    return x_generated


register(Exercise(
    id="06.inpaint_merge",
    title="merge the known pixels into the sampler's step",
    reference=guidance.inpaint_merge,
    contract="a tensor of x_generated's shape and dtype (float32 here)",
    cases=_merge_cases,
    alternatives=[lambda x_generated, known, mask, t_prev, noise, schedule:
                  mask * q_sample(known, t_prev, noise, schedule) + (1 - mask) * x_generated, _merge_float64],
    mistakes=[
        Mistake("mask inverted", _merge_with(inverted=True),
                "mask = 1 marks the *known* pixels: take q_sample(known, ...) where mask is 1 and the sampler's "
                "x_generated where it is 0."),
        Mistake("clean known pixels", _merge_with(clean=True),
                "At step t_prev the sampler's image is noisy. Paste in the known pixels noised to the same level, "
                "q_sample(known, t_prev, noise, schedule), not the clean ones: otherwise the seam is visible."),
        Mistake("noised without square roots", _merge_with(no_root=True),
                "Noise the known pixels with the forward process: sqrt(abar) known + sqrt(1 - abar) noise "
                "(square roots; use forward.q_sample)."),
        Mistake("float64 result", _merge_uncast,
                "Your result is float64 because the schedule is: cast alpha_bar to the images' dtype "
                "(.to(known.dtype)), or use forward.q_sample, which does."),
        Mistake("x_generated changed in place", _merge_in_place,
                "Assigning into x_generated (x_generated[mask] = ...) changes the sampler's tensor. Build a new "
                "one: mask * known_t + (1 - mask) * x_generated, or torch.where."),
    ],
    hint="known_t = q_sample(known, t_prev, noise, schedule); return mask * known_t + (1 - mask) * x_generated.",
))
