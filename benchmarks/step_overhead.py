"""How much the library's sampler steps cost over the bare arithmetic they perform (target: <= 1.5x).

    python benchmarks/step_overhead.py [--batch 64] [--repeats 2000]

For a (B, 1, 8, 8) float32 batch at one int timestep (how ``sample`` calls them), times
``sampling.ddpm_step`` and ``ddim.ddim_step`` against the same formula written as plain tensor
arithmetic with its coefficients already looked up as Python floats (the least any implementation does).
Noise is passed in, so neither side draws random numbers. One thread, best of 7 runs.
"""
from __future__ import annotations

import argparse
import math
import timeit

import torch

from course_lib.ddim import ddim_step
from course_lib.sampling import ddpm_step
from course_lib.schedules import NoiseSchedule


def best_microseconds(fn, repeats: int) -> float:
    return min(timeit.repeat(fn, number=repeats, repeat=7)) / repeats * 1e6


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    schedule = NoiseSchedule.cosine(1000)
    generator = torch.Generator().manual_seed(0)
    x, eps, z = (torch.randn(args.batch, 1, 8, 8, generator=generator) for _ in range(3))
    t, t_prev, eta = 500, 480, 0.5
    ab = schedule.alpha_bars
    c = {"sqrt_ab": math.sqrt(ab[t]), "sqrt_1mab": math.sqrt(1 - ab[t]),
         "coef_x0": schedule.posterior_mean_coef_x0[t].item(), "coef_xt": schedule.posterior_mean_coef_xt[t].item(),
         "std": schedule.posterior_variance[t].sqrt().item()}
    sigma = eta * math.sqrt((1 - ab[t_prev]) / (1 - ab[t])) * math.sqrt(1 - ab[t] / ab[t_prev])
    c.update(sqrt_ab_prev=math.sqrt(ab[t_prev]), direction=math.sqrt(1 - ab[t_prev] - sigma ** 2), sigma=sigma)

    def plain_ddpm():
        x0 = (x - c["sqrt_1mab"] * eps) / c["sqrt_ab"]
        return c["coef_x0"] * x0 + c["coef_xt"] * x + c["std"] * z

    def plain_ddim():
        x0 = (x - c["sqrt_1mab"] * eps) / c["sqrt_ab"]
        return c["sqrt_ab_prev"] * x0 + c["direction"] * eps + c["sigma"] * z

    assert torch.allclose(plain_ddpm(), ddpm_step(x, t, eps, schedule, noise=z), atol=1e-5)
    assert torch.allclose(plain_ddim(), ddim_step(x, t, t_prev, eps, schedule, eta=eta, noise=z), atol=1e-5)
    print(f"batch ({args.batch}, 1, 8, 8) float32, t = {t}, one thread, best of 7 x {args.repeats} calls")
    for name, library, plain in [
            ("ddpm_step", lambda: ddpm_step(x, t, eps, schedule, noise=z), plain_ddpm),
            (f"ddim_step (eta={eta})", lambda: ddim_step(x, t, t_prev, eps, schedule, eta=eta, noise=z), plain_ddim)]:
        lib_us, plain_us = best_microseconds(library, args.repeats), best_microseconds(plain, args.repeats)
        print(f"{name:22s} {lib_us:7.1f} us   plain arithmetic {plain_us:7.1f} us   ratio {lib_us / plain_us:4.2f}x "
              f"(target <= 1.5x)")


if __name__ == "__main__":
    main()
