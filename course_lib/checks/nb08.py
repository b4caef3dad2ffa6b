"""Exercises of notebook 08, the capstone: the mirrored sprite mask, the latent scale factor, one latent-diffusion
loss, the GAN's discriminator loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import autoencoder, gan, sprites, training
from ..forward import q_sample
from ..schedules import NoiseSchedule
from ._framework import Case, Exercise, Mistake, register, seeded_generator, seeded_randn


# ---------------------------------------------------------------- the mirror-symmetric mask
def _mask_cases():
    def bits(*shape, seed):
        return torch.rand(*shape, generator=seeded_generator(seed)) < 0.5
    return [Case((bits(3, 16, 8, seed=1),), label="3 sprites, 16x8 halves"),
            Case((bits(2, 5, 3, seed=2),), label="2 masks, 5x3 halves"),
            Case((bits(7, 4, seed=3),), label="one 7x4 half")]


register(Exercise(
    id="08.mirrored_mask",
    title="mirror the left half of a sprite mask",
    reference=sprites.mirrored_mask,
    contract="a bool tensor (..., H, W): the half, then half.flip(-1), joined along the last dimension",
    cases=_mask_cases,
    alternatives=[lambda half: torch.cat((half, torch.flip(half, dims=[-1])), -1),
                  lambda half: torch.cat([half, half[..., list(range(half.shape[-1] - 1, -1, -1))]], dim=-1)],
    mistakes=[
        Mistake("tiled, not mirrored", lambda half: torch.cat([half, half], dim=-1),
                "Putting the half twice side by side repeats it; a mirror image reverses the column order: "
                "the right half is half.flip(-1)."),
        Mistake("flipped upside down", lambda half: torch.cat([half, half.flip(-2)], dim=-1),
                "flip(-2) reverses the rows (upside down). Left-right symmetry reverses the columns: flip(-1)."),
        Mistake("mirror on the left", lambda half: torch.cat([half.flip(-1), half], dim=-1),
                "The given half is the LEFT half: it stays where it is, and its mirror image goes to its right: "
                "torch.cat([half, half.flip(-1)], dim=-1)."),
        Mistake("stacked below", lambda half: torch.cat([half, half.flip(-1)], dim=-2),
                "dim=-2 stacks the mirror image below (the result is 2H tall). Join along the width: dim=-1."),
        Mistake("shared middle column", lambda half: torch.cat([half, half.flip(-1)[..., 1:]], dim=-1),
                "The sprite is W = 2 * (W/2) wide with the axis between two columns, so nothing is shared: "
                "keep all W/2 mirrored columns (dropping one gives an odd width)."),
    ],
    hint="Return torch.cat([half, half.flip(-1)], dim=-1): the half, then its left-right mirror image.",
))


# ---------------------------------------------------------------- the latent scale factor
def _latent_cases():
    return [Case((seeded_randn(8, 4, 8, 8, seed=1) * 3.0 + 0.8,), label="8 latents (4, 8, 8), std 3, mean 0.8"),
            Case((seeded_randn(6, 4, 3, 3, seed=2) * 0.2 - 0.3,), label="6 latents (4, 3, 3), std 0.2, mean -0.3"),
            Case((seeded_randn(16, 2, 4, 4, seed=3) * torch.tensor([1.0, 5.0]).reshape(1, 2, 1, 1),),
                 label="16 latents whose two channels have std 1 and 5")]


register(Exercise(
    id="08.latent_scale_factor",
    title="the latent scale factor",
    reference=autoencoder.latent_scale_factor,
    contract="a 0-d float tensor: 1 / (standard deviation of all elements of latents)",
    cases=_latent_cases,
    alternatives=[lambda z: z.std().reciprocal(),
                  lambda z: 1 / ((z - z.mean()) ** 2).mean().sqrt()],
    rtol=5e-3,                      # std with or without Bessel's correction: both are right
    mistakes=[
        Mistake("the std itself", lambda z: z.std(),
                "The factor multiplies the latents to give them std 1, so it is 1 / std, not std."),
        Mistake("1 / variance", lambda z: 1 / z.var(),
                "Scaling by s multiplies the std by s (the variance by s^2): s = 1 / std, not 1 / var."),
        Mistake("per channel", lambda z: 1 / z.std(dim=(0, 2, 3)),
                "One number for all latents (Rombach et al. use a single scalar): the std over every element, "
                "z.std(), not one per channel."),
        Mistake("root mean square", lambda z: 1 / z.pow(2).mean().sqrt(),
                "sqrt(mean(z^2)) is the root mean square, which includes the mean: the std measures the spread "
                "around the mean, z.std()."),
        Mistake("mean absolute value", lambda z: 1 / z.abs().mean(),
                "mean |z| is not the standard deviation (for a Gaussian it is 0.8 std). Use z.std()."),
        Mistake("range", lambda z: 2 / (z.max() - z.min()),
                "Squeezing the range into [-1, 1] depends on the two most extreme latents; the schedules assume "
                "unit variance: 1 / z.std()."),
    ],
    hint="Return 1 / latents.std(): one 0-d tensor; multiplying the latents by it gives them std 1.",
))


# ---------------------------------------------------------------- one latent-diffusion loss
def latent_diffusion_loss(ae, model, x0, scale, t, noise, schedule):
    """L_simple on scaled latents: z0 = scale * mean of q(z | x0); (model(q_sample(z0, t, noise), t) - noise)^2 averaged."""
    z0 = scale * ae.encode(x0)[0]
    return training.diffusion_loss(model, z0, schedule, t=t, noise=noise)


def _latent_loss_alternative(ae, model, x0, scale, t, noise, schedule):
    z0 = ae.encode(x0)[0] * scale
    return F.mse_loss(model(q_sample(z0, t, noise, schedule), t), noise)


def _toy_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for a network that depends on x_t and t, so every mistake changes the loss."""
    return 0.5 * x_t + 0.001 * t.to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))


def _tiny_autoencoder(seed: int) -> autoencoder.Autoencoder:
    torch.manual_seed(seed)
    model = autoencoder.Autoencoder(latent_channels=2, width=4).eval()
    with torch.no_grad():     # larger log-variances than at initialisation: mistakes using them stand out
        model.encoder[-1].bias[2:] += 1.0
    return model


def _latent_loss_cases():
    rng_state = torch.get_rng_state()
    try:
        ae_a, ae_b = _tiny_autoencoder(0), _tiny_autoencoder(1)
    finally:
        torch.set_rng_state(rng_state)
    return [Case((ae_a, _toy_model, seeded_randn(4, 3, 8, 8, seed=1).clamp(-1, 1), 2.5, torch.tensor([0, 10, 500, 999]),
                  seeded_randn(4, 2, 2, 2, seed=2), NoiseSchedule.linear(1000)), label="4 pictures 8x8, scale 2.5"),
            Case((ae_b, _toy_model, seeded_randn(3, 3, 12, 12, seed=3).clamp(-1, 1), 0.4, torch.tensor([49, 1, 20]),
                  seeded_randn(3, 2, 3, 3, seed=4), NoiseSchedule.cosine(50)), label="3 pictures 12x12, scale 0.4")]


def _latent_loss_with(latent="mean", scaling="times", target="eps", root=True, scale_after=False):
    def wrong(ae, model, x0, scale, t, noise, schedule):
        mean, logvar = ae.encode(x0)
        z = mean if latent == "mean" else logvar
        z = {"times": scale * z, "none": z, "divide": z / scale}[scaling] if not scale_after else z
        abar = schedule.alpha_bars[t].to(z.dtype).reshape(-1, 1, 1, 1)
        z_t = abar.sqrt() * z + (1 - abar).sqrt() * noise if root else abar * z + (1 - abar) * noise
        if scale_after:
            z_t = scale * z_t
        return F.mse_loss(model(z_t, t), noise if target == "eps" else z)
    return wrong


register(Exercise(
    id="08.latent_diffusion_loss",
    title="one latent-diffusion loss",
    reference=latent_diffusion_loss,
    contract="a 0-d float32 tensor: the mean over all elements of (model(z_t, t) - noise)^2",
    cases=_latent_loss_cases,
    alternatives=[_latent_loss_alternative, _latent_loss_with()],
    rtol=1e-4,
    mistakes=[
        Mistake("unscaled latents", _latent_loss_with(scaling="none"),
                "Multiply the encoder's mean by `scale` before adding noise: the schedule expects data with std "
                "about 1, and unscaled latents would be drowned (or barely touched) by the noise."),
        Mistake("divided by the scale", _latent_loss_with(scaling="divide"),
                "scale = 1 / std(latents), so the diffusion model's data is scale * latents (decoding divides by it)."),
        Mistake("log-variance as latent", _latent_loss_with(latent="logvar"),
                "encode returns (mean, logvar): the latent is the first item, the mean."),
        Mistake("target z0", _latent_loss_with(target="z0"),
                "As in pixel space, the network predicts the noise: compare model(z_t, t) with `noise`, not z0."),
        Mistake("no square roots", _latent_loss_with(root=False),
                "z_t = sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) noise (use q_sample): the coefficients are "
                "square roots."),
        Mistake("scaled after noising", _latent_loss_with(scaling="none", scale_after=True),
                "Scale the clean latent, then add noise: scaling z_t afterwards also scales the noise, and the "
                "model would learn a different noise level than the schedule's."),
    ],
    hint="z0 = scale * ae.encode(x0)[0]; z_t = q_sample(z0, t, noise, schedule); "
         "return ((model(z_t, t) - noise) ** 2).mean().",
))


# ---------------------------------------------------------------- the discriminator's loss
def _gan_cases():
    return [Case((seeded_randn(8, seed=1) * 2 + 1, seeded_randn(8, seed=2) * 2 - 1), label="8 real, 8 fake logits"),
            Case((seeded_randn(5, seed=3), seeded_randn(3, seed=4) * 4), label="5 real, 3 fake logits"),
            Case((torch.tensor([6.0, 3.0]), torch.tensor([-7.0, 0.5, -2.0])), label="confident discriminator")]


def _bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


register(Exercise(
    id="08.discriminator_loss",
    title="the discriminator's loss",
    reference=gan.discriminator_loss,
    contract="a 0-d float tensor: mean BCE(real_logits, target 1) + mean BCE(fake_logits, target 0)",
    cases=_gan_cases,
    alternatives=[lambda real, fake: -F.logsigmoid(real).mean() - F.logsigmoid(-fake).mean(),
                  lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean()],
    mistakes=[
        Mistake("targets swapped", lambda real, fake: _bce(real, 0.0) + _bce(fake, 1.0),
                "Real pictures have target 1 (D(x) should be near 1), generated ones target 0."),
        Mistake("sigmoid twice", lambda real, fake: _bce(torch.sigmoid(real), 1.0) + _bce(torch.sigmoid(fake), 0.0),
                "binary_cross_entropy_with_logits applies the sigmoid itself: pass the raw logits."),
        Mistake("real term only", lambda real, fake: _bce(real, 1.0),
                "The discriminator must also push D(G(z)) towards 0: add the fake term, BCE(fake_logits, 0)."),
        Mistake("fakes labelled real", lambda real, fake: _bce(real, 1.0) + _bce(fake, 1.0),
                "Target 1 on the fakes is the generator's (non-saturating) loss. The discriminator labels fakes 0."),
        Mistake("sum over the batch", lambda real, fake:
                F.binary_cross_entropy_with_logits(real, torch.ones_like(real), reduction="sum")
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake), reduction="sum"),
                "Average over each batch (the default reduction='mean'): a sum grows with the batch size."),
        Mistake("the value, not the loss", lambda real, fake:
                F.logsigmoid(real).mean() + F.logsigmoid(-fake).mean(),
                "That is Goodfellow et al.'s value V = E log D(x) + E log(1 - D(G(z))), which D maximises; "
                "the loss to minimise is -V."),
    ],
    hint="Return BCE_with_logits(real_logits, ones) + BCE_with_logits(fake_logits, zeros) (each averaged).",
))
