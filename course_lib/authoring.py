"""Build the student notebooks in notebooks/ from the instructor notebooks in solutions/.

In a solution notebook, an exercise's answer sits between nbgrader's markers::

    def q_sample(x0, t, noise, schedule):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

and a later code cell calls ``check("<id>", q_sample)``. The student copy replaces each marked
region with ``raise NotImplementedError("Exercise <id>: ...")`` at the marker's indentation. In
markdown cells (answers to "check your understanding") the region between ``<!-- BEGIN SOLUTION -->``
and ``<!-- END SOLUTION -->`` becomes a prompt for the student's own answer. Outputs, execution
counts and stored widget state are cleared and ``# NBVAL_CHECK_OUTPUT`` markers dropped (a student
copy has no reference output to compare against); everything else stays identical.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

CODE_BEGIN, CODE_END = "### BEGIN SOLUTION", "### END SOLUTION"
MARKDOWN_BEGIN, MARKDOWN_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
CHECK_OUTPUT_MARKER = "# NBVAL_CHECK_OUTPUT"
CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([^"']+)["']""")
MARKDOWN_PROMPT = "*Your answer:* (write it here; the instructor's copy has a model answer)"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"


class AuthoringError(ValueError):
    """A solution notebook breaks the authoring conventions (unbalanced markers, exercise without a check)."""


def solution_regions(source: str, begin: str, end: str) -> list[tuple[int, int]]:
    """(begin_line, end_line) index pairs of every marked region in ``source``; raises on unbalanced markers."""
    regions, start = [], None
    for number, line in enumerate(source.splitlines()):
        marker = line.strip()
        if marker == begin:
            if start is not None:
                raise AuthoringError(f"line {number + 1}: {begin!r} inside another solution region")
            start = number
        elif marker == end:
            if start is None:
                raise AuthoringError(f"line {number + 1}: {end!r} without a {begin!r} before it")
            regions.append((start, number))
            start = None
    if start is not None:
        raise AuthoringError(f"line {start + 1}: {begin!r} is never closed by {end!r}")
    return regions


def solution_lines(source: str, cell_type: str) -> list[str]:
    """The lines inside the solution regions of a cell (markers excluded)."""
    begin, end = (CODE_BEGIN, CODE_END) if cell_type == "code" else (MARKDOWN_BEGIN, MARKDOWN_END)
    lines = source.splitlines()
    return [line for first, last in solution_regions(source, begin, end) for line in lines[first + 1:last]]


def _replace_regions(source: str, begin: str, end: str, replacement) -> str:
    lines = source.splitlines()
    for first, last in reversed(solution_regions(source, begin, end)):
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
        lines[first:last + 1] = [indent + replacement]
    return "\n".join(lines)


def _exercise_ids(cells) -> dict[int, str]:
    """For each code cell with a solution region, the id checked by the first later code cell calling check()."""
    ids, pending = {}, []
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        called = CHECK_CALL.search(cell.source)
        if called:
            for waiting in pending:
                ids[waiting] = called.group(1)
            pending = []
        if solution_regions(cell.source, CODE_BEGIN, CODE_END):
            pending.append(index)
    if pending:
        raise AuthoringError(f"code cell {pending[0] + 1} has a solution region but no later cell calls "
                             f"check(\"<id>\", ...)")
    return ids


def student_notebook(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student copy of a solution notebook (the input is not modified)."""
    student = copy.deepcopy(solution)
    ids = _exercise_ids(student.cells)
    for index, cell in enumerate(student.cells):
        try:
            if cell.cell_type == "code":
                stub = (f'raise NotImplementedError("Exercise {ids.get(index)}: replace this line with your code, '
                        f'then run the check cell below.")')
                source = _replace_regions(cell.source, CODE_BEGIN, CODE_END, stub)
                cell.source = "\n".join(line for line in source.splitlines()
                                        if line.strip() != CHECK_OUTPUT_MARKER)
                cell.outputs = []
                cell.execution_count = None
            elif cell.cell_type == "markdown":
                cell.source = _replace_regions(cell.source, MARKDOWN_BEGIN, MARKDOWN_END, MARKDOWN_PROMPT)
        except AuthoringError as error:
            raise AuthoringError(f"cell {index + 1}: {error}") from None
        cell.metadata.pop("execution", None)
    student.metadata.pop("widgets", None)
    return student


def build(solutions_dir: Path, notebooks_dir: Path, check: bool = False) -> list[str]:
    """Write (or, with check=True, only compare) every student notebook. Returns the names that differ."""
    solutions = sorted(Path(solutions_dir).glob(NOTEBOOK_GLOB))
    if not solutions:
        raise AuthoringError(f"no solution notebooks matching {NOTEBOOK_GLOB} in {solutions_dir}")
    notebooks_dir = Path(notebooks_dir)
    differing = []
    for path in solutions:
        try:
            text = nbformat.writes(student_notebook(nbformat.read(path, as_version=4))) + "\n"
        except AuthoringError as error:
            raise AuthoringError(f"{path}: {error}") from None
        target = notebooks_dir / path.name
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        differing.append(path.name)
        if not check:
            notebooks_dir.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    expected = {path.name for path in solutions}
    strays = [path.name for path in sorted(notebooks_dir.glob(NOTEBOOK_GLOB)) if path.name not in expected]
    return differing + [f"{name} (no solution notebook)" for name in strays]


def execute_solutions(solutions_dir: Path, names: list[str] | None = None, timeout: int = 600) -> None:
    """Run solution notebooks top to bottom and store their outputs (the instructors' reference figures).

    names: notebook names or prefixes ("01", "03_unet"); every notebook when empty. The stored widget
    state is dropped: it adds hundreds of kilobytes per notebook, and the widgets re-render when run.
    """
    from nbclient import NotebookClient

    paths = sorted(Path(solutions_dir).glob(NOTEBOOK_GLOB))
    if names:
        paths = [path for path in paths if any(path.name.startswith(name) for name in names)]
        if not paths:
            raise AuthoringError(f"no solution notebook in {solutions_dir} starts with any of {names}")
    for path in paths:
        print(f"executing {path} ...", flush=True)
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        notebook.metadata.pop("widgets", None)
        path.write_text(nbformat.writes(notebook) + "\n", encoding="utf-8")
