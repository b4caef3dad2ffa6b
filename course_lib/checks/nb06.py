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
    cases=_cfg_cases,
    mistakes=[
        Mistake("(1 + w) convention", lambda c, u, w: (1 + w) * c - w * u,
                "This course uses diffusers' convention: eps_uncond + w (eps_cond - eps_uncond), so w = 1 is the "
                "plain conditional model. (1 + w) eps_cond - w eps_uncond is the same family with w shifted by 1."),
        Mistake("branches swapped", lambda c, u, w: c + w * (u - c),
                "Start from the unconditional prediction and move towards (and past) the conditional one: "
                "eps_uncond + w * (eps_cond - eps_uncond). You swapped the two branches."),
        Mistake("no baseline", lambda c, u, w: w * (c - u),
                "The difference eps_cond - eps_uncond is only the push; add it (times w) to eps_uncond."),
    ],
    hint="Return eps_uncond + guidance_scale * (eps_cond - eps_uncond).",
))


# ---------------------------------------------------------------- one batched call for both branches
def _toy_net(x, t, y):
    """A fixed stand-in for a class-conditional U-Net: depends on x, t and the label (null class included)."""
    shape = (-1, *([1] * (x.ndim - 1)))
    return torch.tanh(x) + 0.01 * t.to(x.dtype).reshape(shape) + 0.1 * (y.to(x.dtype) + 1).reshape(shape)


def _reference_cfg_batch(model, x_t, t, y, guidance_scale, null_class):
    return guidance.cfg_model(model, y, guidance_scale, null_class)(x_t, t)


def _cfg_batch_cases():
    return [Case((_toy_net, seeded_randn(4, 1, 8, 8, seed=11), torch.tensor([999, 500, 10, 0]), torch.tensor([3, 0, 9, 1]),
                  2.0, 10), label="4 digits, w=2, null class 10"),
            Case((_toy_net, seeded_randn(3, 2, seed=12), torch.tensor([5, 5, 5]), torch.tensor([1, 0, 2]), 4.0, 3),
                 label="3 points, w=4, null class 3")]


def _cfg_batch_with(null=None, swap=False, shifted=False):
    def wrong(model, x_t, t, y, guidance_scale, null_class):
        labels = torch.cat([y, torch.full_like(y, null_class if null is None else null)])
        eps = model(torch.cat([x_t, x_t]), torch.cat([t, t]), y=labels)
        eps_cond, eps_uncond = eps.chunk(2)
        if swap:
            eps_cond, eps_uncond = eps_uncond, eps_cond
        if shifted:
            return (1 + guidance_scale) * eps_cond - guidance_scale * eps_uncond
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)
    return wrong


register(Exercise(
    id="06.cfg_batch",
    title="both CFG branches in one batched call",
    reference=_reference_cfg_batch,
    cases=_cfg_batch_cases,
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
                 label="3 digits, s=1, linear")]


def _classifier_with(sign=-1, factor="sqrt_one_minus"):
    def wrong(eps, gradient, t, scale, schedule):
        abar = gather(schedule.alpha_bars, t, eps)
        coefficient = {"sqrt_one_minus": (1 - abar).sqrt(), "one_minus": 1 - abar, "sqrt_abar": abar.sqrt(),
                       "none": torch.ones_like(abar)}[factor]
        return eps + sign * scale * coefficient * gradient
    return wrong


register(Exercise(
    id="06.classifier_guidance_eps",
    title="classifier guidance on the noise prediction",
    reference=guidance.classifier_guidance_eps,
    cases=_classifier_cases,
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
    return [Case((seeded_randn(2, 1, 8, 8, seed=31), seeded_randn(2, 1, 8, 8, seed=32), top_half, torch.tensor([400, 30]),
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


register(Exercise(
    id="06.inpaint_merge",
    title="merge the known pixels into the sampler's step",
    reference=guidance.inpaint_merge,
    cases=_merge_cases,
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
    ],
    hint="known_t = q_sample(known, t_prev, noise, schedule); return mask * known_t + (1 - mask) * x_generated.",
))
