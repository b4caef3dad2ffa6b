"""Guidance: steer a trained noise predictor towards a class, or towards agreeing with known pixels.

    guided_eps                 the classifier-free guidance formula (Ho & Salimans 2022, in diffusers' convention)
    cfg_model                  a class-conditional net turned into a guided model(x_t, t)
    classifier_gradient        grad_{x_t} log p_phi(y | x_t, t) by autograd
    classifier_guidance_eps    the classifier-guidance formula (Dhariwal & Nichol 2021, Alg. 2 / eq. 14)
    classifier_guided_model    an unconditional model pushed along a classifier's gradient
    inpaint_merge              the replacement formula: noised known pixels where known, the sampler's elsewhere
    inpaint                    fill in unknown pixels: the replacement method, with optional RePaint resampling

Conventions (as in the rest of course_lib, and diffusers):
* Timesteps are 0-based, t in {0, ..., T-1}; ``t_prev = -1`` stands for clean data.
* A model is a callable ``model(x_t, t) -> eps`` with x_t (B, ...) float and t int64 (B,); the wrappers
  here return such callables, so they plug into ``sampling.sample`` unchanged. The wrappers check their
  settings when they are built; the formulas trust their inputs.
* Class labels are int64 (B,) in {0, ..., num_classes - 1}; the "no label" class of a classifier-free
  net is ``null_class`` (for ``unet.UNet`` that is ``num_classes``).
* Guidance scale w (diffusers' ``guidance_scale``), for classifier-free and classifier guidance alike: w = 0 is
  the unconditional model, w = 1 the plain conditional one, w > 1 sharpens. Ho & Salimans (2022, eq. 6) write
  (1 + w') eps_cond - w' eps_uncond: their w' is w - 1. Dhariwal & Nichol (2021) call the classifier scale s.
  For w != 1 each step follows the score of p_t(x_t) p_t(y | x_t)^w, but the samples are not distributed as
  p(x) p(y | x)^w: those tilted noisy densities are not the marginals of one diffusion (Chidambaram et al.
  2024; notebook 06 measures the overshoot on an exact 1-D mixture).
"""
from __future__ import annotations

import math

import torch

from . import _validate as check
from .forward import model_eps, q_sample
from .sampling import SampleResult, ddpm_step_fn, gaussian_like, run_reverse, sampler_plan
from .schedules import NoiseSchedule, gather, timestep_tensor


def _labels_for(y, x_t: torch.Tensor) -> torch.Tensor:
    """Checked labels (an int, or a CPU int64 tensor) as int64 (B,) on x_t's device: one int is repeated B times."""
    if isinstance(y, torch.Tensor) and y.shape[0] != x_t.shape[0]:
        raise ValueError(f"y holds {y.shape[0]} labels but x_t holds a batch of {x_t.shape[0]}; pass one label per "
                         f"item or a single int for all")
    return torch.as_tensor(y, dtype=torch.int64, device=x_t.device).reshape(-1).expand(x_t.shape[0])


# ---------------------------------------------------------------- classifier-free guidance
def guided_eps(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance in diffusers' convention (Ho & Salimans 2022 write their eq. 6 as
    (1 + w') eps_cond - w' eps_uncond, the same with w' = w - 1):

        eps_tilde = eps_uncond + w (eps_cond - eps_uncond)

    w = 0: unconditional; w = 1: conditional; w > 1 extrapolates away from the unconditional prediction,
    which in score terms adds (w - 1) grad log p(y | x_t), the gradient of an implicit classifier.
    eps_cond, eps_uncond: (B, ...) of one shape. Returns (B, ...).
    """
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def cfg_model(model, y, guidance_scale: float, null_class: int):
    """A classifier-free guided noise predictor ``(x_t, t) -> eps_tilde`` built from a class-conditional net.

    model: ``model(x, t, y=labels) -> eps`` trained with some labels replaced by ``null_class``
        (``unet.UNet(num_classes=N)``: null_class = N). Both branches run in one call on a doubled batch
        [x_t; x_t] with labels [y; null], then the output is split and combined by ``guided_eps``.
    y: the wanted class, an int for the whole batch or an int64 tensor (B,), in 0..null_class-1.
    guidance_scale: w >= 0 (see ``guided_eps``).
    The returned callable takes x_t (B, ...) and t (int or int64 (B,)) and returns eps_tilde (B, ...).
    """
    check.require_callable(model, "model", "model(x, t, y=labels) -> eps")
    null_class = check.require_int(null_class, "null_class", minimum=1)
    y = check.require_labels(y, num_classes=null_class)
    w = check.require_number(guidance_scale, "guidance_scale", low=0.0)

    def guided(x_t: torch.Tensor, t) -> torch.Tensor:
        labels, steps = _labels_for(y, x_t), timestep_tensor(t, x_t)
        eps = model_eps(model, torch.cat([x_t, x_t]), torch.cat([steps, steps]),
                        y=torch.cat([labels, torch.full_like(labels, null_class)]))
        eps_cond, eps_uncond = eps.chunk(2)
        return guided_eps(eps_cond, eps_uncond, w)

    return guided


# ---------------------------------------------------------------- classifier guidance
def classifier_gradient(classifier_log_prob, x_t: torch.Tensor, t, y) -> torch.Tensor:
    """grad_{x_t} log p_phi(y | x_t, t), per item: (B, ...), x_t's dtype.

    classifier_log_prob: ``(x_t, t) -> (B, num_classes)`` log-probabilities (log_softmax of logits).
    y: an int or int64 (B,). Gradients are switched on here, so this works inside ``sample``'s
    torch.no_grad(). Items do not interact, so the gradient of the batch sum is each item's own gradient.
    """
    labels = _labels_for(y, x_t)
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_probs = classifier_log_prob(x, t)
        if not isinstance(log_probs, torch.Tensor) or log_probs.ndim != 2 or log_probs.shape[0] != x.shape[0]:
            got = tuple(log_probs.shape) if isinstance(log_probs, torch.Tensor) else type(log_probs).__name__
            raise ValueError(f"classifier_log_prob must return log-probabilities of shape ({x.shape[0]}, "
                             f"num_classes), got {got}")
        if labels.max() >= log_probs.shape[1]:
            raise ValueError(f"label {labels.max().item()} is out of range for a classifier with "
                             f"{log_probs.shape[1]} classes")
        (gradient,) = torch.autograd.grad(log_probs.gather(1, labels[:, None]).sum(), x)
    return gradient


def classifier_guidance_eps(eps: torch.Tensor, gradient: torch.Tensor, t, scale: float,
                            schedule: NoiseSchedule) -> torch.Tensor:
    """Classifier guidance on the noise prediction (Dhariwal & Nichol 2021, eq. 14 / Alg. 2):

        eps_tilde = eps - w sqrt(1 - abar_t) grad_{x_t} log p_phi(y | x_t, t)      (w = ``scale``; their s)

    Since eps = -sqrt(1 - abar_t) score, this adds w grad log p(y | x_t) to the score.
    eps, gradient: (B, ...); t: int or (B,). Returns (B, ...).
    """
    return eps - scale * gather(schedule.sqrt_one_minus_alpha_bars, t, eps) * gradient


def classifier_guided_model(model, classifier_log_prob, y, scale: float, schedule: NoiseSchedule):
    """A classifier-guided noise predictor ``(x_t, t) -> eps_tilde`` (``classifier_guidance_eps``).

    At w = 1, with the exact unconditional eps and the exact noisy classifier, it is exactly the
    class-conditional eps (Bayes: grad log p(x_t | y) = grad log p(x_t) + grad log p(y | x_t)); w > 1 sharpens.
    model: ``model(x_t, t) -> eps`` (unconditional). classifier_log_prob: ``(x_t, t) -> (B, num_classes)``
    log-probabilities of a classifier trained on noisy inputs. y: an int or int64 (B,). scale: w >= 0.
    """
    check.require_callable(model, "model", "model(x_t, t) -> eps")
    check.require_callable(classifier_log_prob, "classifier_log_prob",
                           "classifier_log_prob(x_t, t) -> (B, num_classes)")
    y = check.require_labels(y)
    s = check.require_number(scale, "scale", low=0.0)
    check.require_schedule(schedule)

    def guided(x_t: torch.Tensor, t) -> torch.Tensor:
        gradient = classifier_gradient(classifier_log_prob, x_t, t, y)
        return classifier_guidance_eps(model(x_t, t), gradient, t, s, schedule)

    return guided


# ---------------------------------------------------------------- inpainting
def inpaint_merge(x_generated: torch.Tensor, known: torch.Tensor, mask: torch.Tensor, t_prev, noise: torch.Tensor,
                  schedule: NoiseSchedule) -> torch.Tensor:
    """The replacement step (Song et al. 2021, app. I; RePaint, Lugmayr et al. 2022, eq. 8):

        x_prev = mask * q_sample(known, t_prev, noise) + (1 - mask) * x_generated

    mask: 1 (or True) = known pixel, broadcastable to known (B, ...); x_generated: the sampler's x_{t_prev};
    t_prev: int or (B,) in 0..T-1. Returns (B, ...).
    """
    return torch.where(mask.bool(), q_sample(known, t_prev, noise, schedule), x_generated)


def _check_mask(mask, known: torch.Tensor) -> torch.Tensor:
    """mask as a bool tensor broadcastable to known (True = known pixel); it must hold only 0 and 1."""
    check.require_tensor(mask, "mask")
    try:
        shape = torch.broadcast_shapes(mask.shape, known.shape)
    except RuntimeError:
        shape = None
    if shape != known.shape:
        raise ValueError(f"mask must have known's shape {tuple(known.shape)} or broadcast to it "
                         f"(e.g. (1, 1, H, W)), got {tuple(mask.shape)}")
    if mask.dtype != torch.bool and not torch.all((mask == 0) | (mask == 1)):
        raise ValueError("mask must hold only 0 (unknown, to generate) and 1 (known, kept)")
    return mask.to(device=known.device, dtype=torch.bool)


def forward_jump(x: torch.Tensor, t_from: int, t_to: int, schedule: NoiseSchedule, generator) -> torch.Tensor:
    """Sample q(x_{t_to} | x_{t_from}) = N(sqrt(abar_to / abar_from) x, (1 - abar_to / abar_from) I), t_from < t_to
    (DDPM eq. 4 between two noise levels; t_from = -1: clean data). RePaint's jump back up (Lugmayr et al. 2022)."""
    alpha_bar_from = 1.0 if t_from < 0 else schedule.alpha_bars[t_from].item()
    ratio = schedule.alpha_bars[t_to].item() / alpha_bar_from
    return math.sqrt(ratio) * x + math.sqrt(1 - ratio) * gaussian_like(x, generator)


def inpaint(model, schedule: NoiseSchedule, known: torch.Tensor, mask: torch.Tensor, steps: int | None = None,
            sampler: str = "ddpm", eta: float = 0.0, seed: int | torch.Generator | None = None, resample: int = 1,
            clip_x0: bool = False, progress: bool = True, trajectory: bool = False) -> SampleResult:
    """Fill in the pixels where mask = 0 so that they agree with ``known`` where mask = 1.

    Replacement method: from x_T ~ N(0, I), each step t -> t_prev runs the sampler on the whole image, then
    ``inpaint_merge`` overwrites the known region with a fresh forward sample of the known pixels at t_prev.
    At t_prev = -1 the known region is ``known`` itself, so the result equals ``known`` exactly on the mask.
    The method is approximate: the generated region only learns about the known one through the model's
    next prediction, so its samples drift from the true conditional p(x_unknown | x_known). RePaint's
    resampling (``resample = r > 1``) reduces this: each step is done r times, the first r - 1 followed by a
    jump back to t with the forward kernel q(x_t | x_{t_prev}), so the two regions can harmonise.

    known: (B, ...) float (values under mask = 0 are ignored); mask: 0/1 (or bool) of known's shape or
    broadcastable to it, 1 = known. sampler, steps, eta, clip_x0, progress, trajectory: as in
    ``sampling.sample``. seed: int, CPU Generator or None; x_T is drawn first, then the noise of each step in
    order, so a seed fixes the result. Model calls: steps * resample.
    Returns a ``SampleResult`` whose images (B, ...) have known's dtype and device.
    """
    check.require_callable(model, "model", "model(x_t, t) -> eps")
    check.require_schedule(schedule)
    check.require_float_tensor(known, "known")
    mask = _check_mask(mask, known)
    plan = sampler_plan(sampler, schedule.T, steps, eta)
    resample = check.require_int(resample, "resample", minimum=1)
    generator = check.make_generator(seed)

    def eps_fn(x_t, t):
        return model_eps(model, x_t, t)

    if sampler == "ddpm":
        sampler_step = ddpm_step_fn(eps_fn, schedule, clip_x0)
    else:
        from .ddim import ddim_step_fn
        sampler_step = ddim_step_fn(eps_fn, schedule, eta, clip_x0)

    def step(x, t, t_prev, generator):
        for attempt in range(resample):
            if attempt > 0:
                x = forward_jump(x_prev, t_prev, t, schedule, generator)
            generated, x0_hat = sampler_step(x, t, t_prev, generator)
            if t_prev < 0:
                x_prev = torch.where(mask, known, generated)
            else:
                x_prev = inpaint_merge(generated, known, mask, t_prev, gaussian_like(known, generator), schedule)
        return x_prev, x0_hat

    return run_reverse(model, gaussian_like(known, generator), plan, step, generator, progress, "inpainting",
                       trajectory)
