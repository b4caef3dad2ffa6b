"""The build of notebooks/ from solutions/: stubs, cleared outputs, and notebooks/ kept in step."""
from pathlib import Path

import nbformat
import pytest

from course_lib.__main__ import main
from course_lib.authoring import (CHECK_CALL, CHECK_OUTPUT_MARKER, CHECK_OUTPUT_TAG, STUB, AuthoringError, build,
                                  graded_solution, solution_lines, student_notebook)
from course_lib.checks import EXERCISES

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
STUDENT_NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_STUB_LINE = 100


def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    for kind, source in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if kind == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text="old output")]
            cell.execution_count = 3
        nb.cells.append(cell)
    return nb


def test_solution_region_becomes_an_indented_stub_and_the_check_cell_loses_its_nbval_marker():
    nb = notebook(("code", "def f(x):\n    \"\"\"Doc.\"\"\"\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n"
                           "    ### END SOLUTION\n"),
                  ("code", f"{CHECK_OUTPUT_MARKER}\ncheck(\"01.f\", f)"))
    student = student_notebook(nb)
    assert student.cells[0].source == f'def f(x):\n    """Doc."""\n    {STUB}'
    assert student.cells[1].source == 'check("01.f", f)'
    assert "tags" not in student.cells[1].metadata
    assert all(cell.outputs == [] and cell.execution_count is None for cell in student.cells)
    assert nb.cells[0].outputs, "the solution notebook itself must not be modified"


def test_graded_solution_carries_nbgrader_metadata_derived_from_the_markers():
    nb = notebook(("markdown", "# Title"),
                  ("code", "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"),
                  ("code", f"{CHECK_OUTPUT_MARKER}\ncheck('01.f', f)"),
                  ("code", "print(1)"),
                  ("markdown", "## Questions\n\n1. Why?\n2. How?\n<!-- BEGIN SOLUTION -->\nSo.\n<!-- END SOLUTION -->"))
    nb.cells[3].metadata["nbgrader"] = {"grade": True, "grade_id": "stale"}   # stale metadata is removed
    graded = graded_solution(nb)
    meta = [cell.metadata.get("nbgrader") for cell in graded.cells]
    assert meta[0] is None and meta[3] is None
    assert meta[1] == {"grade": False, "grade_id": "answer_01_f", "locked": False, "schema_version": 3,
                       "solution": True, "task": False}
    assert meta[2] == {"grade": True, "grade_id": "check_01_f", "locked": True, "points": 1, "schema_version": 3,
                       "solution": False, "task": False}
    assert meta[4] == {"grade": True, "grade_id": "discussion_1", "locked": False, "points": 2,
                       "schema_version": 3, "solution": True, "task": False}
    assert graded.cells[2].source == "check('01.f', f)" and graded.cells[2].metadata["tags"] == [CHECK_OUTPUT_TAG]
    assert graded_solution(graded) == graded, "the metadata must be stable across rebuilds"
    assert "nbgrader" not in nb.cells[1].metadata, "the input is not modified"


def test_two_cells_of_one_exercise_get_distinct_grade_ids():
    nb = notebook(("code", "def f():\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION"),
                  ("code", "def g():\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION"),
                  ("code", "check('01.f', f)"))
    ids = [cell.metadata["nbgrader"]["grade_id"] for cell in graded_solution(nb).cells]
    assert ids == ["answer_01_f", "answer_01_f_2", "check_01_f"]


def test_markdown_answers_are_removed():
    nb = notebook(("markdown", "**Q1.** Why?\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->\nMore text."))
    source = student_notebook(nb).cells[0].source
    assert "Because." not in source and "**Q1.** Why?" in source and "More text." in source
    assert "Your answer" in source


@pytest.mark.parametrize("cells, message", [
    ((("code", "### BEGIN SOLUTION\nx = 1\n"), ("code", "check('a', f)")), "never closed"),
    ((("code", "x = 1\n### END SOLUTION\n"), ("code", "check('a', f)")), "without a"),
    ((("code", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n"),), "no later cell calls check"),
    ((("code", "x = 1  ### BEGIN SOLUTION\n### END SOLUTION\n"), ("code", "check('a', f)")), "alone on their line"),
])
def test_broken_markers_are_reported(cells, message):
    with pytest.raises(AuthoringError, match=message):
        student_notebook(notebook(*cells))


def test_build_writes_then_check_passes(tmp_path):
    solutions, notebooks = tmp_path / "solutions", tmp_path / "notebooks"
    solutions.mkdir()
    nbformat.write(notebook(("code", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"),
                            ("code", "check('x.f', f)")), solutions / "01_demo.ipynb")
    before = (solutions / "01_demo.ipynb").read_text()
    assert build(solutions, notebooks, check=True) == [solutions / "01_demo.ipynb", notebooks / "01_demo.ipynb"]
    assert not notebooks.exists() and (solutions / "01_demo.ipynb").read_text() == before, "--check writes nothing"
    assert build(solutions, notebooks) == [solutions / "01_demo.ipynb", notebooks / "01_demo.ipynb"]
    assert nbformat.read(solutions / "01_demo.ipynb", as_version=4).cells[1].metadata["nbgrader"]["points"] == 1
    assert build(solutions, notebooks, check=True) == []
    (notebooks / "02_stray.ipynb").write_text("{}")
    assert build(solutions, notebooks, check=True) == [notebooks / "02_stray.ipynb"]


def test_build_check_fails_when_a_solution_lacks_its_grading_metadata(tmp_path):
    solutions, notebooks = tmp_path / "solutions", tmp_path / "notebooks"
    solutions.mkdir()
    path = solutions / "01_demo.ipynb"
    nbformat.write(notebook(("code", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"),
                            ("code", "check('x.f', f)")), path)
    build(solutions, notebooks)
    solution = nbformat.read(path, as_version=4)
    del solution.cells[0].metadata["nbgrader"]
    nbformat.write(solution, path)
    assert build(solutions, notebooks, check=True) == [path]


def test_build_notebooks_check_passes_on_the_course():
    assert main(["build-notebooks", "--check", "--solutions", str(ROOT / "solutions"),
                 "--notebooks", str(ROOT / "notebooks")]) == 0


def test_build_notebooks_defaults_to_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["build-notebooks", "--check"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"no folder {tmp_path / 'solutions'}" in error
    (tmp_path / "solutions").mkdir()
    nbformat.write(notebook(("code", "x = 1")), tmp_path / "solutions" / "01_demo.ipynb")
    assert main(["build-notebooks"]) == 0
    assert (tmp_path / "notebooks" / "01_demo.ipynb").exists()


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=[p.name for p in STUDENT_NOTEBOOKS])
def test_stub_lines_fit_a_notebook_cell(path):
    stubs = [line for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"
             for line in cell.source.splitlines() if "NotImplementedError" in line]
    assert stubs, f"{path.name} has no exercise stub"
    too_wide = [line for line in stubs if len(line) > MAX_STUB_LINE]
    assert not too_wide, f"stub lines wider than {MAX_STUB_LINE} characters scroll sideways: {too_wide}"


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
    """Check cells are graded, tagged nbval-check-output and their stored output is ✅: CI fails if a solution regresses."""
    solution = nbformat.read(path, as_version=4)
    check_cells = [cell for cell in solution.cells if cell.cell_type == "code" and CHECK_CALL.search(cell.source)]
    assert check_cells, f"{path.name} has no exercises"
    for cell in check_cells:
        exercise_id = CHECK_CALL.search(cell.source).group(1)
        assert exercise_id in EXERCISES, f"{path.name}: {exercise_id} is not registered in course_lib.checks"
        assert exercise_id.startswith(path.name[:2] + "."), f"{exercise_id} should be numbered after {path.name}"
        assert CHECK_OUTPUT_TAG in cell.metadata.get("tags", [])
        assert cell.metadata["nbgrader"]["grade"] and cell.metadata["nbgrader"]["points"] > 0
        text = "".join(output.get("text", "") for output in cell.outputs)
        assert text.startswith("✅"), f"{path.name}: stored output of check({exercise_id!r}) is {text!r}"


def test_every_registered_exercise_appears_in_a_notebook():
    used = {match.group(1) for path in SOLUTIONS for cell in nbformat.read(path, as_version=4).cells
            for match in CHECK_CALL.finditer(cell.source)}
    assert set(EXERCISES) - used == set()
