"""Build the student notebooks in notebooks/ from the instructor notebooks in solutions/.

In a solution notebook, an exercise's answer sits between nbgrader's markers::

    def q_sample(x0, t, noise, schedule):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

and a later code cell calls ``check("<id>", q_sample)``. The student copy replaces each marked
region with ``STUB`` at the marker's indentation. In markdown cells (answers to "check your
understanding") the region between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->`` becomes
``MARKDOWN_PROMPT``. Outputs, execution counts and stored widget state are cleared, and the
``nbval-check-output`` tag dropped (a student copy has no reference output to compare against);
everything else stays identical.

Grading metadata is derived from the same markers, so it follows every edit: ``graded_solution``
marks each exercise cell as an nbgrader solution cell, each check cell as an autograded test cell
worth ``CHECK_POINTS`` (under nbgrader, a failing ``check`` raises), and each discussion cell as a
manually graded answer worth one point per numbered question. Grade ids come from the exercise ids
(discussion cells: their order), so they stay the same across rebuilds. The stubs are also
nbgrader's (see nbgrader_config.py), so ``nbgrader generate_assignment`` writes the same code cells
as this build.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

from ._io import write_atomically

CODE_BEGIN, CODE_END = "### BEGIN SOLUTION", "### END SOLUTION"
MARKDOWN_BEGIN, MARKDOWN_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
CHECK_OUTPUT_MARKER = "# NBVAL_CHECK_OUTPUT"   # accepted in solutions; the build turns it into the tag
CHECK_OUTPUT_TAG = "nbval-check-output"
CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([^"']+)["']""")
STUB = 'raise NotImplementedError("replace this line with your code, then run the check below")'
MARKDOWN_PROMPT = "*Your answer:* (write it here; the instructor's copy has a model answer)"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
NBGRADER_SCHEMA_VERSION = 3
CHECK_POINTS = 1
QUESTION_LINE = re.compile(r"^\d+\.\s", flags=re.MULTILINE)


class AuthoringError(ValueError):
    """A solution notebook breaks the authoring conventions (unbalanced markers, exercise without a check)."""


def solution_regions(source: str, begin: str, end: str) -> list[tuple[int, int]]:
    """(begin_line, end_line) index pairs of every marked region in ``source``; raises on unbalanced markers."""
    regions, start = [], None
    for number, line in enumerate(source.splitlines()):
        marker = line.strip()
        if marker not in (begin, end) and any(word in line for word in ("BEGIN SOLUTION", "END SOLUTION")):
            # nbgrader treats any line containing these words as a marker: keep the two builds identical
            raise AuthoringError(f"line {number + 1}: write {begin!r} / {end!r} alone on their line")
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


def _grade_id(prefix: str, exercise_id: str) -> str:
    return prefix + re.sub(r"[^0-9A-Za-z]+", "_", exercise_id)


def _nbgrader(grade_id: str, grade: bool, solution: bool, locked: bool, points: int | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": NBGRADER_SCHEMA_VERSION,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def _set_tag(cell, tag: str, present: bool) -> None:
    tags = [existing for existing in cell.metadata.get("tags", []) if existing != tag] + ([tag] if present else [])
    if tags:
        cell.metadata["tags"] = tags
    else:
        cell.metadata.pop("tags", None)


def _unique(grade_id: str, used: set) -> str:
    """nbgrader needs unique grade ids: a second cell of the same exercise gets a numbered id."""
    unique, number = grade_id, 1
    while unique in used:
        number += 1
        unique = f"{grade_id}_{number}"
    used.add(unique)
    return unique


def graded_solution(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of a solution notebook with nbgrader metadata and nbval tags derived from its markers.

    Idempotent: cells that are neither exercise, check nor discussion cells lose any nbgrader
    metadata, so the metadata always says what the cell contents say.
    """
    graded = copy.deepcopy(solution)
    ids = _exercise_ids(graded.cells)
    discussions, used = 0, set()
    for index, cell in enumerate(graded.cells):
        meta, is_check = None, False
        if cell.cell_type == "code":
            called = CHECK_CALL.search(cell.source)
            if index in ids:
                meta = _nbgrader(_unique(_grade_id("answer_", ids[index]), used), grade=False, solution=True, locked=False)
            elif called:
                is_check = True
                meta = _nbgrader(_unique(_grade_id("check_", called.group(1)), used), grade=True, solution=False, locked=True,
                                 points=CHECK_POINTS)
                cell.source = "\n".join(line for line in cell.source.splitlines()
                                        if line.strip() != CHECK_OUTPUT_MARKER)
            _set_tag(cell, CHECK_OUTPUT_TAG, is_check)
        elif cell.cell_type == "markdown" and solution_regions(cell.source, MARKDOWN_BEGIN, MARKDOWN_END):
            discussions += 1
            questions = len(QUESTION_LINE.findall(cell.source.split(MARKDOWN_BEGIN)[0]))
            meta = _nbgrader(f"discussion_{discussions}", grade=True, solution=True, locked=False,
                             points=max(questions, 1))
        if meta is None:
            cell.metadata.pop("nbgrader", None)
        else:
            cell.metadata["nbgrader"] = meta
    return graded


def student_notebook(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student copy of a solution notebook (the input is not modified); it keeps the nbgrader metadata."""
    student = graded_solution(solution)
    for index, cell in enumerate(student.cells):
        try:
            if cell.cell_type == "code":
                cell.source = _replace_regions(cell.source, CODE_BEGIN, CODE_END, STUB)
                cell.outputs = []
                cell.execution_count = None
                _set_tag(cell, CHECK_OUTPUT_TAG, False)
            elif cell.cell_type == "markdown":
                cell.source = _replace_regions(cell.source, MARKDOWN_BEGIN, MARKDOWN_END, MARKDOWN_PROMPT)
        except AuthoringError as error:
            raise AuthoringError(f"cell {index + 1}: {error}") from None
        cell.metadata.pop("execution", None)
    student.metadata.pop("widgets", None)
    return student


def _notebook_text(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook) + "\n"


def _write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path`` (version 4); AuthoringError naming the file if it is not a valid notebook."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises JSON, schema, type and attribute errors for malformed files
        text = " ".join(str(error).split())[:200]
        raise AuthoringError(f"{path}: not a readable Jupyter notebook ({type(error).__name__}: {text})") from None


def build(solutions_dir: Path, notebooks_dir: Path, check: bool = False) -> list[Path]:
    """Refresh the solutions' grading metadata and write every student notebook; return the files that changed.

    With check=True nothing is written: the result lists the files the build would change, and stray
    student notebooks (no solution notebook of that name).
    """
    solutions = sorted(Path(solutions_dir).glob(NOTEBOOK_GLOB))
    if not solutions:
        raise AuthoringError(f"no solution notebooks matching {NOTEBOOK_GLOB} in {solutions_dir}")
    notebooks_dir = Path(notebooks_dir)
    changed = []
    for path in solutions:
        solution = read_notebook(path)
        try:
            outputs = {path: _notebook_text(graded_solution(solution)),
                       notebooks_dir / path.name: _notebook_text(student_notebook(solution))}
        except AuthoringError as error:
            raise AuthoringError(f"{path}: {error}") from None
        for target, text in outputs.items():
            if target.exists() and target.read_text(encoding="utf-8") == text:
                continue
            changed.append(target)
            if not check:
                _write_text(target, text)
    expected = {path.name for path in solutions}
    return changed + [path for path in sorted(notebooks_dir.glob(NOTEBOOK_GLOB)) if path.name not in expected]


def execute_solutions(solutions_dir: Path, names: list[str] | None = None, timeout: int = 600) -> None:
    """Run solution notebooks top to bottom and store their outputs (the instructors' reference figures).

    names: notebook names or prefixes ("01", "03_unet"); every notebook when empty. Each widget output is
    replaced by what it showed at the end of the run (``stored_outputs.freeze_widgets``: an interact's
    figure, a progress bar's final line), then the widget state is dropped: it adds hundreds of kilobytes
    per notebook, and the widgets re-render when run. Every notebook gets the same kernelspec.
    """
    from nbclient import NotebookClient

    from .grading import sliced_polling_config
    from .stored_outputs import KERNELSPEC, freeze_widgets

    paths = sorted(Path(solutions_dir).glob(NOTEBOOK_GLOB))
    if names:
        paths = [path for path in paths if any(path.name.startswith(name) for name in names)]
        if not paths:
            raise AuthoringError(f"no solution notebook in {solutions_dir} starts with any of {names}")
    for path in paths:
        print(f"executing {path} ...", flush=True)
        notebook = read_notebook(path)
        NotebookClient(notebook, timeout=timeout, kernel_name="python3", config=sliced_polling_config(),
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        freeze_widgets(notebook)
        notebook.metadata.pop("widgets", None)
        notebook.metadata["kernelspec"] = dict(KERNELSPEC)
        _write_text(path, _notebook_text(graded_solution(notebook)))
