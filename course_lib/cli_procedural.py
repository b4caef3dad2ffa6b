"""``python -m course_lib procedural``: the procedural demo of notebook 02 (procedural.py), written as files.

final.png, steps.png and stats.csv go to --out as a set: all three, or, if anything fails, none.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys

from .cli import png_bytes, require_writable_directory, usage_error

PROCEDURAL_OPTIONS = {"height": "--height", "width": "--width", "channels": "--channels", "T": "--steps",
                      "seed": "--seed", "easing": "--easing"}
LONG_RUN = 2e8   # pixel-channel-records in a procedural run worth a progress bar (about a second)


def _csv_bytes(records: list, columns) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return text.getvalue().encode()


def _short_list(values: list, shown: int = 6) -> str:
    """'a, b, c' for a few values; the first and last ``shown`` around '...' for many."""
    if len(values) <= 2 * shown:
        return ", ".join(map(str, values))
    return f"{', '.join(map(str, values[:shown]))}, ..., {', '.join(map(str, values[-shown:]))} ({len(values)} images)"


def procedural_demo(args: argparse.Namespace) -> int:
    """``procedural``: run the procedural demo and write final.png, steps.png and stats.csv to --out, as a set."""
    from . import limits, procedural
    from ._io import write_files_atomically

    try:  # everything is checked before anything is created
        procedural.validate_arguments(args.height, args.width, args.channels, args.steps, args.seed,
                                      args.easing, args.noise_schedule)
        if args.channels > 4:
            raise ValueError(f"--channels must be 1 to 4 to fit in a PNG (grey, grey + alpha, RGB, RGBA), "
                             f"got {args.channels}")
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out must be a directory; {args.out} is a file")
        require_writable_directory("--out", args.out / "final.png")
        if args.limits:
            limits.require_within(
                limits.procedural_bytes(args.height, args.width, args.channels, args.steps, procedural.STATS_EVERY,
                                        procedural.SAVE_EVERY),
                f"--steps {args.steps} at {args.height}x{args.width}x{args.channels} (an image kept every "
                f"{procedural.SAVE_EVERY} steps)", "lower --steps, --height or --width")
    except (TypeError, ValueError) as error:
        return usage_error(error, PROCEDURAL_OPTIONS)
    work = args.height * args.width * args.channels * (args.steps // procedural.STATS_EVERY + 1)
    result = procedural.generate(args.height, args.width, args.channels, args.steps, args.seed, args.easing,
                                 args.noise_schedule, save_steps=True, show_progress=work > LONG_RUN)
    files = {"final.png": png_bytes(result.image),
             "steps.png": png_bytes(procedural.steps_strip(result.steps)),
             "stats.csv": _csv_bytes(result.stats, procedural.STAT_KEYS)}
    try:
        write_files_atomically(args.out, files)      # all three or, if anything fails, none
    except OSError as error:
        print(f"error: cannot write to {args.out}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(str(args.out / name) for name in files)} "
          f"(steps at t = {_short_list(result.step_t)})")
    return 0
