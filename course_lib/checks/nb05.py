"""Exercises of notebook 05, DDIM: the trailing timesteps, the deterministic update, sigma(eta), slerp."""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import ddim, sampling
from ..toy import GaussianMixture
from ..schedules import NoiseSchedule
from ._framework import Case, Exercise, Mistake, register, seeded_generator, seeded_randn



# ---------------------------------------------------------------- trailing timesteps
def _timestep_cases():
    return [Case((1000, 50), label="T=1000, 50 steps"),
            Case((1000, 7), label="T=1000, 7 steps (T not a multiple of steps)"),
            Case((100, 3), label="T=100, 3 steps"),
            Case((10, 10), label="T=10, every step"),
            Case((5, 2), label="T=5, 2 steps (a tie: 2.5 rounds to 2)"),
            Case((21, 6), label="T=21, 6 steps (ties at 3.5 and 10.5)"),
            Case((50, 1), label="one step")]


def _offsets(T, steps):
    return (torch.arange(steps, dtype=torch.float64) * T / steps).round().to(torch.int64)


register(Exercise(
    id="05.ddim_timesteps",
    title="the trailing DDIM timesteps",
    reference=ddim.ddim_timesteps,
    contract="an int64 tensor of shape (steps,), decreasing from T - 1: t_i = T - 1 - round(i * T / steps), "
             "ties rounded half to even (torch.round)",
    cases=_timestep_cases,
    alternatives=[lambda T, steps: torch.tensor([T - 1 - round(i * T / steps) for i in range(steps)]),
                  lambda T, steps: torch.from_numpy(T - 1 - np.round(np.arange(steps) * T / steps).astype(np.int64))],
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
        Mistake("diffusers' rounding", lambda T, steps:
                torch.round(torch.arange(T, 0, -T / steps, dtype=torch.float64)).to(torch.int64)[:steps] - 1,
                "That is diffusers' trailing formula, round(T - i * T / steps) - 1. It differs from the course's "
                "T - 1 - round(i * T / steps) only at ties (i * T / steps ending in .5 with T odd); the course "
                "rounds the offset i * T / steps, half to even, as the stub says."),
        Mistake("floor", lambda T, steps: T - 1 - torch.arange(steps) * T // steps,
                "Integer division floors: 1 * 1000 // 7 = 142, where 1000 / 7 = 142.86 rounds to 143. Compute the "
                "offsets in float64 and round them: (torch.arange(steps, dtype=torch.float64) * T / steps).round()."),
        Mistake("float timesteps", lambda T, steps: (T - 1 - _offsets(T, steps)).double(),
                "Timesteps are indices: return int64 (.long()), which can index schedule tensors."),
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
            Case((seeded_randn(2, 1, 4, 4, seed=7), 999, 979, seeded_randn(2, 1, 4, 4, seed=8), NoiseSchedule.linear(1000)),
                 label="linear T=1000, the first step t=999 -> 979"),
            Case((seeded_randn(3, 2, seed=9), 0, -1, seeded_randn(3, 2, seed=10), coarse),
                 label="coarse T=50, t=0 -> -1 (DDPM's last step)"),
            Case((seeded_randn(3, 2, seed=11), 50, 1, seeded_randn(3, 2, seed=12), NoiseSchedule.cosine(51)),
                 label="cosine T=51, t=50 -> 1"),
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


def _step_with_floats(x_t, t, t_prev, eps, schedule):
    abar_t = schedule.alpha_bars[t].item()
    abar_prev = schedule.alpha_bars[t_prev].item() if t_prev >= 0 else 1.0
    x0_hat = (x_t - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)
    return math.sqrt(abar_prev) * x0_hat + math.sqrt(1 - abar_prev) * eps


def _step_float64_inside(x_t, t, t_prev, eps, schedule):
    prev = schedule.alpha_bars_prev[0] if t_prev < 0 else schedule.alpha_bars[t_prev]
    x0_hat = (x_t.double() - (1 - schedule.alpha_bars[t]).sqrt() * eps.double()) / schedule.alpha_bars[t].sqrt()
    return (prev.sqrt() * x0_hat + (1 - prev).sqrt() * eps.double()).to(x_t.dtype)


register(Exercise(
    id="05.ddim_step",
    title="one deterministic DDIM step (eta = 0)",
    reference=ddim_step_eta0,
    contract="a tensor of x_t's shape and dtype (float32 here)",
    cases=_step_cases,
    alternatives=[_step_with_floats, _step_float64_inside],
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
        Mistake("float64 result", lambda x_t, t, t_prev, eps, s: ddim_step_eta0(x_t, t, t_prev, eps, s).double(),
                "Your result is float64: keep x_t's dtype. schedule.alpha_bars[t] with an int t is a 0-dim "
                "tensor that leaves x_t's dtype alone, but a slice such as alpha_bars[t:t+1] or x_t.double() "
                "makes everything float64; cast back with .to(x_t.dtype)."),
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
            Case((abar[t], torch.ones(4, dtype=torch.float64), 0.3), label="last step (abar_prev = 1), eta=0.3"),
            Case((abar[t], abar[t_prev], 0.0), label="eta=0: deterministic")]


register(Exercise(
    id="05.ddim_sigma",
    title="DDIM's noise scale sigma(eta)",
    reference=ddim_sigma,
    contract="a tensor of alpha_bar_t's shape and dtype (float64 here)",
    cases=_sigma_cases,
    alternatives=[lambda a, ap, eta: eta * torch.sqrt((1 - ap) / (1 - a) * (1 - a / ap)),
                  lambda a, ap, eta: torch.from_numpy(eta * np.sqrt((1 - ap.numpy()) / (1 - a.numpy()))
                                                      * np.sqrt(1 - a.numpy() / ap.numpy()))],
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
        Mistake("second ratio upside down", lambda a, ap, eta: eta * ((1 - ap) / (1 - a)).sqrt() * (1 - ap / a).sqrt(),
                "The second factor is sqrt(1 - abar_t / abar_prev): abar_t < abar_prev (t is noisier), so it is "
                "real; with the ratio upside down the square root of a negative number gives NaN."),
        Mistake("float32 result", lambda a, ap, eta: ddim_sigma(a, ap, eta).float(),
                "Keep the dtype of the alpha_bars you are given (float64 here): don't convert with .float()."),
        Mistake("eta ignored", lambda a, ap, eta: ((1 - ap) / (1 - a)).sqrt() * (1 - a / ap).sqrt(),
                "Multiply by eta: eta = 0 must give sigma = 0 (deterministic DDIM), eta = 1 DDPM's noise."),
    ],
    hint="return eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev) (use tensor .sqrt()).",
    rtol=1e-6, atol=1e-9,
))


# ---------------------------------------------------------------- slerp
def _slerp_cases():
    return [Case((seeded_randn(1, 8, 8, seed=1), seeded_randn(1, 8, 8, seed=2), 0.3), label="two 8x8 noise images, alpha=0.3"),
            Case((seeded_randn(16, seed=3), seeded_randn(16, seed=4), 0.75), label="16-vectors, alpha=0.75"),
            Case((seeded_randn(2, 3, 3, seed=5), seeded_randn(2, 3, 3, seed=6), 0.5), label="alpha=0.5"),
            Case((seeded_randn(4, 4, seed=7), seeded_randn(4, 4, seed=8), 0.0), label="alpha=0: z0 itself"),
            Case((seeded_randn(4, 4, seed=9), seeded_randn(4, 4, seed=10), 1.0), label="alpha=1: z1 itself")]


def _slerp_from_cos(cos_theta, z0, z1, alpha):
    theta = torch.arccos(cos_theta)
    return (torch.sin((1 - alpha) * theta) * z0 + torch.sin(alpha * theta) * z1) / torch.sin(theta)


def _slerp_float64(z0, z1, alpha):
    a, b = z0.double(), z1.double()
    return _slerp_from_cos((a * b).sum() / (a.norm() * b.norm()), a, b, alpha).to(z0.dtype)


def _slerp_numpy(z0, z1, alpha):
    a, b = z0.numpy(), z1.numpy()
    theta = np.arccos(np.clip((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))
    return torch.from_numpy((np.sin((1 - alpha) * theta) * a + np.sin(alpha * theta) * b) / np.sin(theta))


def _theta(z0, z1):
    return torch.arccos((z0 * z1).sum() / (z0.norm() * z1.norm()))


register(Exercise(
    id="05.slerp",
    title="spherical interpolation between two noises",
    reference=ddim.slerp,
    contract="a tensor of z0's shape and dtype",
    cases=_slerp_cases,
    alternatives=[_slerp_float64, _slerp_numpy],
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
        Mistake("dot product not normalised", lambda z0, z1, alpha: _slerp_from_cos((z0 * z1).sum(), z0, z1, alpha),
                "cos(theta) is the dot product divided by both norms: (z0 * z1).sum() / (z0.norm() * z1.norm()). "
                "Without the division arccos gets a number outside [-1, 1] and returns NaN."),
    ],
    hint="cos_theta = (z0 * z1).sum() / (z0.norm() * z1.norm()); theta = torch.arccos(cos_theta); return "
         "(sin((1 - alpha) theta) z0 + sin(alpha theta) z1) / sin(theta).",
    rtol=1e-4, atol=1e-5,
))


# ---------------------------------------------------------------- the DDPM sampling loop (Alg. 2)
def ddpm_sample_loop(model, schedule, x_T, generator):
    """DDPM ancestral sampling from x_T with the library's sampler: ddpm_step at code indices T-1, ..., 0."""
    return sampling.sample(model, schedule, tuple(x_T.shape), sampler="ddpm", x_T=x_T, seed=generator,
                           progress=False).images


def _wavy_model(x_t, t):
    """A fixed stand-in for a network that depends on x_t and on t, so every loop mistake changes the result."""
    return 0.4 * x_t + 0.3 * torch.sin(0.05 * t.to(x_t.dtype)).reshape(-1, *([1] * (x_t.ndim - 1)))


def _ring_model(schedule):
    ring = GaussianMixture.ring(k=4, radius=1.5, std=0.2)
    return lambda x_t, t: ring.eps(x_t, t, schedule)


def _loop_cases():
    coarse = NoiseSchedule.linear(T=20, beta_start=0.01, beta_end=0.3)
    cosine = NoiseSchedule.cosine(T=60)
    return [Case((_wavy_model, coarse, seeded_randn(3, 1, 4, 4, seed=1), seeded_generator(2)),
                 label="a stand-in model, coarse linear schedule T=20"),
            Case((_ring_model(cosine), cosine, seeded_randn(64, 2, seed=3), seeded_generator(4)),
                 label="the exact noise of a 2-D mixture, cosine T=60"),
            Case((_wavy_model, NoiseSchedule.cosine(T=1000), seeded_randn(2, 1, 2, 2, seed=5), seeded_generator(6)),
                 label="cosine T=1000")]


def _loop_with(order="down", model_step=0, stop=0, noise="fresh", calls="every step"):
    def wrong(model, schedule, x_T, generator):
        x, T = x_T, schedule.T
        indices = range(T - 1, stop - 1, -1) if order == "down" else range(0, T)
        eps, z = None, None
        for t in indices:
            if eps is None or calls == "every step":
                eps = model(x, torch.full((x.shape[0],), t + model_step, dtype=torch.int64))
            if noise == "none":
                x = sampling.ddpm_step(x, t, eps, schedule, noise=torch.zeros_like(x))
            elif noise == "once":
                z = torch.randn(x.shape, generator=generator) if z is None else z
                x = sampling.ddpm_step(x, t, eps, schedule, noise=z)
            else:
                x = sampling.ddpm_step(x, t, eps, schedule, generator=generator)
        return x
    return wrong


def _loop_while(model, schedule, x_T, generator):
    """A while loop counting t down, with t as a tensor built by repeat."""
    x, t = x_T, schedule.T
    while t > 0:
        t -= 1
        eps = model(x, torch.tensor(t).repeat(x.shape[0]))
        x = sampling.ddpm_step(x, t, eps, schedule, generator=generator)
    return x


def _loop_written_out(model, schedule, x_T, generator):
    """Each step from the formulas: x0_hat, the posterior mean, and sqrt(beta_tilde_t) z with z drawn for t > 0."""
    x = x_T
    for t in reversed(range(schedule.T)):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.int64)
        eps = model(x, t_batch)
        abar, beta, alpha = schedule.alpha_bars[t], schedule.betas[t], schedule.alphas[t]
        mean = ((x.double() - beta / (1 - abar).sqrt() * eps.double()) / alpha.sqrt()).to(x.dtype)
        if t > 0:
            z = torch.randn(x.shape, generator=generator)
            mean = mean + schedule.posterior_variance[t].sqrt().to(x.dtype) * z
        x = mean
    return x


register(Exercise(
    id="05.ddpm_sample_loop",
    title="the DDPM sampling loop (Algorithm 2)",
    reference=ddpm_sample_loop,
    contract="a float32 tensor of x_T's shape: x_0 after ddpm_step at t = T - 1, ..., 0, each given the generator",
    cases=_loop_cases,
    alternatives=[_loop_while, _loop_written_out],
    mistakes=[
        Mistake("stops before the last step", _loop_with(stop=1),
                "Your loop stops one step early: the last step is code index 0 (step 1), which turns x_1 into x_0. "
                "range(schedule.T - 1, -1, -1) includes 0; range(T - 1, 0, -1) does not."),
        Mistake("runs upwards", _loop_with(order="up"),
                "Sampling runs the reverse process: from the noisiest index T - 1 down to 0, "
                "range(schedule.T - 1, -1, -1). Counting up starts the denoising at an almost clean step."),
        Mistake("1-based t for the model", _loop_with(model_step=1),
                "The model takes the code index, the same t you hand to ddpm_step (0..T-1): "
                "model(x, torch.full((B,), t)), not t + 1."),
        Mistake("no fresh noise", _loop_with(noise="none"),
                "Without noise the loop only follows the posterior means: Algorithm 2 adds sigma_t z with fresh "
                "z ~ N(0, I) at every step. Let ddpm_step draw it: ddpm_step(x, t, eps, schedule, generator=generator)."),
        Mistake("the same noise at every step", _loop_with(noise="once"),
                "You drew z once and reused it: each step needs fresh noise. Pass generator=generator to every "
                "ddpm_step call and let it draw."),
        Mistake("one model call for the whole run", _loop_with(calls="once"),
                "The network must be asked again at every step, eps = model(x, t) with the current x and t: its "
                "prediction for x_T says nothing about the noise in x_500."),
    ],
    hint="x = x_T; for t in range(schedule.T - 1, -1, -1): eps = model(x, torch.full((x.shape[0],), t)); "
         "x = sampling.ddpm_step(x, t, eps, schedule, generator=generator); then return x. Draw no random "
         "numbers yourself: ddpm_step draws them from the generator, in the order the check expects.",
))


# ---------------------------------------------------------------- the posterior over a jump
def skip_posterior(alpha_bar_t, alpha_bar_prev):
    """q(x_t' | x_t, x_0) = N(a x_0 + b x_t, v I) for DDPM's Markov chain over a jump t -> t' < t:

        a = sqrt(abar_t') (1 - abar_t / abar_t') / (1 - abar_t),   b = sqrt(abar_t / abar_t') (1 - abar_t') / (1 - abar_t),
        v = (1 - abar_t') (1 - abar_t / abar_t') / (1 - abar_t)    (= DDIM's sigma^2 at eta = 1).
    """
    jump = alpha_bar_t / alpha_bar_prev
    return (alpha_bar_prev.sqrt() * (1 - jump) / (1 - alpha_bar_t),
            jump.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar_t),
            (1 - alpha_bar_prev) * (1 - jump) / (1 - alpha_bar_t))


def _skip_cases():
    abar = NoiseSchedule.cosine(1000).alpha_bars
    t, t_prev = torch.tensor([999, 700, 500, 100, 30]), torch.tensor([0, 200, 499, 20, 29])
    linear = NoiseSchedule.linear(50, beta_start=0.01, beta_end=0.3).alpha_bars
    return [Case((abar[t], abar[t_prev]), label="cosine T=1000, jumps of 1 to 999 steps"),
            Case((linear[40:], linear[:10]), label="coarse linear T=50, jumps of 40 steps"),
            Case((abar[[10, 500]], torch.ones(2, dtype=torch.float64)), label="a jump to clean data (abar_t' = 1)")]


def _skip_with(a_root="abar_prev", b_root=True, variance="posterior", swap=False):
    def wrong(alpha_bar_t, alpha_bar_prev):
        jump = alpha_bar_t / alpha_bar_prev
        a = (alpha_bar_prev if a_root == "abar_prev" else alpha_bar_t).sqrt() * (1 - jump) / (1 - alpha_bar_t)
        b = (jump.sqrt() if b_root else jump) * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
        v = {"posterior": (1 - alpha_bar_prev) * (1 - jump) / (1 - alpha_bar_t),
             "jump": 1 - jump, "marginal": 1 - alpha_bar_prev,
             "std": ((1 - alpha_bar_prev) * (1 - jump) / (1 - alpha_bar_t)).sqrt()}[variance]
        return (b, a, v) if swap else (a, b, v)
    return wrong


def _skip_rearranged(alpha_bar_t, alpha_bar_prev):
    """The same three numbers with the jump's alpha multiplied out: 1 - abar_t / abar_t' = (abar_t' - abar_t) / abar_t'."""
    gap = alpha_bar_prev - alpha_bar_t
    return (gap / (alpha_bar_prev.sqrt() * (1 - alpha_bar_t)),
            (alpha_bar_t / alpha_bar_prev).sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar_t),
            (1 - alpha_bar_prev) / (1 - alpha_bar_t) * gap / alpha_bar_prev)


def _skip_numpy(alpha_bar_t, alpha_bar_prev):
    abar_t, abar_prev = alpha_bar_t.numpy(), alpha_bar_prev.numpy()
    jump = abar_t / abar_prev
    return tuple(torch.from_numpy(np.asarray(value)) for value in (
        np.sqrt(abar_prev) * (1 - jump) / (1 - abar_t),
        np.sqrt(jump) * (1 - abar_prev) / (1 - abar_t),
        (1 - abar_prev) * (1 - jump) / (1 - abar_t)))


register(Exercise(
    id="05.skip_posterior",
    title="DDPM's posterior over a jump t -> t'",
    reference=skip_posterior,
    contract="a tuple (a, b, v) of three float64 tensors of alpha_bar_t's shape",
    cases=_skip_cases,
    alternatives=[_skip_rearranged, _skip_numpy],
    mistakes=[
        Mistake("the jump's own variance", _skip_with(variance="jump"),
                "1 - abar_t / abar_t' is the variance of x_t given x_t' (the forward jump). The posterior also knows "
                "x_0, which shrinks it by (1 - abar_t') / (1 - abar_t): v = (1 - abar_t')(1 - abar_t / abar_t') / (1 - abar_t)."),
        Mistake("the marginal variance", _skip_with(variance="marginal"),
                "1 - abar_t' is the variance of x_t' given x_0 alone. Knowing x_t as well leaves less uncertainty: "
                "v = (1 - abar_t')(1 - abar_t / abar_t') / (1 - abar_t), as beta_tilde in notebook 01."),
        Mistake("standard deviation", _skip_with(variance="std"),
                "Return the variance v, not its square root (v is DDIM's sigma^2 at eta = 1, not sigma)."),
        Mistake("coefficients swapped", _skip_with(swap=True),
                "a multiplies x_0 and b multiplies x_t: a = sqrt(abar_t')(1 - abar_t / abar_t') / (1 - abar_t), "
                "b = sqrt(abar_t / abar_t')(1 - abar_t') / (1 - abar_t). Return them in the order (a, b, v)."),
        Mistake("sqrt(abar_t) in a", _skip_with(a_root="abar_t"),
                "In notebook 01's x_0 coefficient sqrt(abar_{t-1}) beta_t / (1 - abar_t), the square root belongs to "
                "the *target* step: here sqrt(abar_t'), not sqrt(abar_t)."),
        Mistake("no square root in b", _skip_with(b_root=False),
                "The x_t coefficient carries the square root of the jump's alpha, sqrt(abar_t / abar_t'), as "
                "sqrt(alpha_t) does in notebook 01's posterior mean."),
        Mistake("a list", lambda abar_t, abar_prev: list(skip_posterior(abar_t, abar_prev)),
                "Return the three tensors as a tuple, `return a, b, v` (the comma makes the tuple), not a list."),
    ],
    hint="With alpha_jump = abar_t / abar_t': a = sqrt(abar_t') (1 - alpha_jump) / (1 - abar_t), "
         "b = sqrt(alpha_jump) (1 - abar_t') / (1 - abar_t), v = (1 - abar_t') (1 - alpha_jump) / (1 - abar_t); "
         "return the tuple (a, b, v) of float64 tensors.",
    rtol=1e-9, atol=1e-12,
))
