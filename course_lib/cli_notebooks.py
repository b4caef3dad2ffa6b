"""``python -m course_lib build-notebooks``: write the student copies in notebooks/ from solutions/ (authoring.py).

authoring.py (and nbformat, the ``instructor`` extra) is imported only when the command runs; without it the
command says so in one line.
"""
from __future__ import annotations

import argparse
import sys

from .cli import require_writable_directory


def build_notebooks(args: argparse.Namespace) -> int:
    """``build-notebooks``: refresh solutions' grading metadata and write notebooks/ (optionally executing
    solutions first), or --check."""
    if not args.solutions.is_dir():
        print(f"error: no folder {args.solutions.resolve()}: run this in the course's folder or pass --solutions",
              file=sys.stderr)
        return 2
    try:
        require_writable_directory("--notebooks", args.notebooks / "notebook.ipynb")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        from .authoring import AuthoringError, build, execute_solutions
    except ImportError as error:
        print(f"error: build-notebooks needs {error.name}: pip install 'course_lib[instructor]'", file=sys.stderr)
        return 1
    try:
        if args.execute is not None:
            execute_solutions(args.solutions, args.execute)
        changed = build(args.solutions, args.notebooks, check=args.check)
    except AuthoringError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        if changed:
            print("notebooks/ or the solutions' grading metadata is out of date; run `python -m course_lib "
                  "build-notebooks`:\n  " + "\n  ".join(map(str, changed)), file=sys.stderr)
            return 1
        print("notebooks/ matches solutions/ and every solution carries its grading metadata")
        return 0
    print("\n".join(f"wrote {path}" for path in changed) or "notebooks/ already up to date")
    return 0
