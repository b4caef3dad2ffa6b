"""Flow matching and rectified flow: learn the velocity of a straight path from data to noise, then solve an ODE.

    flow_path          x_τ = (1 − τ) x0 + τ ε          (Liu et al. 2023; Lipman et al. 2023 with σ_min = 0)
    flow_target        the path's velocity dx_τ/dτ = ε − x0, the regression target
    flow_loss          E_{τ ~ U(0,1), x0, ε} ‖v_θ(x_τ, τ) − (ε − x0)‖²   (conditional flow matching)
    x0_from_velocity / eps_from_velocity / velocity_from_score   what a velocity says about x0, ε and the score
    velocity_fn        a network (U-Net or MLP) as the ODE's right-hand side v(x, τ)
    sample_flow        Euler or Heun from τ = 1 (pure noise) to τ = 0 through the one reverse loop
    reflow_pairs       one round of reflow: couple each noise with the sample the current flow makes from it
    straightness       how far trajectories bend: path length / distance between the ends, minus 1

The shipped class-conditional digits model ``assets/digits_flow.pt`` was made by FLOW_ASSET_COMMAND (below).

Conventions: τ ∈ [0, 1], τ = 1 is noise, as in diffusion; tensors (B, ...); a per-item τ is (B,). A network
gets τ · TIME_SCALE as its time input, so the U-Net's sinusoidal embedding sees the range it was built for
(diffusion timesteps 0 … 1000). The exact velocity E[ε − x0 | x_τ] of the straight path is the
probability-flow ODE of a Gaussian path with mean scale 1 − τ and std τ, so every result of notebook 07
about ODE solvers carries over (Euler on the exact flow is DDIM on the matching grid; tests/test_flows.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pathlib import Path

from .sampling import plan_from_times, run_reverse
from .sde import ode_step_fn, uniform_times

TIME_SCALE = 1000.0
FLOW_ASSET = Path(__file__).resolve().parent / "assets" / "digits_flow.pt"
FLOW_ASSET_COMMAND = ("python -m course_lib train --dataset digits --conditional --objective flow --steps 4000 "
                      "--lr 2e-3 --seed 0 --out runs/digits_flow.pt --export course_lib/assets/digits_flow.pt")


def _per_item(tau: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return tau.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def flow_path(x0: torch.Tensor, eps: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """x_τ = (1 − τ) x0 + τ ε: the straight line from the data (τ = 0) to the noise (τ = 1). tau: (B,)."""
    t = _per_item(tau, x0)
    return (1 - t) * x0 + t * eps


def flow_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The velocity of the straight path, d x_τ / dτ = ε − x0: constant along each line."""
    return eps - x0


def x0_from_velocity(x_tau: torch.Tensor, tau: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """x0 = x_τ − τ v: follow the line back to τ = 0."""
    return x_tau - _per_item(tau, x_tau) * velocity


def eps_from_velocity(x_tau: torch.Tensor, tau: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """ε = x_τ + (1 − τ) v: follow the line on to τ = 1."""
    return x_tau + (1 - _per_item(tau, x_tau)) * velocity


def velocity_from_score(x_tau: torch.Tensor, tau: float, score: torch.Tensor) -> torch.Tensor:
    """The exact velocity E[ε − x0 | x_τ] = −(x_τ + τ ∇log p_τ(x_τ)) / (1 − τ), for τ < 1.

    Tweedie: E[ε | x_τ] = −τ ∇log p_τ, and x0 = (x_τ − τ ε) / (1 − τ) on the path.
    """
    return -(x_tau + tau * score) / (1 - tau)


def velocity_fn(model, **model_kwargs):
    """v(x, τ) for the ODE solvers: model(x, τ · TIME_SCALE, **model_kwargs), τ a float shared by the batch."""
    def velocity(x: torch.Tensor, tau: float) -> torch.Tensor:
        return model(x, torch.full((x.shape[0],), tau * TIME_SCALE, device=x.device), **model_kwargs)
    return velocity


def flow_loss(model, x0: torch.Tensor, tau: torch.Tensor | None = None, noise: torch.Tensor | None = None,
              y: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Conditional flow matching (Lipman et al. 2023, eq. 9 with the straight path of Liu et al. 2023):

        mean over every element of (model(x_τ, τ · TIME_SCALE[, y]) − (ε − x0))²,   x_τ = (1 − τ) x0 + τ ε.

    x0: (B, ...); tau: (B,) drawn from U(0, 1) when None; noise like x0, drawn from N(0, I) when None (both on the
    CPU from ``generator``, then moved to x0's device). y: labels (B,) for a class-conditional net. Returns a scalar.
    """
    if tau is None:
        tau = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    tau, noise = tau.to(x0.device), noise.to(x0.device)
    x_tau = flow_path(x0, noise, tau)
    time = (tau * TIME_SCALE).to(x0.dtype)
    output = model(x_tau, time) if y is None else model(x_tau, time, y=y)
    return F.mse_loss(output, flow_target(x0, noise))


def sample_flow(velocity, noise: torch.Tensor, steps: int, method: str = "euler", times: list[float] | None = None,
                generator: torch.Generator | None = None, model=None, progress: bool = False,
                trajectory: bool = False):
    """Solve dx/dτ = v(x, τ) from x(1) = noise down to τ = 0 with ``steps`` Euler or Heun steps (uniform in τ
    unless ``times`` is given). NFE: steps (Euler) or 2 steps − 1 (Heun; its last step is Euler).
    ``model``: the nn.Module behind ``velocity``, put in eval mode for the run. Returns a SampleResult."""
    times = uniform_times(steps) if times is None else times
    return run_reverse(model, noise, plan_from_times(times), ode_step_fn(velocity, method), generator=generator,
                       progress=progress, trajectory=trajectory, desc=f"flow ({method})")


@torch.no_grad()
def reflow_pairs(velocity, noise: torch.Tensor, steps: int = 50, method: str = "heun", model=None):
    """One reflow round (Liu et al. 2023, sec. 2.2): the samples x0 = ODE(noise) of the current flow.

    Training a new flow on these pairs with the noise, instead of independently drawn ones, straightens the
    paths, because the lines of a deterministic coupling cross less. Returns x0 of noise's shape.
    """
    return sample_flow(velocity, noise, steps, method, model=model).images


def straightness(path: torch.Tensor) -> torch.Tensor:
    """Bending of trajectories path (F, B, ...) (frames along the ODE): per item, the polyline's length divided
    by the straight distance between its first and last frame, minus 1. 0 for a straight line. Returns (B,)."""
    flat = path.flatten(2)
    length = (flat[1:] - flat[:-1]).norm(dim=-1).sum(0)
    return length / (flat[-1] - flat[0]).norm(dim=-1) - 1
