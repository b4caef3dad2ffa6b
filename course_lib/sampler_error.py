"""How far a sampler's output lies from the exact distribution, measured against exact samples.

On a Gaussian mixture, exact samples are free, so a sampler run with the *exact* score isolates the error
of the sampler itself (its discretisation), with no network in the way:

    sliced_wasserstein   SW₂ between two equal-size sample sets: the root mean square, over fixed random
                         directions, of the 1-D 2-Wasserstein distance (sorted projections; Rabin et al. 2011)
    sampling_floor       the same distance between two independent exact sample sets of the same size: what a
                         perfect sampler scores, because n samples never match a distribution exactly
    excess_error         √(d² − floor²): the part of a distance the sampler adds on top of the floor
    fit_slope            the slope of log error against log NFE (−p for a method of order p)

The directions are drawn from a fixed seed, so two calls measure with the same ruler. SW₂ is a true
distance between distributions and costs O(L n log n) for L directions: it works in 2-D and in 64-D alike.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ._validate import require_float_tensor, require_int
from .progress import progress_bar

TABLE_ASSET = Path(__file__).resolve().parent / "assets" / "sampler_error_64d.json"   # benchmarks/samplers.py --write-asset


def _directions(dim: int, count: int, seed: int) -> torch.Tensor:
    """``count`` unit vectors uniform on the sphere in ``dim`` dimensions, float64 (dim, count)."""
    directions = torch.randn(dim, count, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return directions / directions.norm(dim=0)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_projections: int = 256, seed: int = 0) -> float:
    """SW₂(a, b) = ( mean_θ W₂²(θ·a, θ·b) )^½ over ``n_projections`` fixed unit directions θ (seeded).

    In 1-D, W₂² between two equal-size sample sets is the mean squared difference of their sorted values.
    a, b: (n, ...) float tensors with the same shape (flattened to (n, d)). Returns a float (0 for equal sets).
    """
    for name, value in (("a", a), ("b", b)):
        require_float_tensor(value, name, min_dims=2)
    if a.shape != b.shape:
        raise ValueError(f"a and b must be sample sets of the same shape (n, ...), got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    require_int(n_projections, "n_projections", minimum=1)
    a, b = a.flatten(1).double(), b.flatten(1).double()
    directions = _directions(a.shape[1], n_projections, seed).T
    # (L, n) rows sorted by NumPy, about twice as fast as torch.sort on the CPU
    projected_a = np.sort((directions @ a.T).numpy(), axis=1)
    projected_b = np.sort((directions @ b.T).numpy(), axis=1)
    return float(np.sqrt(((projected_a - projected_b) ** 2).mean()))


def sampling_floor(sample_exact, n: int, repeats: int = 4, seed: int = 0, **distance_kwargs) -> float:
    """The mean distance between two independent exact sample sets of size n, over ``repeats`` pairs.

    sample_exact(n, generator) -> (n, ...) draws exact samples (e.g. ``GaussianMixture.sample``); the pairs
    come from one generator seeded with ``seed``. A sampler within a few per cent of this is as good as exact.
    """
    generator = torch.Generator().manual_seed(seed)
    distances = [sliced_wasserstein(sample_exact(n, generator), sample_exact(n, generator), **distance_kwargs)
                 for _ in range(repeats)]
    return sum(distances) / len(distances)


def excess_error(distance: float, floor: float) -> float:
    """√(max(d² − floor², 0)): finite-sample noise and sampler error add in squares, so this is the sampler's share."""
    return math.sqrt(max(distance ** 2 - floor ** 2, 0.0))


def fit_slope(nfe, errors) -> float:
    """Least-squares slope of log(error) against log(NFE); errors ∝ NFE^(−p) gives −p. Needs two points or more."""
    x = torch.tensor([math.log(n) for n in nfe], dtype=torch.float64)
    y = torch.tensor([math.log(e) for e in errors], dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    return ((x * y).sum() / (x * x).sum()).item()


# ---------------------------------------------------------------- every sampler with the exact score
SAMPLERS = ("euler_maruyama", "ddpm", "ddim", "euler_ode", "heun_ode")
ORDERS = {"euler_maruyama": 1, "ddpm": 1, "ddim": 1, "euler_ode": 1, "heun_ode": 2}


def exact_score_fn(mixture, vp):
    """∇log q_τ(x), exact: the mixture noised to the VP marginal at τ (mean scale √ᾱ(τ), std √(1 − ᾱ(τ)))."""
    return lambda x, tau: mixture.noised(vp.mean_scale(tau), vp.std(tau)).score(x)


def exact_eps_fn(mixture, vp):
    """ε̂(x, τ) = −std(τ) ∇log q_τ(x), the exact noise prediction."""
    score = exact_score_fn(mixture, vp)
    return lambda x, tau: -vp.std(tau) * score(x, tau)


def steps_for(sampler: str, nfe: int) -> int:
    """Grid steps that spend at most ``nfe`` evaluations: Heun needs two per step but one on its last (Euler) step."""
    return (nfe + 1) // 2 if sampler == "heun_ode" else nfe


def nfe_of(sampler: str, steps: int) -> int:
    """Network evaluations of ``steps`` grid steps: one each, Heun two each but one on its last step."""
    return 2 * steps - 1 if sampler == "heun_ode" else steps


def run_exact_sampler(sampler: str, mixture, vp, x_T: torch.Tensor, steps: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of ``sampler`` with the exact score, from x_T (B, d) at τ = 1 to τ = 0 over ``karras_times(vp, steps)``.

    All five visit the same noise levels and differ only in the update:
      euler_maruyama  the reverse SDE, Euler–Maruyama in (x, τ)
      ddpm            ancestral steps of the schedule respaced to the grid (posterior sampling between levels)
      ddim            η = 0 on the same respaced schedule (= Euler in DDIM's variables x̄, σ)
      euler_ode       the probability-flow ODE, Euler in (x, τ)
      heun_ode        the probability-flow ODE, Heun in DDIM's variables (Karras et al. 2022, Alg. 1)
    """
    from . import sde
    from .ddim import ddim_plan, ddim_step_fn
    from .sampling import ddpm_plan, ddpm_step_fn, run_reverse

    times = sde.karras_times(vp, steps)
    score, eps = exact_score_fn(mixture, vp), exact_eps_fn(mixture, vp)
    if sampler == "euler_maruyama":
        return sde.integrate(sde.euler_maruyama_step_fn(vp, score), x_T, times, generator=generator).images
    if sampler == "euler_ode":
        velocity = lambda x, tau: sde.pf_ode_drift(vp, x, tau, score(x, tau))
        return sde.integrate(sde.ode_step_fn(velocity, "euler"), x_T, times).images
    if sampler == "heun_ode":
        sigmas = [sde.sigma_from_alpha_bar(vp.alpha_bar(tau)) for tau in times]
        return sde.integrate(sde.ode_step_fn(sde.ddim_velocity(eps, vp), "heun"), x_T / vp.mean_scale(times[0]),
                             sigmas).images
    respaced = sde.respaced_schedule(vp, times)
    eps_at_index = lambda x, t: eps(x, times[-2 - int(t)])
    if sampler == "ddpm":
        plan, step = ddpm_plan(respaced.T), ddpm_step_fn(eps_at_index, respaced)
    else:
        plan, step = ddim_plan(respaced.T, respaced.T), ddim_step_fn(eps_at_index, respaced, eta=0.0)
    return run_reverse(None, x_T, plan, step, generator=generator, progress=False).images


def error_vs_nfe(mixture, vp, nfes, n: int, repeats: int = 1, samplers=SAMPLERS, seed: int = 0,
                 progress: bool = True) -> dict:
    """Sliced Wasserstein distance to exact samples for every sampler and NFE budget, averaged over ``repeats``
    independent runs (fresh x_T, noise and exact sets of size n), beside the floor for n samples.

    Returns {"floor": float, "n": n, "repeats": repeats, sampler: [(nfe, distance), ...]}.
    """
    generator = torch.Generator().manual_seed(seed)
    draws = [(mixture.sample(n, generator).double(), torch.randn(n, mixture.dim, generator=generator,
                                                                  dtype=torch.float64)) for _ in range(repeats)]
    table = {"floor": sampling_floor(lambda m, g: mixture.sample(m, g).double(), n, repeats=max(repeats, 4),
                                     seed=seed + 1),
             "n": n, "repeats": repeats}
    jobs = [(s, nfe) for s in samplers for nfe in nfes]
    for sampler, nfe in progress_bar(jobs, desc="samplers x NFE", disable=not progress):
        steps = steps_for(sampler, nfe)
        distance = sum(sliced_wasserstein(run_exact_sampler(sampler, mixture, vp, x_T, steps,
                                                            torch.Generator().manual_seed(seed + 100 + r)), exact)
                       for r, (exact, x_T) in enumerate(draws)) / repeats
        table.setdefault(sampler, []).append((nfe_of(sampler, steps), distance))
    return table


def fitted_slopes(table: dict, low: float = 1.0, high: float = 10.0) -> dict:
    """Slope of log excess error vs log NFE per sampler, over the points where the excess is at least ``low`` × floor
    and the distance at most ``high`` × floor. Below, the excess is lost in the floor's own noise (a deterministic
    sampler converges to a fixed transport of its x_T, whose distance to the exact set scatters around the floor by
    several per cent); above, steps are too large for the leading error term to dominate."""
    floor, slopes = table["floor"], {}
    for sampler in SAMPLERS:
        points = [(nfe, excess_error(d, floor)) for nfe, d in table.get(sampler, [])
                  if excess_error(d, floor) >= low * floor and d <= high * floor]
        slopes[sampler] = fit_slope(*zip(*points)) if len(points) >= 2 else float("nan")
    return slopes
