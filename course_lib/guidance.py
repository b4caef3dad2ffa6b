"""Guidance: steer a trained noise predictor towards a class, or towards agreeing with known pixels.

    guided_eps                 the classifier-free guidance formula
    cfg_model                  a class-conditional net turned into a guided model(x_t, t) (Ho & Salimans 2022)
    classifier_gradient        grad_{x_t} log p_phi(y | x_t, t) by autograd
    classifier_guided_model    an unconditional model pushed along a classifier's gradient (Dhariwal & Nichol 2021)
    inpaint                    fill in unknown pixels: the replacement method, with optional RePaint resampling

Conventions (as in the rest of course_lib, and diffusers):
* Timesteps are 0-based, t in {0, ..., T-1}; ``t_prev = -1`` stands for clean data.
* A model is a callable ``model(x_t, t) -> eps`` with x_t (B, ...) float and t int64 (B,); the functions
  here return such callables, so they plug into ``sampling.sample`` unchanged.
* Class labels are int64 (B,) in {0, ..., num_classes - 1}; the "no label" class of a classifier-free
  net is ``null_class`` (for ``unet.UNet`` that is ``num_classes``).
* Guidance scale w (diffusers' ``guidance_scale``): w = 0 is the unconditional model, w = 1 the plain
  conditional one, w > 1 sharpens. Some papers write (1 + w') eps_cond - w' eps_uncond; there w' = w - 1.
"""
from __future__ import annotations

import math

import torch

from ._validate import require_choice, require_float_tensor, require_int, require_tensor
from .forward import q_sample
from .sampling import (SAMPLERS, evaluation_mode, make_generator, sampling_plan, predict_noise, ddim_step,
                       ddpm_step)
from .schedules import NoiseSchedule, gather, require_schedule


# ---------------------------------------------------------------- input checks
def _check_scale(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number >= 0, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def _check_callable(fn, name: str, signature: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be callable as {signature}, got {type(fn).__name__}")


def _check_labels(y, num_classes: int | None = None):
    """y: an int, or an integer tensor of shape (B,), with labels in 0..num_classes-1 (when num_classes is given).

    Returns an int or a CPU int64 tensor of shape (B,).
    """
    if isinstance(y, bool):
        raise TypeError("y must be an int label or an int64 tensor of labels of shape (B,), got bool")
    if isinstance(y, int):
        labels = torch.tensor([y])
    elif isinstance(y, torch.Tensor):
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"y must hold integer class labels (int64), got dtype {y.dtype}")
        if y.ndim != 1 or y.numel() == 0:
            raise ValueError(f"y must be an int or a tensor of labels of shape (B,), got shape {tuple(y.shape)}")
        labels = y = y.detach().to(device="cpu", dtype=torch.int64)
    else:
        raise TypeError(f"y must be an int label or an int64 tensor of labels of shape (B,), got {type(y).__name__}")
    if labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes):
        upper = "" if num_classes is None else f"..{num_classes - 1}"
        raise ValueError(f"class labels must lie in 0{upper}, got values from {labels.min().item()} "
                         f"to {labels.max().item()}")
    return y


def _labels_for(y, x_t: torch.Tensor) -> torch.Tensor:
    """The checked labels as an int64 tensor of shape (B,) on x_t's device: one int is repeated B times."""
    batch = x_t.shape[0]
    if isinstance(y, int):
        return torch.full((batch,), y, dtype=torch.int64, device=x_t.device)
    if y.shape[0] != batch:
        raise ValueError(f"y holds {y.shape[0]} labels but x_t holds a batch of {batch}; pass one label per "
                         f"item or a single int for all")
    return y.to(x_t.device)


def _timesteps_for(t, x_t: torch.Tensor) -> torch.Tensor:
    """t (an int, or an integer tensor of shape () or (B,)) as int64 (B,) on x_t's device."""
    if isinstance(t, bool) or not isinstance(t, (int, torch.Tensor)):
        raise TypeError(f"t must be an int or an int64 tensor of shape (B,), got {type(t).__name__}")
    t = torch.as_tensor(t, device=x_t.device)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer timesteps, got dtype {t.dtype}")
    t = t.to(torch.int64).reshape(-1)
    if t.numel() not in (1, x_t.shape[0]):
        raise ValueError(f"t must hold 1 or {x_t.shape[0]} timesteps (one per batch item), got {t.numel()}")
    return t.expand(x_t.shape[0])


# ---------------------------------------------------------------- classifier-free guidance
def guided_eps(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6, diffusers' convention):

        eps_tilde = eps_uncond + w (eps_cond - eps_uncond)

    w = 0: unconditional; w = 1: conditional; w > 1 extrapolates away from the unconditional prediction,
    which in score terms adds (w - 1) grad log p(y | x_t), the gradient of an implicit classifier.
    eps_cond, eps_uncond: (B, ...) of one shape. Returns (B, ...).
    """
    require_float_tensor(eps_cond, "eps_cond")
    require_float_tensor(eps_uncond, "eps_uncond")
    if eps_cond.shape != eps_uncond.shape:
        raise ValueError(f"eps_cond and eps_uncond must have one shape, got {tuple(eps_cond.shape)} "
                         f"and {tuple(eps_uncond.shape)}")
    w = _check_scale(guidance_scale, "guidance_scale")
    return eps_uncond + w * (eps_cond - eps_uncond)


def cfg_model(model, y, guidance_scale: float, null_class: int):
    """A classifier-free guided noise predictor ``(x_t, t) -> eps_tilde`` built from a class-conditional net.

    model: ``model(x, t, y=labels) -> eps`` trained with some labels replaced by ``null_class``
        (``unet.UNet(num_classes=N)``: null_class = N). Both branches run in one call on a doubled batch
        [x_t; x_t] with labels [y; null], then the output is split and combined by ``guided_eps``.
    y: the wanted class, an int for the whole batch or an int64 tensor (B,), in 0..null_class-1.
    guidance_scale: w >= 0 (see ``guided_eps``).
    The returned callable takes x_t (B, ...) and t (int or int64 (B,)) and returns eps_tilde (B, ...).
    """
    _check_callable(model, "model", "model(x, t, y=labels) -> eps")
    null_class = require_int(null_class, "null_class", minimum=1)
    y = _check_labels(y, num_classes=null_class)
    w = _check_scale(guidance_scale, "guidance_scale")

    def guided(x_t: torch.Tensor, t) -> torch.Tensor:
        require_float_tensor(x_t, "x_t")
        labels, steps = _labels_for(y, x_t), _timesteps_for(t, x_t)
        eps = model(torch.cat([x_t, x_t]), torch.cat([steps, steps]),
                    y=torch.cat([labels, torch.full_like(labels, null_class)]))
        if not isinstance(eps, torch.Tensor) or eps.shape != (2 * x_t.shape[0], *x_t.shape[1:]):
            got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
            raise ValueError(f"model must return eps of its input's shape {(2 * x_t.shape[0], *x_t.shape[1:])} "
                             f"for the doubled batch, got {got}")
        eps_cond, eps_uncond = eps.chunk(2)
        return guided_eps(eps_cond, eps_uncond, w)

    return guided


# ---------------------------------------------------------------- classifier guidance
def classifier_gradient(classifier_log_prob, x_t: torch.Tensor, t, y) -> torch.Tensor:
    """grad_{x_t} log p_phi(y | x_t, t), per item: (B, ...), x_t's dtype.

    classifier_log_prob: ``(x_t, t) -> (B, num_classes)`` log-probabilities (log_softmax of logits).
    Gradients are switched on here, so this works inside ``sample``'s torch.no_grad(). Items do not
    interact, so the gradient of the batch sum is each item's own gradient.
    """
    _check_callable(classifier_log_prob, "classifier_log_prob", "classifier_log_prob(x_t, t) -> (B, num_classes)")
    require_float_tensor(x_t, "x_t")
    labels = _labels_for(_check_labels(y), x_t)
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


def classifier_guided_model(model, classifier_log_prob, y, scale: float, schedule: NoiseSchedule):
    """A classifier-guided noise predictor ``(x_t, t) -> eps_tilde`` (Dhariwal & Nichol 2021, Alg. 2 / eq. 14):

        eps_tilde = eps_theta(x_t, t) - s sqrt(1 - abar_t) grad_{x_t} log p_phi(y | x_t, t)

    Since eps = -sqrt(1 - abar_t) score, this adds s grad log p(y | x_t) to the score: at s = 1, with the
    exact unconditional eps and the exact noisy classifier, it is exactly the class-conditional eps
    (Bayes: grad log p(x_t | y) = grad log p(x_t) + grad log p(y | x_t)); s > 1 sharpens.
    model: ``model(x_t, t) -> eps`` (unconditional). classifier_log_prob: ``(x_t, t) -> (B, num_classes)``
    log-probabilities of a classifier trained on noisy inputs. y: an int or int64 (B,). scale: s >= 0.
    """
    _check_callable(model, "model", "model(x_t, t) -> eps")
    _check_callable(classifier_log_prob, "classifier_log_prob", "classifier_log_prob(x_t, t) -> (B, num_classes)")
    y = _check_labels(y)
    s = _check_scale(scale, "scale")
    require_schedule(schedule)

    def guided(x_t: torch.Tensor, t) -> torch.Tensor:
        eps = model(x_t, t)
        gradient = classifier_gradient(classifier_log_prob, x_t, t, y)
        return eps - s * gather(schedule.sqrt_one_minus_alpha_bars, t, x_t) * gradient

    return guided


# ---------------------------------------------------------------- inpainting
def _check_mask(mask, known: torch.Tensor) -> torch.Tensor:
    """mask as a bool tensor broadcastable to known (True = known pixel); it must hold only 0 and 1."""
    require_tensor(mask, "mask")
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


def _forward_jump(x: torch.Tensor, t_from: int, t_to: int, schedule: NoiseSchedule, generator) -> torch.Tensor:
    """Sample q(x_{t_to} | x_{t_from}) = N(sqrt(abar_to / abar_from) x, (1 - abar_to / abar_from) I), t_from < t_to.

    The forward process run from t_from (-1: clean data) to t_to; one DDPM step back up when t_to = t_from + 1.
    """
    alpha_bar_from = 1.0 if t_from < 0 else schedule.alpha_bars[t_from].item()
    ratio = schedule.alpha_bars[t_to].item() / alpha_bar_from
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return math.sqrt(ratio) * x + math.sqrt(1 - ratio) * noise


def inpaint(model, schedule: NoiseSchedule, known: torch.Tensor, mask: torch.Tensor, steps: int | None = None,
            sampler: str = "ddpm", eta: float = 0.0, seed: int | torch.Generator | None = None, resample: int = 1,
            clip_x0: bool = False, progress: bool = True) -> torch.Tensor:
    """Fill in the pixels where mask = 0 so that they agree with ``known`` where mask = 1.

    Replacement method (Song et al. 2021, app. I; RePaint, Lugmayr et al. 2022, eq. 8): from x_T ~ N(0, I),
    each step t -> t_prev runs the sampler on the whole image, then overwrites the known region with a
    fresh forward sample of the known pixels at t_prev:

        x_prev = mask * q_sample(known, t_prev, z) + (1 - mask) * step(x_t, eps_theta(x_t, t))

    At t_prev = -1 the known region is ``known`` itself, so the result equals ``known`` exactly on the mask.
    The method is approximate: the generated region only learns about the known one through the model's
    next prediction, so its samples drift from the true conditional p(x_unknown | x_known). RePaint's
    resampling (``resample = r > 1``) reduces this: each step is done r times, the first r - 1 followed by a
    jump back to t with the forward kernel q(x_t | x_{t_prev}), so the two regions can harmonise.

    known: (B, ...) float (values under mask = 0 are ignored); mask: 0/1 (or bool) of known's shape or
    broadcastable to it, 1 = known. sampler, steps, eta: as in ``sampling.sample`` (DDPM visits every
    timestep; DDIM ``steps`` of them with noise scale eta); clip_x0 clamps each step's x0 estimate to
    [-1, 1], as in ``sampling.sample`` (needed by few-step DDIM on schedules ending near abar = 0). seed: int, CPU Generator or None; x_T is drawn
    first, then the noise of each step in order, so a seed fixes the result. Model calls: steps * resample.
    Returns the inpainted samples (B, ...) in known's dtype and device.
    """
    _check_callable(model, "model", "model(x_t, t) -> eps")
    require_schedule(schedule)
    require_float_tensor(known, "known")
    mask = _check_mask(mask, known)
    require_choice(sampler, "sampler", SAMPLERS)
    pairs = sampling_plan(sampler, schedule.T, steps, eta)
    resample = require_int(resample, "resample", minimum=1)
    generator = make_generator(seed)

    from tqdm.auto import tqdm      # imported here: only runs need it
    x = torch.randn(known.shape, generator=generator, dtype=known.dtype).to(known.device)
    with evaluation_mode(model):
        for t, t_prev in tqdm(pairs, desc="inpainting", unit="step", disable=not progress):
            for attempt in range(resample):
                if attempt > 0:
                    x = _forward_jump(x_prev, t_prev, t, schedule, generator)
                eps = predict_noise(model, x, t, {})
                if sampler == "ddpm":
                    generated = ddpm_step(x, t, eps, schedule, clip_x0=clip_x0, generator=generator)
                else:
                    generated = ddim_step(x, t, t_prev, eps, schedule, eta=eta, clip_x0=clip_x0, generator=generator)
                known_prev = known if t_prev < 0 else q_sample(
                    known, t_prev, torch.randn(known.shape, generator=generator, dtype=known.dtype).to(known.device),
                    schedule)
                x_prev = torch.where(mask, known_prev, generated)
            x = x_prev
    return x
