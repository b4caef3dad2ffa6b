"""Grading with nbgrader, for real: generate the assignment, autograde submissions, read the marks.

Two temporary course directories, one per grading process (each has its own gradebook), graded in
parallel: `alice` submits solution notebooks, `carol` a copy of one with a wrong answer pasted into
one exercise, `bob` an untouched student copy from notebooks/.

Grading executes notebooks for minutes, so it starts as soon as the session's tests are collected
(tests/conftest.py calls ``start_grading``, and runs the browser tests last) and runs beside the
single-threaded unit tests, on the core they leave idle. The ``graded`` fixture waits for it.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest

nbgrader = pytest.importorskip("nbgrader", reason="nbgrader is the instructor extra: pip install '.[instructor]'")
from nbgrader.api import Gradebook  # noqa: E402
from nbgrader.preprocessors import Execute  # noqa: E402
from traitlets.config import PyFileConfigLoader  # noqa: E402

from course_lib.authoring import CODE_BEGIN, CODE_END, solution_regions  # noqa: E402
from course_lib.grading import POLL_SLICE, SlicedPollingChannel, SlicedPollingKernelClient  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "solutions"
NOTEBOOKS = sorted(path.name for path in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
WRONG_NOTEBOOK = "01_forward_process.ipynb"    # carol's: the first exercise gets a wrong answer
WRONG_ANSWER = "return None  # a wrong answer"
# bob hands in the untouched student copy of the first notebook: every student copy runs to its end with its ❌ in
# nbval or the browser tests, and every stub fails its check in test_checks, so one shows nbgrader's zero marks
# without spending the minutes of all eight (the suite's budget).
UNTOUCHED_NOTEBOOKS = ("01_forward_process.ipynb",)
# alice hands in the solutions of three notebooks: the first (carol's wrong answer is scored against it), 02 (where
# jupyter_client's missed wakeup once hung autograde after an interact cell) and the capstone (its other kinds of
# exercise). Every solution notebook runs in the browser tests (nbval without Chromium), where each check cell,
# the same assert nbgrader scores, must show ✅, and generate_assignment takes all eight. Grading the other five
# here too would run them twice: about 260 s of CPU more, two minutes of the suite on a 2-core machine.
GRADED_SOLUTIONS = (WRONG_NOTEBOOK, "02_procedural_demo.ipynb", "08_capstone.ipynb")
GRADING_SECONDS = 1800    # whole autograde run of one course directory: a hang fails the test here
CELL_SECONDS = 600        # per cell, as nbval's --nbval-cell-timeout
NBGRADER = (sys.executable, "-m", "nbgrader")


def nbgrader_command(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([*NBGRADER, *args], cwd=cwd, env=nbgrader_environment(), capture_output=True, text=True,
                          timeout=timeout)


def nbgrader_environment() -> dict:
    # nbgrader runs `alembic` by name: the environment's scripts folder must be on PATH.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "OMP_NUM_THREADS": "1"}   # two graders share the machine's cores


def make_course(path: Path) -> Path:
    path.mkdir()
    shutil.copytree(ROOT / "solutions", path / ASSIGNMENT)
    shutil.copy(ROOT / "nbgrader_config.py", path / "nbgrader_config.py")
    result = nbgrader_command("generate_assignment", ASSIGNMENT, cwd=path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def submit(course: Path, student: str, notebooks: dict[str, nbformat.NotebookNode]) -> None:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    for name, notebook in notebooks.items():
        nbformat.write(notebook, folder / name)


def with_wrong_first_exercise(solution: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, str]:
    """The notebook with the first exercise's solution region replaced by a wrong answer, and that exercise's grade id."""
    notebook = nbformat.from_dict(solution)
    cell = next(cell for cell in notebook.cells if cell.cell_type == "code"
                and solution_regions(cell.source, CODE_BEGIN, CODE_END))
    lines = cell.source.splitlines()
    first, last = solution_regions(cell.source, CODE_BEGIN, CODE_END)[0]
    indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
    cell.source = "\n".join(lines[:first] + [indent + WRONG_ANSWER] + lines[last + 1:])
    return notebook, cell.metadata["nbgrader"]["grade_id"].replace("answer_", "check_", 1)


def autograded_scores(course: Path) -> dict:
    """student -> notebook -> grade id -> (score, max score), for the autograded test cells of the notebooks each
    student handed in (the gradebook also lists the assignment's other notebooks, at zero)."""
    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for submission in gradebook.assignment_submissions(ASSIGNMENT):
            handed_in = course / "submitted" / submission.student.id / ASSIGNMENT
            for notebook in submission.notebooks:
                if not (handed_in / f"{notebook.name}.ipynb").is_file():
                    continue
                scores.setdefault(submission.student.id, {})[notebook.name + ".ipynb"] = {
                    grade.name: (grade.auto_score, grade.max_score)
                    for grade in notebook.grades if grade.cell.cell_type == "code"}
    return scores


def grade(base: Path, graders: list) -> dict:
    """Make two course directories in ``base``, hand in the submissions, autograde both side by side (their
    processes go into ``graders`` as they start, for ``stop_grading``); return what the tests read."""
    first = make_course(base / "a")
    courses = first, shutil.copytree(first, base / "b")     # the same generated course: generate it once
    solutions = {name: nbformat.read(ROOT / "solutions" / name, as_version=4) for name in NOTEBOOKS}
    carol, wrong_id = with_wrong_first_exercise(solutions[WRONG_NOTEBOOK])
    # Two graders run side by side, one per course, each with about half of the work: alice's 01 and 02 with
    # carol's and bob's 01 in one, alice's 08 in the other.
    submit(courses[0], "alice", {name: solutions[name] for name in GRADED_SOLUTIONS[:2]})
    submit(courses[1], "alice", {name: solutions[name] for name in GRADED_SOLUTIONS[2:]})
    submit(courses[0], "carol", {WRONG_NOTEBOOK: carol})
    submit(courses[0], "bob", {name: nbformat.read(ROOT / "notebooks" / name, as_version=4)
                               for name in UNTOUCHED_NOTEBOOKS})
    start = time.monotonic()
    for course in courses:      # each in a session of its own: stop_grading ends it with its kernels
        graders.append(subprocess.Popen([*NBGRADER, "autograde", ASSIGNMENT, f"--Execute.timeout={CELL_SECONDS}"],
                                        cwd=course, env=nbgrader_environment(), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True))
    logs = [grader.communicate(timeout=max(1.0, GRADING_SECONDS - (time.monotonic() - start)))[0]
            for grader in graders]
    for grader, log in zip(graders, logs):
        assert grader.returncode == 0, log
    scores = {}
    for course in courses:
        for student, notebooks in autograded_scores(course).items():
            scores.setdefault(student, {}).update(notebooks)
    return {"scores": scores, "courses": courses, "wrong_id": wrong_id, "logs": logs,
            "seconds": time.monotonic() - start}


class BackgroundGrading:
    """``grade`` in a thread of its own, in a temporary folder; ``result`` waits for it, ``stop`` ends it."""

    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="course-nbgrader-"))
        self.graders: list[subprocess.Popen] = []
        self.outcome: dict | BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="nbgrader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome = grade(self.base, self.graders)
        except BaseException as error:      # raised again in the tests that wait for it
            self.outcome = error

    def result(self) -> dict:
        self.thread.join()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def stop(self) -> None:
        for grader in self.graders:
            if grader.poll() is None:
                os.killpg(grader.pid, signal.SIGKILL)
        self.thread.join()
        shutil.rmtree(self.base, ignore_errors=True)


BACKGROUND: list[BackgroundGrading] = []


def start_grading() -> None:
    """Start grading now, in the background (tests/conftest.py calls this when it collects ``graded``'s tests)."""
    BACKGROUND.append(BackgroundGrading())


def wait_for_grading() -> None:
    """Until the graders have finished (or failed: the tests that read their results report that)."""
    for background in list(BACKGROUND):
        background.thread.join()


def stop_grading() -> None:
    """Kill what still grades and remove its folder (after the module's tests, or when the session ends early)."""
    while BACKGROUND:
        BACKGROUND.pop().stop()


@pytest.fixture(scope="module")
def graded():
    yield BACKGROUND[0].result()
    stop_grading()


def code_sources(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def test_nbgrader_generate_assignment_makes_the_course_student_copies(graded):
    course = graded["courses"][0]
    for name in NOTEBOOKS:
        assert code_sources(course / "release" / ASSIGNMENT / name) == code_sources(ROOT / "notebooks" / name), name


def test_nbgrader_autograde_gives_solutions_full_marks(graded):
    alice = graded["scores"]["alice"]
    assert sorted(alice) == sorted(GRADED_SOLUTIONS)
    for name, grades in alice.items():
        assert grades, f"{name} has no autograded test cell"
        assert {grade_id: score for grade_id, score in grades.items() if score[0] != score[1]} == {}, name


def test_nbgrader_autograde_gives_untouched_student_copies_zero(graded):
    bob = graded["scores"]["bob"]
    assert sorted(bob) == sorted(UNTOUCHED_NOTEBOOKS)
    for name, grades in bob.items():
        assert grades and all(score == 0 for score, _ in grades.values()), f"{name}: {grades}"


def test_nbgrader_wrong_answer_loses_exactly_that_exercises_points(graded):
    alice, carol = graded["scores"]["alice"][WRONG_NOTEBOOK], graded["scores"]["carol"][WRONG_NOTEBOOK]
    lost = {grade_id: (alice[grade_id][0], score) for grade_id, (score, _) in carol.items()
            if score != alice[grade_id][0]}
    wrong_id = graded["wrong_id"]
    assert lost == {wrong_id: (alice[wrong_id][1], 0)}


def test_nbgrader_executes_every_notebook_to_the_end_without_timeouts(graded):
    for course in graded["courses"]:
        for path in sorted((course / "autograded").glob(f"*/{ASSIGNMENT}/*.ipynb")):
            cells = [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
            assert all(cell.execution_count for cell in cells), f"{path}: not every cell ran"
            errors = [(cell.metadata.get("nbgrader", {}).get("grade_id"), output.ename)
                      for cell in cells for output in cell.outputs if output.output_type == "error"]
            # Only a graded check cell may fail, and only with the AssertionError of a failed check.
            assert all(grade_id and grade_id.startswith("check_") and ename == "AssertionError"
                       for grade_id, ename in errors), f"{path}: {errors}"
    assert not any("Timeout" in log for log in graded["logs"])
    print(f"nbgrader: two autograde runs in parallel, in the background, took {graded['seconds']:.0f} s")


def test_nbgrader_config_installs_the_sliced_polling_client():
    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    manager = Execute(config=config, kernel_name="python3").create_kernel_manager()
    assert manager.client_factory is SlicedPollingKernelClient
    assert config.ClearSolutions.code_stub["python"].startswith("raise NotImplementedError(")


def test_sliced_polling_reads_a_message_whose_wakeup_was_missed(monkeypatch):
    """A first poll that misses a ready message costs one slice, not the caller's whole timeout."""
    import zmq
    import zmq.asyncio
    from jupyter_client.session import Session

    async def scenario():
        context = zmq.asyncio.Context()
        receiver, sender = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
        port = receiver.bind_to_random_port("tcp://127.0.0.1")
        sender.connect(f"tcp://127.0.0.1:{port}")
        session = Session()
        channel = SlicedPollingChannel(receiver, session)
        polls, real_poll = [], receiver.poll

        async def first_poll_misses(timeout=None, flags=zmq.POLLIN):
            polls.append(timeout)
            return 0 if len(polls) == 1 else await real_poll(timeout, flags)

        monkeypatch.setattr(receiver, "poll", first_poll_misses)
        session.send(sender, "execute_reply", {"status": "ok"})
        start = time.monotonic()
        message = await channel.get_msg(timeout=30)
        elapsed = time.monotonic() - start
        try:
            with pytest.raises(Exception) as empty:
                await channel.get_msg(timeout=0.2)
        finally:
            receiver.close(0)
            sender.close(0)
            context.term()
        return message, elapsed, polls, empty

    message, elapsed, polls, empty = asyncio.run(scenario())
    assert message["content"] == {"status": "ok"}
    assert polls[:2] == [int(POLL_SLICE * 1000)] * 2 and elapsed < 5
    assert empty.type.__name__ == "Empty"
