"""Benchmark: course_lib.procedural.generate against a straight NumPy transcription of seed 000.

    .venv/bin/python benchmarks/procedural.py [--repeats 5]

Prints, at 64^2, 128^2, 256^2 and 512^2 x 3 channels with T = 50 and steps saved: milliseconds per
image (median of the repeats), throughput in megapixels per second as in the seed's table (H W / time),
and the speed-up; then the peak memory traced by tracemalloc for the library at 512^2 x 3.
Targets (issue 3): speed-up >= 4 at 128^2 and 512^2; peak <= 24 MiB. Nothing here asserts.
"""
from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np

from course_lib import procedural


def seed_transcription(height, width, channels=3, T=50, seed=0, save_steps=True):
    """Seed 000's algorithms 1-3 as written: float64, every step computed, stats with np functions.

    One deviation, shared with the library: the normalised noise is blended (the seed normalises it
    on line 1 and then blends the raw noise on line 11). It uses NumPy's fast Generator rather than
    the legacy np.random.randn, so the baseline is not slowed down by an old random generator.
    """
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((height, width, channels))

    pattern = np.zeros((height, width, channels))
    X, Y = np.meshgrid(np.arange(width), np.arange(height))
    for c in range(channels):
        channel = np.zeros((height, width))
        for _ in range(rng.integers(3, 8)):
            freq_x, freq_y = rng.uniform(0.01, 0.08), rng.uniform(0.01, 0.08)
            phase, amplitude = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.0)
            channel = channel + amplitude * np.sin(X * freq_x + Y * freq_y + phase)
        if rng.uniform(0, 1) > 0.5:
            center_x, center_y = rng.uniform(0.3 * width, 0.7 * width), rng.uniform(0.3 * height, 0.7 * height)
            radius = np.sqrt((X - center_x) ** 2 + (Y - center_y) ** 2)
            channel = channel + np.sin(radius * rng.uniform(0.02, 0.05)) * 0.5
        pattern[:, :, c] = (channel - channel.min()) / (channel.max() - channel.min())

    normalised = (noise - noise.min()) / (noise.max() - noise.min())
    steps, stats = [], []
    for t in range(T, -1, -1):
        progress = (T - t) / T
        strength = progress ** 3
        current = normalised * (1 - strength) + pattern * strength
        noise_scale = 0.0
        if t > 0:
            noise_scale = (t / T) ** 2 * 0.1
            z = rng.standard_normal((height, width, channels))
            current = current + z * noise_scale
        current = np.clip(current, 0, 1)
        if t % 5 == 0:
            stats.append({"t": t, "mean": np.mean(current), "std": np.std(current), "min": np.min(current),
                          "max": np.max(current), "noise_level": noise_scale})
        if save_steps and t % 10 == 0:
            steps.append(current.copy())
    return current, steps, stats


def median_ms(run, repeats: int) -> float:
    run()  # warm-up: first-touch page faults and lazy imports are not the steady state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (median); default %(default)s")
    args = parser.parse_args()

    print(f"T = 50, 3 channels, steps saved; median of {args.repeats} runs")
    print(f"{'size':>9} | {'seed (ms)':>9} {'MP/s':>6} | {'library (ms)':>12} {'MP/s':>6} | {'speed-up':>8}")
    for side in (64, 128, 256, 512):
        megapixels = side * side / 1e6
        baseline = median_ms(lambda: seed_transcription(side, side), args.repeats)
        library = median_ms(lambda: procedural.generate(side, side), args.repeats)
        print(f"{side:>4}x{side:<4} | {baseline:9.1f} {megapixels / baseline * 1000:6.2f} | "
              f"{library:12.1f} {megapixels / library * 1000:6.2f} | {baseline / library:7.1f}x")

    tracemalloc.start()
    procedural.generate(512, 512, 3, save_steps=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"peak traced memory, library, 512x512x3, steps saved: {peak / 2**20:.1f} MiB ({peak / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
