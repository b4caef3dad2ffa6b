"""The build of notebooks/ from solutions/: stubs, cleared outputs, and notebooks/ kept in step."""
from pathlib import Path

import nbformat
import pytest

from course_lib.__main__ import main
from course_lib.authoring import (CHECK_CALL, CHECK_OUTPUT_MARKER, AuthoringError, build, solution_lines,
                                  student_notebook)
from course_lib.checks import EXERCISES

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    for kind, source in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if kind == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text="old output")]
            cell.execution_count = 3
        nb.cells.append(cell)
    return nb


def test_solution_region_becomes_an_indented_stub_named_after_the_check():
    nb = notebook(("code", "def f(x):\n    \"\"\"Doc.\"\"\"\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n"
                           "    ### END SOLUTION\n"),
                  ("code", f"{CHECK_OUTPUT_MARKER}\ncheck(\"01.f\", f)"))
    student = student_notebook(nb)
    assert student.cells[0].source == ('def f(x):\n    """Doc."""\n    raise NotImplementedError("Exercise 01.f: '
                                       'replace this line with your code, then run the check cell below.")')
    assert student.cells[1].source == 'check("01.f", f)'
    assert all(cell.outputs == [] and cell.execution_count is None for cell in student.cells)
    assert nb.cells[0].outputs, "the solution notebook itself must not be modified"


def test_markdown_answers_are_removed():
    nb = notebook(("markdown", "**Q1.** Why?\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->\nMore text."))
    source = student_notebook(nb).cells[0].source
    assert "Because." not in source and "**Q1.** Why?" in source and "More text." in source
    assert "Your answer" in source


@pytest.mark.parametrize("cells, message", [
    ((("code", "### BEGIN SOLUTION\nx = 1\n"), ("code", "check('a', f)")), "never closed"),
    ((("code", "x = 1\n### END SOLUTION\n"), ("code", "check('a', f)")), "without a"),
    ((("code", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n"),), "no later cell calls check"),
])
def test_broken_markers_are_reported(cells, message):
    with pytest.raises(AuthoringError, match=message):
        student_notebook(notebook(*cells))


def test_build_writes_then_check_passes(tmp_path):
    solutions, notebooks = tmp_path / "solutions", tmp_path / "notebooks"
    solutions.mkdir()
    nbformat.write(notebook(("code", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"),
                            ("code", "check('x.f', f)")), solutions / "01_demo.ipynb")
    assert build(solutions, notebooks, check=True) == ["01_demo.ipynb"]
    assert not notebooks.exists(), "--check must write nothing"
    assert build(solutions, notebooks) == ["01_demo.ipynb"]
    assert build(solutions, notebooks, check=True) == []
    (notebooks / "02_stray.ipynb").write_text("{}")
    assert build(solutions, notebooks, check=True) == ["02_stray.ipynb (no solution notebook)"]


def test_build_notebooks_check_passes_on_the_course():
    assert main(["build-notebooks", "--check"]) == 0


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_no_solution_line_reaches_the_student_copy(path):
    solution = nbformat.read(path, as_version=4)
    student_text = "\n".join(cell.source for cell in nbformat.read(ROOT / "notebooks" / path.name, as_version=4).cells)
    student_lines = {line.strip() for line in student_text.splitlines()}
    leaked = [line for cell in solution.cells for line in solution_lines(cell.source, cell.cell_type)
              if line.strip() and line.strip() in student_lines]
    assert not leaked, f"solution lines visible in notebooks/{path.name}: {leaked}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_every_check_cell_is_registered_verified_and_passing(path):
    """Check cells carry NBVAL_CHECK_OUTPUT and their stored output is ✅, so CI fails if a solution regresses."""
    solution = nbformat.read(path, as_version=4)
    check_cells = [cell for cell in solution.cells if cell.cell_type == "code" and CHECK_CALL.search(cell.source)]
    assert check_cells, f"{path.name} has no exercises"
    for cell in check_cells:
        exercise_id = CHECK_CALL.search(cell.source).group(1)
        assert exercise_id in EXERCISES, f"{path.name}: {exercise_id} is not registered in course_lib.checks"
        assert exercise_id.startswith(path.name[:2] + "."), f"{exercise_id} should be numbered after {path.name}"
        assert cell.source.splitlines()[0].strip() == CHECK_OUTPUT_MARKER
        text = "".join(output.get("text", "") for output in cell.outputs)
        assert text.startswith("✅"), f"{path.name}: stored output of check({exercise_id!r}) is {text!r}"


def test_every_registered_exercise_appears_in_a_notebook():
    used = {match.group(1) for path in SOLUTIONS for cell in nbformat.read(path, as_version=4).cells
            for match in CHECK_CALL.finditer(cell.source)}
    assert set(EXERCISES) - used == set()
