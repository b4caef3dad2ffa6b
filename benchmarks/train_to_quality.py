"""Time to quality: how good are the samples after 15, 30, 60 and 120 s of `train`, new default vs old default?

    .venv/bin/python benchmarks/train_to_quality.py [--n 500] [--sampler ddpm] [--times 15 30 60 120]

Each configuration is one training run through the command line, `python -m course_lib train --dataset
digits --max-seconds S --out CKPT` (the README's command; the old default adds the flags it used to
have), continued with --resume up to each snapshot time, so the curve costs one run per configuration.
At every snapshot its EMA weights draw n samples (DDPM, all 1000 steps, seed 0, x0 clamped as `sample`
does) and the course metrics score them: confident fraction (classifier p >= 0.9), class entropy and
the number of classes present, KID ± its standard error and the Fréchet distance against the held-out
test digits. Last, real digits at the same n (``metrics.real_data_reference``): the yardstick.
Target (issue 7): the new default >= 0.85 confident at <= 60 s, all ten classes present.

Wall-clock seconds are what the student waits; on a shared machine they buy fewer steps, so the load
average is printed and seconds per step is a column: compare curves measured at similar loads.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from course_lib import metrics
from course_lib.__main__ import main as course_main
from course_lib.sampling import sample
from course_lib.checkpoints import load_checkpoint

CONFIGURATIONS = {
    "new default": [],
    "old default": ["--base-channels", "32", "--lr", "1e-3", "--weighting", "uniform"],
}


def snapshot_scores(checkpoint: Path, n: int, sampler: str) -> dict:
    model, schedule, info = load_checkpoint(checkpoint)
    images = sample(model, schedule, (n, *info["dataset"]["image_shape"]), sampler=sampler,
                    steps=None if sampler == "ddpm" else 100, seed=0, clip_x0=True, progress=False).images
    scores = metrics.evaluate_samples(images)
    return {**scores, "step": info["step"], "seconds": info["seconds"]}


def row(label: str, s: dict) -> str:
    timing = f"{s['seconds']:7.1f} {s['step']:6d} {1000 * s['seconds'] / s['step']:8.1f}" if "step" in s else " " * 23
    classes = sum(share > 0 for share in s["class_histogram"])
    return (f"{label:14s} {timing} {s['confident_fraction']:9.3f} {s['class_entropy']:8.3f} "
            f"{classes:7d} {s['kid']:8.1f} ± {s['kid_se']:5.1f} {s['frechet_distance']:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="samples per snapshot; default %(default)s")
    parser.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddpm",
                        help="ddpm: all T steps (the target's setting); ddim: 100 steps, faster; default %(default)s")
    parser.add_argument("--times", type=float, nargs="+", default=[15, 30, 60, 120],
                        help="snapshot times in seconds of training; default %(default)s")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGURATIONS), default=list(CONFIGURATIONS))
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.n} {args.sampler.upper()} samples "
          f"per snapshot\n")
    header = (f"{'':14s} {'train s':>7s} {'steps':>6s} {'ms/step':>8s} {'confident':>9s} {'entropy':>8s} "
              f"{'classes':>7s} {'KID':>8s}   {'SE':>5s} {'Fréchet':>8s}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.configs:
            print(f"{name}: python -m course_lib train --dataset digits --max-seconds S "
                  f"{' '.join(CONFIGURATIONS[name])}".rstrip())
            print(header)
            checkpoint, done = Path(folder) / f"{name.replace(' ', '_')}.pt", 0.0
            for target in sorted(args.times):
                resume = ["--resume"] if done else []
                argv = ["train", "--dataset", "digits", "--max-seconds", str(target - done), "--out", str(checkpoint),
                        *CONFIGURATIONS[name], *resume]
                if course_main(argv) != 0:
                    raise SystemExit(f"training failed: python -m course_lib {' '.join(argv)}")
                done = target
                print(row(f"  at {target:g} s", snapshot_scores(checkpoint, args.n, args.sampler)), flush=True)
            print()
    real = metrics.real_data_reference(args.n)
    print(header)
    print(row("real digits", real) + f"   ({args.n} training digits vs the test split; confident and entropy: "
          f"{min(args.n, 359)} test digits)")
    print(f"\nload average {os.getloadavg()[0]:.1f}; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
