"""Quality against NFE for every sampler, in one run: on exact Gaussian mixtures and on digits.

    .venv/bin/python benchmarks/samplers.py                 # everything (about 15 min on 2 busy cores)
    .venv/bin/python benchmarks/samplers.py --quick         # smaller n and fewer NFE (a few minutes)
    .venv/bin/python benchmarks/samplers.py --write-asset   # also store the 64-D table notebook 07 plots

1. Exact mixtures (2-D ring, and the 64-D digit-shaped mixture ``toy.digits_mixture``): each sampler runs with
   the exact score on the Karras et al. (2022) grid (ρ = 7, σ_min = 0.002, from τ = 1 to τ = 0); the table
   holds the sliced Wasserstein distance to exact samples, with the floor (two exact sets of the same size).
   Targets: Heun-ODE at NFE ≤ 50 within 1.2× the floor on the 64-D mixture; fitted slopes of the excess error
   within 0.35 of −order for the ODE solvers (order 1: DDIM, Euler-ODE; order 2: Heun-ODE). The SDE samplers
   (Euler–Maruyama, DDPM; weak order 1) are printed too: on this grid their large first steps dominate until
   they reach the floor, so their slopes measure a transient, not an order.
2. Digits: the shipped class-conditional flow-matching model (Euler and Heun) beside DDIM on the shipped
   diffusion model, 500 samples (50 per class, w = 1: plain conditional, no guidance boost), course metrics.
   Target: the flow model ≥ 0.90 confident at ≤ 20 NFE.
"""
import argparse
import json
import sys
import time

import torch

from course_lib import flows, metrics, sde
from course_lib.ddim import ddim_plan, ddim_step_fn
from course_lib.forward import model_eps
from course_lib.sampler_error import ORDERS, SAMPLERS, TABLE_ASSET, error_vs_nfe, fitted_slopes
from course_lib.sampling import run_reverse
from course_lib.toy import GaussianMixture, digits_mixture
from course_lib.checkpoints import DIFFUSION_ASSET, load_checkpoint

SLOPE_TOLERANCE = 0.35
ODE_SOLVERS = ("ddim", "euler_ode", "heun_ode")    # deterministic: their slopes are the orders notebook 07 states


def print_table(title: str, table: dict) -> dict:
    floor = table["floor"]
    print(f"\n{title}: sliced Wasserstein to {table['n']} exact samples (mean of {table['repeats']} runs); "
          f"floor {floor:.4f}")
    nfes = [nfe for nfe, _ in table[SAMPLERS[0]]]
    print(f"{'sampler (NFE used)':20s}" + "".join(f"{'NFE ' + str(n):>9s}" for n in nfes) + "   (distance / floor)")
    for sampler in SAMPLERS:
        used = ",".join(str(nfe) for nfe, _ in table[sampler]) if sampler == "heun_ode" else ""
        print(f"{sampler:20s}" + "".join(f"{d / floor:9.2f}" for _, d in table[sampler]) + f"   {used}")
    heun = [(nfe, d) for nfe, d in table["heun_ode"] if nfe <= 50]
    print("heun_ode at NFE <= 50: " + ", ".join(f"NFE {nfe}: {d:.4f} = {d / floor:.2f}x floor" for nfe, d in heun))
    if not table.get("fit_slopes", True):
        return {}
    slopes = fitted_slopes(table)
    for sampler in SAMPLERS:
        if sampler in ODE_SOLVERS:
            ok = abs(slopes[sampler] + ORDERS[sampler]) <= SLOPE_TOLERANCE
            verdict = f"stated order {ORDERS[sampler]} -> {'agrees' if ok else 'DISAGREES'} (tolerance {SLOPE_TOLERANCE})"
        else:
            verdict = "SDE sampler: weak order 1 in theory; no asymptotic range here (stated so in notebook 07)"
        print(f"  slope {sampler:16s} {slopes[sampler]:6.2f}   {verdict}")
    return slopes


def digits_rows(nfes, n_per_class: int = 50, seed: int = 0) -> None:
    labels = torch.arange(10).repeat_interleave(n_per_class)
    noise = torch.randn(len(labels), 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    flow_model, _, _ = load_checkpoint(flows.FLOW_ASSET)
    diffusion, schedule, info = load_checkpoint(DIFFUSION_ASSET)
    velocity = flows.velocity_fn(flow_model, y=labels)
    print(f"\nDigits: {len(labels)} class-conditional samples (w = 1), course metrics vs the test split")
    print(f"{'sampler':28s}{'NFE':>5s}{'confident':>11s}{'entropy':>9s}{'Fréchet':>9s}{'seconds':>9s}")
    real = metrics.real_data_reference(len(labels) if len(labels) <= 359 else 359)
    print(f"{'real test digits':28s}{'':>5s}{real['confident_fraction']:11.3f}{real['class_entropy']:9.3f}"
          f"{real['frechet_distance']:9.2f}")
    for nfe in nfes:
        rows = [("flow, Euler", nfe, lambda: flows.sample_flow(velocity, noise, nfe, "euler", model=flow_model)),
                ("flow, Heun", 2 * ((nfe + 1) // 2) - 1,
                 lambda: flows.sample_flow(velocity, noise, (nfe + 1) // 2, "heun", model=flow_model)),
                ("DDIM (shipped diffusion)", nfe,
                 lambda: run_reverse(diffusion, noise, ddim_plan(schedule.T, nfe),
                                     ddim_step_fn(lambda x, t: model_eps(diffusion, x, t, schedule, y=labels),
                                                  schedule, eta=0.0, clip_x0=True), progress=False))]
        for name, used, run in rows:
            start = time.perf_counter()
            images = run().images.clamp(-1, 1)
            seconds = time.perf_counter() - start
            scores = metrics.evaluate_samples(images)
            print(f"{name:28s}{used:5d}{scores['confident_fraction']:11.3f}{scores['class_entropy']:9.3f}"
                  f"{scores['frechet_distance']:9.2f}{seconds:9.1f}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write-asset", action="store_true", help=f"store the 64-D table in {TABLE_ASSET}")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)      # the exact scores are small matrix products: one thread, no contention
    vp = sde.VPSDE()
    nfes = [4, 8, 16, 32, 50, 64] if args.quick else [4, 8, 16, 32, 50, 64, 128, 256]   # 50: the Heun target
    start = time.perf_counter()
    ring = error_vs_nfe(GaussianMixture.ring(), vp, nfes, n=2000 if args.quick else 4000, repeats=2)
    ring["fit_slopes"] = False          # every sampler reaches the floor within ~30 NFE: too few points for a slope
    print_table("2-D ring (8 Gaussians; errors reach the floor too soon to fit slopes)", ring)
    table = error_vs_nfe(digits_mixture(), vp, nfes, n=1000 if args.quick else 2000, repeats=1)
    slopes = print_table("64-D digit-shaped mixture (10 full-covariance Gaussians)", table)
    if args.write_asset:
        table["slopes"] = slopes
        table["command"] = "python benchmarks/samplers.py --write-asset"
        TABLE_ASSET.write_text(json.dumps(table, indent=1))
        print(f"wrote {TABLE_ASSET}")
    digits_rows([5, 10, 20] if args.quick else [5, 10, 20, 50])
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
