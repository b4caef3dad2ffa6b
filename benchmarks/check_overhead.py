"""Benchmark: how long a passing ``check`` takes, per exercise, with the check isolated in a forked child
(the default on Linux) and in-process (the fallback elsewhere).

    .venv/bin/python benchmarks/check_overhead.py [--repeats 5] [--ballast-mb 0]

Prints the median wall time of ``check(id, reference)`` per exercise and mode, then the mean over all
exercises and the difference the fork makes. --ballast-mb allocates that much memory first, as a notebook
kernel holding data and a model would (a fork copies the page tables). Run against another checkout with
PYTHONPATH=/path/to/checkout to compare (a framework without _sandbox is timed in its only mode).
Target (issue 18): the fork adds little to a passing check, a few tens of ms at most. Nothing here asserts.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import torch

from course_lib import checks


def median_seconds(exercise_id: str, repeats: int) -> float:
    reference = checks.EXERCISES[exercise_id].reference
    times = []
    for _ in range(repeats):
        with contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            assert checks.check(exercise_id, reference)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ballast-mb", type=int, default=0)
    options = parser.parse_args()
    torch.set_num_threads(1)
    ballast = torch.ones(options.ballast_mb * 2 ** 18) if options.ballast_mb else None   # float32: 4 bytes
    sandbox = getattr(checks, "_sandbox", None)
    modes = {"forked": True, "in-process": False} if sandbox is not None else {"only mode": None}
    rows = {}
    for exercise_id in sorted(checks.EXERCISES):
        rows[exercise_id] = {}
        for mode, use_fork in modes.items():
            if sandbox is not None:
                sandbox.USE_FORK = use_fork
            rows[exercise_id][mode] = median_seconds(exercise_id, options.repeats)
    print(f"passing check, median of {options.repeats}, ms" + (f" (ballast {options.ballast_mb} MB)" if ballast is not None else ""))
    print(f"{'exercise':28s}" + "".join(f"{mode:>12s}" for mode in modes))
    for exercise_id, times in rows.items():
        print(f"{exercise_id:28s}" + "".join(f"{1000 * times[mode]:12.1f}" for mode in modes))
    means = {mode: statistics.mean(times[mode] for times in rows.values()) for mode in modes}
    print(f"{'mean':28s}" + "".join(f"{1000 * means[mode]:12.1f}" for mode in modes))
    if len(modes) == 2:
        print(f"fork adds {1000 * (means['forked'] - means['in-process']):.1f} ms per check on average")


if __name__ == "__main__":
    main()
