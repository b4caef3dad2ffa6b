"""Command line: ``python -m course_lib <command> --help``."""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LONG_RUN = 2e8   # pixel-channel-records in a procedural run worth a progress bar (about a second)


def build_notebooks(args: argparse.Namespace) -> int:
    from .authoring import AuthoringError, build, execute_solutions

    try:
        if args.execute is not None:
            execute_solutions(args.solutions, args.execute)
        differing = build(args.solutions, args.notebooks, check=args.check)
    except AuthoringError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        if differing:
            print("notebooks/ is out of date with solutions/; run `python -m course_lib build-notebooks`:\n  "
                  + "\n  ".join(differing), file=sys.stderr)
            return 1
        print("notebooks/ matches solutions/")
        return 0
    print("\n".join(f"wrote {args.notebooks / name}" for name in differing) or "notebooks/ already up to date")
    return 0


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: nobody ever sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _png_bytes(image) -> bytes:
    from PIL import Image

    from .procedural import to_uint8

    pixels = to_uint8(image)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _csv_bytes(records: list, columns) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return text.getvalue().encode()


def procedural_demo(args: argparse.Namespace) -> int:
    from . import procedural

    try:  # everything is checked before anything is created
        procedural.validate_arguments(args.height, args.width, args.channels, args.steps, args.seed,
                                      args.easing, args.noise_schedule)
        if args.channels > 4:
            raise ValueError(f"--channels must be 1 to 4 to fit in a PNG (grey, grey + alpha, RGB, RGBA), "
                             f"got {args.channels}")
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out must be a directory; {args.out} is a file")
    except (TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    work = args.height * args.width * args.channels * (args.steps // procedural.STATS_EVERY + 1)
    result = procedural.generate(args.height, args.width, args.channels, args.steps, args.seed, args.easing,
                                 args.noise_schedule, save_steps=True, show_progress=work > LONG_RUN)
    files = {"final.png": _png_bytes(result.image),
             "steps.png": _png_bytes(procedural.steps_strip(result.steps)),
             "stats.csv": _csv_bytes(result.stats, procedural.STAT_KEYS)}
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            _write_atomically(args.out / name, data)
    except OSError as error:
        print(f"error: cannot write to {args.out}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(str(args.out / name) for name in files)} "
          f"(steps at t = {', '.join(map(str, result.step_t))})")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_lib", description="diffusion-course tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build-notebooks", help="write notebooks/ (student copies) from solutions/",
                                description="Write the student copies in notebooks/ from the instructor "
                                            "notebooks in solutions/: solution regions become stubs, outputs "
                                            "are cleared.")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if notebooks/ differs from what the build would write")
    build.add_argument("--execute", nargs="*", metavar="NAME",
                       help="first run the solution notebooks (all, or those whose names start with NAME) "
                            "and store their outputs")
    build.add_argument("--solutions", type=Path, default=ROOT / "solutions", help="default: %(default)s")
    build.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="default: %(default)s")
    build.set_defaults(run=build_notebooks)

    from .procedural import EASINGS, NOISE_SCHEDULES

    demo = commands.add_parser("procedural", help="run the procedural demo of notebook 02 (seed 000)",
                               description="Blend noise into a random sine pattern over T steps (not a trained "
                                           "model: the target is drawn first). Writes final.png, steps.png (the "
                                           "images at every t divisible by 10, from the first to t = 0, left to right) and "
                                           "stats.csv (t, mean, std, min, max, noise_level every 5 steps) to DIR.")
    demo.add_argument("--height", type=int, default=128, help="image height in pixels; default %(default)s")
    demo.add_argument("--width", type=int, default=128, help="image width in pixels; default %(default)s")
    demo.add_argument("--channels", type=int, default=3, help="1 (grey) to 4 (RGBA); default %(default)s")
    demo.add_argument("--steps", type=int, default=50, metavar="T", help="number of steps T; default %(default)s")
    demo.add_argument("--seed", type=int, default=0, help="random seed (>= 0); default %(default)s")
    demo.add_argument("--easing", choices=sorted(EASINGS), default="cubic", help="default %(default)s")
    demo.add_argument("--noise-schedule", choices=sorted(NOISE_SCHEDULES), default="quadratic",
                      help="default %(default)s")
    demo.add_argument("--out", type=Path, required=True, metavar="DIR",
                      help="output directory (created if missing; files in it are replaced)")
    demo.set_defaults(run=procedural_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
