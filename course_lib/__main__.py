"""Command line: ``python -m course_lib <command> --help``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_notebooks(args: argparse.Namespace) -> int:
    from .authoring import AuthoringError, build, execute_solutions

    try:
        if args.execute:
            print(f"executing every notebook in {args.solutions} (stores reference outputs) ...", flush=True)
            execute_solutions(args.solutions)
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


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_lib", description="diffusion-course tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build-notebooks", help="write notebooks/ (student copies) from solutions/",
                                description="Write the student copies in notebooks/ from the instructor "
                                            "notebooks in solutions/: solution regions become stubs, outputs "
                                            "are cleared.")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if notebooks/ differs from what the build would write")
    build.add_argument("--execute", action="store_true",
                       help="first run every solution notebook and store its outputs")
    build.add_argument("--solutions", type=Path, default=ROOT / "solutions", help="default: %(default)s")
    build.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="default: %(default)s")
    build.set_defaults(run=build_notebooks)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
