"""What a check shows: one verdict, printed once, readable on any terminal, and usable by nbgrader."""
from __future__ import annotations

import os
import sys
import textwrap

PASSED, NOT_YET = "✅ passed", "❌ not yet"
WIDTH = 90
HINT_INDENT = "   "
# nbgrader sets NBGRADER_EXECUTION to "autograde" (converters/autograde.py) or "validate" (validator.py)
# while it runs a notebook; a failing check must then raise, so that the test cell loses its points.
GRADING_MODES = ("autograde", "validate")


class Verdict:
    """The result of ``check``: truthy when the exercise passed; shown once (``check`` prints it).

    In a notebook ``check(...)`` is usually a cell's last expression; ``_ipython_display_`` showing
    nothing keeps Jupyter from echoing the verdict a second time (no ``Out[n]: True``).
    """

    def __init__(self, passed: bool, message: str):
        self.passed = passed
        self.message = message

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"Verdict(passed={self.passed})"

    def _ipython_display_(self) -> None:
        pass


def wrap(text: str) -> str:
    """Wrap each line of a message at word boundaries to ~WIDTH characters, continuation lines indented."""
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        indent = line[: len(line) - len(stripped)]
        lines.append(textwrap.fill(stripped, width=WIDTH, initial_indent=indent, subsequent_indent=indent + HINT_INDENT,
                                   break_long_words=False, break_on_hyphens=False))
    return "\n".join(lines)


def show(message: str) -> None:
    """Print the message; on a terminal that cannot encode the marks, print the plain words instead."""
    try:
        print(message, flush=True)
    except UnicodeEncodeError:
        encoding = getattr(sys.stdout, "encoding", None) or "ascii"
        plain = message.replace("✅ ", "").replace("❌ ", "")
        print(plain.encode(encoding, errors="replace").decode(encoding), flush=True)


def grading() -> bool:
    return os.environ.get("NBGRADER_EXECUTION", "").lower() in GRADING_MODES


def deliver(passed: bool, text: str) -> Verdict:
    """Show the verdict; under nbgrader's autograding a failure then raises AssertionError."""
    message = wrap(f"{PASSED if passed else NOT_YET} - {text}")
    show(message)
    if not passed and grading():
        raise AssertionError(message)
    return Verdict(passed, message)
