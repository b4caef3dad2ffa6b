"""Exercises of notebook 07, scores, SDEs and flows: the VP marginal std, a Langevin step, a reverse-SDE step,
the probability-flow drift, a Heun step and the flow-matching pair."""
from __future__ import annotations

import math

import torch

from .. import flows, sde
from ._framework import Case, Exercise, Mistake, register, seeded_randn


def _constant_vp(beta: float) -> sde.VPSDE:
    """A VP-SDE with constant beta: the exercises take beta at the current time as a number."""
    return sde.VPSDE(beta_min=beta, beta_max=beta)


# ---------------------------------------------------------------- the VP marginal std
def _std_cases():
    taus = torch.tensor([0.0, 1e-3, 0.1, 0.5, 1.0], dtype=torch.float64)
    return [Case((taus, 0.1, 20.0), label="linear VP (beta from 0.1 to 20), tau = 0 ... 1"),
            Case((torch.linspace(0, 1, 11, dtype=torch.float64), 1.0, 5.0), label="beta from 1 to 5"),
            Case((torch.tensor([0.3, 0.7], dtype=torch.float64), 2.0, 2.0), label="constant beta = 2")]


def _integral(tau, beta_min, beta_max):
    return beta_min * tau + 0.5 * (beta_max - beta_min) * tau ** 2


register(Exercise(
    id="07.vp_std",
    title="the std of the VP-SDE's marginal",
    reference=lambda tau, beta_min, beta_max: torch.tensor([sde.VPSDE(beta_min=beta_min, beta_max=beta_max).std(u)
                                                            for u in tau.tolist()], dtype=torch.float64),
    contract="a float64 tensor shaped like tau",
    cases=_std_cases,
    alternatives=[lambda tau, b0, b1: torch.sqrt(1 - torch.exp(-_integral(tau, b0, b1))),
                  lambda tau, b0, b1: torch.sqrt(-torch.expm1(-(b0 * tau + (b1 - b0) * tau * tau / 2)))],
    mistakes=[
        Mistake("no 1/2 on the quadratic term", lambda tau, b0, b1: torch.sqrt(1 - torch.exp(-(b0 * tau + (b1 - b0) * tau ** 2))),
                "The integral of beta(s) = beta_min + s (beta_max - beta_min) from 0 to tau is "
                "beta_min tau + (beta_max - beta_min) tau^2 / 2: the square comes with a 1/2 (beta(tau) * tau "
                "is not the integral of a growing beta)."),
        Mistake("variance, not std", lambda tau, b0, b1: 1 - torch.exp(-_integral(tau, b0, b1)),
                "1 - alpha_bar(tau) is the variance of the marginal; its standard deviation is the square root."),
        Mistake("the mean's scale", lambda tau, b0, b1: torch.exp(-0.5 * _integral(tau, b0, b1)),
                "exp(-1/2 integral beta) = sqrt(alpha_bar) scales the mean (x0's share); the std is "
                "sqrt(1 - alpha_bar)."),
        Mistake("alpha_bar with a 1/2", lambda tau, b0, b1: torch.sqrt(1 - torch.exp(-0.5 * _integral(tau, b0, b1))),
                "alpha_bar(tau) = exp(-integral of beta), without 1/2: the 1/2 belongs to sqrt(alpha_bar), the "
                "mean's scale (some notes get this wrong). std = sqrt(1 - exp(-integral of beta))."),
        Mistake("beta(tau) for its integral", lambda tau, b0, b1: torch.sqrt(1 - torch.exp(-(b0 + tau * (b1 - b0)))),
                "alpha_bar(tau) = exp(-integral from 0 to tau of beta(s) ds): integrate the line beta(s), giving "
                "beta_min tau + (beta_max - beta_min) tau^2 / 2, rather than using beta(tau) itself."),
        Mistake("float32", lambda tau, b0, b1: torch.sqrt(1 - torch.exp(-_integral(tau, b0, b1))).float(),
                "Keep float64, like every schedule quantity: 1 - alpha_bar near tau = 0 loses digits in float32."),
    ],
    hint="alpha_bar(tau) = exp(-(beta_min tau + (beta_max - beta_min) tau^2 / 2)); return sqrt(1 - alpha_bar).",
))


# ---------------------------------------------------------------- a Langevin step
def _langevin_cases():
    x, score, noise = seeded_randn(64, 2, seed=70), seeded_randn(64, 2, seed=71), seeded_randn(64, 2, seed=72)
    return [Case((x, score, 0.01, noise), label="64 points in 2-D, step 0.01"),
            Case((x[:8], score[:8], 2.0, noise[:8]), label="step 2.0"),
            Case((x.double()[:5], score.double()[:5], 0.2, noise.double()[:5]), label="float64, step 0.2")]


register(Exercise(
    id="07.langevin_step",
    title="one step of Langevin dynamics",
    reference=sde.langevin_step,
    contract="a tensor shaped like x, in x's dtype",
    cases=_langevin_cases,
    alternatives=[lambda x, score, d, z: x + d * score + (2 * d) ** 0.5 * z,
                  lambda x, score, d, z: torch.addcmul(x + d * score, torch.full_like(x, math.sqrt(2 * d)), z)],
    mistakes=[
        Mistake("sqrt(delta) noise", lambda x, s, d, z: x + d * s + math.sqrt(d) * z,
                "The noise is scaled by sqrt(2 delta), not sqrt(delta): with delta on the score, the factor 2 makes "
                "p the stationary distribution."),
        Mistake("noise not square-rooted", lambda x, s, d, z: x + d * s + 2 * d * z,
                "2 delta is the noise's variance: multiply z by its square root, sqrt(2 delta)."),
        Mistake("against the score", lambda x, s, d, z: x - d * s + math.sqrt(2 * d) * z,
                "The score points uphill, towards more probable points: add delta * score."),
        Mistake("the delta/2 convention", lambda x, s, d, z: x + d / 2 * s + math.sqrt(d) * z,
                "x + delta/2 score + sqrt(delta) z is the same algorithm with another meaning of the step size; "
                "here (Song & Ermon 2019, eq. 4) delta multiplies the score and sqrt(2 delta) the noise."),
        Mistake("no noise", lambda x, s, d, z: x + d * s,
                "Without the noise this is gradient ascent: every point climbs to the nearest mode and stays. "
                "Add sqrt(2 delta) * noise."),
    ],
    hint="x_next = x + delta * score + sqrt(2 * delta) * noise.",
))


# ---------------------------------------------------------------- one Euler–Maruyama step of the reverse VP-SDE
def _em_cases():
    x, score, noise = seeded_randn(16, 2, seed=73), seeded_randn(16, 2, seed=74), seeded_randn(16, 2, seed=75)
    images = seeded_randn(2, 1, 4, 4, seed=76)
    return [Case((x, score, 5.0, 0.05, noise), label="16 points, beta = 5, dtau = 0.05"),
            Case((x, score, 20.0, 0.001, noise), label="beta = 20, dtau = 0.001"),
            Case((images, -images, 0.5, 0.2, images.flip(0)), label="two 4x4 images, beta = 0.5, dtau = 0.2")]


register(Exercise(
    id="07.reverse_sde_step",
    title="one Euler–Maruyama step of the reverse VP-SDE",
    reference=lambda x, score, beta, dtau, noise: sde.euler_maruyama_step(_constant_vp(beta), x, dtau, 0.0, score, noise),
    contract="a tensor shaped like x, in x's dtype",
    cases=_em_cases,
    alternatives=[lambda x, s, b, dt, z: x + (0.5 * b * x + b * s) * dt + math.sqrt(b * dt) * z,
                  lambda x, s, b, dt, z: x - (-0.5 * b * x - b * s) * dt + (b * dt) ** 0.5 * z],
    mistakes=[
        Mistake("forward in time", lambda x, s, b, dt, z: x + (-0.5 * b * x - b * s) * dt + math.sqrt(b * dt) * z,
                "The reverse SDE runs from tau to tau - dtau: x_next = x - [f - g^2 score] dtau + g sqrt(dtau) z, "
                "so the drift -1/2 beta x - beta score enters with a minus sign."),
        Mistake("the ODE's 1/2 on the score", lambda x, s, b, dt, z: x + (0.5 * b * x + 0.5 * b * s) * dt + math.sqrt(b * dt) * z,
                "1/2 g^2 belongs to the probability-flow ODE, which has no noise. The reverse SDE has the full "
                "g^2 = beta on the score."),
        Mistake("dtau not square-rooted", lambda x, s, b, dt, z: x + (0.5 * b * x + b * s) * dt + b * dt * z,
                "Brownian increments over dtau have variance dtau: the noise term is g sqrt(dtau) z = sqrt(beta dtau) z."),
        Mistake("g, not g squared", lambda x, s, b, dt, z: x + (0.5 * b * x + math.sqrt(b) * s) * dt + math.sqrt(b * dt) * z,
                "The score is multiplied by g(tau)^2 = beta (Anderson 1982), not by g = sqrt(beta)."),
        Mistake("no f term", lambda x, s, b, dt, z: x + b * s * dt + math.sqrt(b * dt) * z,
                "The reverse drift keeps the forward drift f = -1/2 beta x: x_next = x + (1/2 beta x + beta score) dtau + ..."),
    ],
    hint="x_next = x + (beta/2 * x + beta * score) * dtau + sqrt(beta * dtau) * noise.",
))


# ---------------------------------------------------------------- the probability-flow drift
def _pf_cases():
    x, score = seeded_randn(16, 2, seed=77), seeded_randn(16, 2, seed=78)
    images = seeded_randn(3, 1, 4, 4, seed=79)
    return [Case((x, score, 5.0), label="16 points, beta = 5"),
            Case((images, images.flip(0), 0.1), label="three 4x4 images, beta = 0.1"),
            Case((x.double(), score.double(), 19.0), label="float64, beta = 19")]


register(Exercise(
    id="07.pf_ode_drift",
    title="the probability-flow ODE's velocity",
    reference=lambda x, score, beta: sde.pf_ode_drift(_constant_vp(beta), x, 0.0, score),
    contract="a tensor shaped like x, in x's dtype",
    cases=_pf_cases,
    alternatives=[lambda x, s, b: -0.5 * b * (x + s), lambda x, s, b: -(b / 2) * x - (b / 2) * s],
    mistakes=[
        Mistake("the reverse SDE's drift", lambda x, s, b: -0.5 * b * x - b * s,
                "f - g^2 score is the reverse SDE's drift, which needs noise beside it. The ODE with the same "
                "marginals takes half the score term: f - 1/2 g^2 score."),
        Mistake("signs flipped", lambda x, s, b: 0.5 * b * (x + s),
                "dx/dtau is the velocity in forward time: f - 1/2 g^2 score = -1/2 beta (x + score). "
                "(A sampler then steps with a negative dtau.)"),
        Mistake("score sign", lambda x, s, b: -0.5 * b * x + 0.5 * b * s,
                "The score term enters with a minus: f - 1/2 g^2 score."),
        Mistake("no 1/2", lambda x, s, b: -b * (x + s),
                "Both terms carry 1/2: f = -1/2 beta x and 1/2 g^2 = 1/2 beta."),
        Mistake("no score", lambda x, s, b: -0.5 * b * x,
                "That is only the forward drift f: the score term -1/2 beta score is what pulls noise back "
                "towards the data."),
    ],
    hint="dx/dtau = f - 1/2 g^2 score = -1/2 beta (x + score) for the VP-SDE.",
))


# ---------------------------------------------------------------- a Heun step
def _curvy(y: torch.Tensor, s: float) -> torch.Tensor:
    """A velocity that depends on both y and s, so every wrong evaluation point shows."""
    return -y * (1 + s) + torch.sin(3 * y) * s ** 2 + s


def _heun_cases():
    y = seeded_randn(32, 2, seed=80)
    return [Case((y, 1.0, 0.6, _curvy), label="32 points, s from 1.0 to 0.6"),
            Case((y[:4].double(), 0.3, 0.25, _curvy), label="float64, s from 0.3 to 0.25"),
            Case((seeded_randn(2, 1, 3, 3, seed=81), 2.0, 0.5, _curvy), label="images, s from 2.0 to 0.5")]


def _heun_explicit(y, s, s_next, velocity):
    h = s_next - s
    k1 = velocity(y, s)
    k2 = velocity(y + h * k1, s_next)
    return y + h / 2 * k1 + h / 2 * k2


register(Exercise(
    id="07.heun_step",
    title="one Heun step",
    reference=sde.heun_step,
    contract="a tensor shaped like y, in y's dtype",
    cases=_heun_cases,
    alternatives=[_heun_explicit, lambda y, s, sn, v: (y + (sn - s) * v(y, s) + y + (sn - s) * v(y + (sn - s) * v(y, s), sn)) / 2],
    mistakes=[
        Mistake("Euler only", lambda y, s, sn, v: y + (sn - s) * v(y, s),
                "That is the Euler predictor. Heun then evaluates the velocity again at the predicted point and "
                "time s_next, and steps with the average of the two slopes."),
        Mistake("midpoint method", lambda y, s, sn, v: y + (sn - s) * v(y + (sn - s) / 2 * v(y, s), (s + sn) / 2),
                "That is the midpoint method (also second order, but another scheme). Heun averages the slopes at "
                "the start and at the Euler-predicted end point (s_next)."),
        Mistake("second slope only", lambda y, s, sn, v: y + (sn - s) * v(y + (sn - s) * v(y, s), sn),
                "Average the two slopes, 1/2 (d + d'), rather than stepping with the second one alone."),
        Mistake("second slope at time s", lambda y, s, sn, v: y + (sn - s) * 0.5 * (v(y, s) + v(y + (sn - s) * v(y, s), s)),
                "The second slope is evaluated at the predicted point *and* its time s_next."),
        Mistake("second slope at the start point", lambda y, s, sn, v: y + (sn - s) * 0.5 * (v(y, s) + v(y, sn)),
                "Evaluate the second slope at the Euler prediction y + (s_next - s) d, not at y."),
        Mistake("step sign", lambda y, s, sn, v: y + (s - sn) * 0.5 * (v(y, s) + v(y + (s - sn) * v(y, s), sn)),
                "The step is h = s_next - s, negative when a sampler runs from noise (large s) to data."),
    ],
    hint="d = velocity(y, s); y_pred = y + (s_next - s) d; return y + (s_next - s) (d + velocity(y_pred, s_next)) / 2.",
))


# ---------------------------------------------------------------- the flow-matching pair
def _flow_cases():
    x0, eps = seeded_randn(4, 4, seed=82), seeded_randn(4, 4, seed=83)
    images, noise = seeded_randn(3, 1, 5, 5, seed=84), seeded_randn(3, 1, 5, 5, seed=85)
    return [Case((x0, eps, torch.tensor([0.0, 0.3, 0.7, 1.0])), label="4 points in 4-D, tau = 0, 0.3, 0.7, 1"),
            Case((images, noise, torch.tensor([0.1, 0.5, 0.9])), label="three 5x5 images")]


def _flow_variant(path, target):
    def wrong(x0, eps, tau):
        t = tau.reshape(-1, *([1] * (x0.ndim - 1)))
        return path(x0, eps, t), target(x0, eps)
    return wrong


register(Exercise(
    id="07.flow_pair",
    title="the flow-matching input and target",
    reference=lambda x0, eps, tau: (flows.flow_path(x0, eps, tau), flows.flow_target(x0, eps)),
    contract="a tuple (x_tau, target) of two tensors shaped like x0, in x0's dtype",
    cases=_flow_cases,
    alternatives=[lambda x0, eps, tau: (torch.lerp(x0, eps, tau.reshape(-1, *([1] * (x0.ndim - 1)))), eps - x0),
                  _flow_variant(lambda x0, e, t: x0 + t * (e - x0), lambda x0, e: -(x0 - e))],
    mistakes=[
        Mistake("target towards the data", _flow_variant(lambda x0, e, t: (1 - t) * x0 + t * e, lambda x0, e: x0 - e),
                "The target is d x_tau / d tau = eps - x0: tau grows from data (0) to noise (1). The sampler "
                "goes the other way by stepping with a negative dtau."),
        Mistake("path reversed", _flow_variant(lambda x0, e, t: t * x0 + (1 - t) * e, lambda x0, e: e - x0),
                "In this course tau = 1 is noise, as in diffusion: x_tau = (1 - tau) x0 + tau eps."),
        Mistake("noise as the target", _flow_variant(lambda x0, e, t: (1 - t) * x0 + t * e, lambda x0, e: e),
                "That is diffusion's eps-prediction target. The flow's target is the path's velocity, eps - x0."),
        Mistake("data as the target", _flow_variant(lambda x0, e, t: (1 - t) * x0 + t * e, lambda x0, e: x0),
                "The target is the velocity of the straight line, eps - x0, not its start x0."),
        Mistake("variance-preserving path", _flow_variant(lambda x0, e, t: (1 - t).sqrt() * x0 + t.sqrt() * e,
                                                          lambda x0, e: e - x0),
                "That is a VP path (sqrt(1 - tau), sqrt(tau)), which is curved. Rectified flow's path is the straight "
                "line (1 - tau) x0 + tau eps, whose velocity is the constant eps - x0."),
        Mistake("tau not reshaped", lambda x0, e, tau: ((1 - tau) * x0 + tau * e, e - x0),
                "tau has one value per batch item (B,): reshape it to (B, 1, ...) so it scales each item, "
                "not each column."),
    ],
    hint="t = tau reshaped to (B, 1, ...); x_tau = (1 - t) x0 + t eps; target = eps - x0.",
))
