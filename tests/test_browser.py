"""The student's path in a real browser: JupyterLab in headless Chromium, Run All, and what it shows.

Every student notebook and every solution notebook is opened in JupyterLab and run with Run All,
as a student does. The test reads what the page shows and asserts: no error output (the only ❌
are the unsolved exercises' checks in the student copies), every widget renders as a live widget
(never "Error displaying widget" or the text ``interactive(children=…)``), and the notebook opens
unmodified. In notebook 01 it moves a slider and watches the picture change, types the solution of
the first exercise (✅) and a typical mistake from the checker's registry (❌ with that mistake's
hint). Screenshots of each notebook (top, middle, end) go to test-artifacts/browser/, with the seconds each took
(timings.txt). The notebooks run in the background: the first worker starts during the unit tests, on the core
they leave idle (tests/conftest.py), and the tests here wait for its results.

Select with ``-m browser``, leave out with ``-m "not browser"``. Needs Debian's ``chromium`` and
``chromium-driver``; without them the module is skipped with the reason.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from jupyterlab_page import CHROMEDRIVER, CHROMIUM, ROOT, LabPage, LabServer, start_chromium

pytestmark = pytest.mark.browser
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("browser tests need chromium and chromedriver on PATH (apt-get install chromium chromium-driver)",
                allow_module_level=True)
pytest.importorskip("selenium", reason="the browser tests need selenium: pip install '.[test]'")

from course_lib.authoring import CHECK_CALL, NOTEBOOK_GLOB  # noqa: E402
from course_lib.checks import EXERCISES  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts" / "browser"
NOTEBOOKS = [f"{folder}/{path.name}" for folder in ("notebooks", "solutions")
             for path in sorted((ROOT / folder).glob(NOTEBOOK_GLOB))]
STUDENT_01 = "notebooks/01_forward_process.ipynb"
FAILED, PASSED = "❌", "✅"
TIMINGS: dict[str, float] = {}
# Besides top, middle and end, a screenshot of every widget cell and of these cells (source contains the text):
# the figures reviewers asked to see in the browser (issue 19: 05's steps sweep).
CELLS_TO_SHOW = ("sweep = [",)


# Two notebooks run side by side, each in its own Chromium: one kernel per core of a 2-core machine (nbgrader's
# test grades two course folders side by side too). On more cores more would fit; two keep the machine usable.
WORKERS = 2


class Run:
    """A notebook opened in JupyterLab and run with Run All: the page, its cells as shown, the seconds taken."""

    def __init__(self, driver, server: LabServer, relative: str):
        self.page, self.relative = LabPage(driver, server), relative
        stem = relative.replace("/", "-").removesuffix(".ipynb")
        started = time.monotonic()
        try:
            self.page.open(relative)
            self.dirty_on_opening = self.page.is_dirty()
            self.page.run_all()
            self.cells = self.page.cells()
            for cell in self.cells:
                if cell["interacts"] or any(text in cell["source"] for text in CELLS_TO_SHOW):
                    self.page.screenshot_of_cell(cell["index"], ARTIFACTS / f"{stem}-cell{cell['index']:02d}.png")
        finally:
            self.page.screenshots(ARTIFACTS, stem)
            TIMINGS[relative] = time.monotonic() - started
            if not hasattr(self, "cells"):
                self.page.close()


def _selected_notebooks(session) -> list[str]:
    """The notebooks this session's selected tests need (all, or those that -k / -m leave)."""
    wanted = set()
    for item in session.items:
        if item.module.__name__ == __name__:
            params = getattr(item, "callspec", None)
            wanted.add(params.params["relative"] if params and "relative" in params.params else STUDENT_01)
    return [relative for relative in NOTEBOOKS if relative in wanted]


def _stored_seconds(relative: str) -> float:
    """How long the notebook's solution took to execute when it was stored (the timing nbclient records)."""
    timings = [cell.metadata.get("execution", {})
               for cell in nbformat.read(ROOT / "solutions" / Path(relative).name, as_version=4).cells]
    return sum((datetime.fromisoformat(timing["shell.execute_reply"])
                - datetime.fromisoformat(timing["iopub.execute_input"])).total_seconds()
               for timing in timings if {"iopub.execute_input", "shell.execute_reply"} <= timing.keys())


class BackgroundRuns:
    """The notebooks run in JupyterLab by worker threads, each with its own Chromium, one notebook at a time.

    One JupyterLab serves a private copy of the course. Each browser keeps one JupyterLab page and opens its
    notebooks in it one after another, longest first, so that no long notebook starts last. Notebook 01's
    student copy stays open for the slider and exercise tests; the others are closed as soon as they have been
    looked at (their kernels shut down while the next notebook runs; each worker checks the shutdowns at its
    end). ``add_worker`` may be called while others work; ``result`` waits for them all.
    """

    def __init__(self, notebooks: list[str]):
        shutil.rmtree(ARTIFACTS, ignore_errors=True)         # the artefacts of this run only
        self.folder = Path(tempfile.mkdtemp(prefix="course-browser-"))
        self.pending = sorted(notebooks, key=_stored_seconds)     # popped from the end: longest first
        self.results: dict[str, Run | Exception] = {}
        self.failures: list[Exception] = []
        self.shutdown_failures: list[Exception] = []
        self.server: LabServer | None = None
        self.drivers, self.threads, self.working = [], [], []
        self.lock = threading.Lock()
        self.stopping = False
        self.first_start = 0.0

    def add_worker(self, wait_for=None) -> None:
        """One more worker, which starts once ``wait_for()`` (if given) returns."""
        thread = threading.Thread(target=self._work, args=(wait_for,), name=f"browser-{len(self.threads)}",
                                  daemon=True)
        self.threads.append(thread)
        thread.start()

    def _lab_server(self) -> LabServer:
        with self.lock:
            if self.server is None:
                self.server = LabServer(self.folder / "course")
            return self.server

    def _next_notebook(self) -> str | None:
        with self.lock:
            return self.pending.pop() if self.pending and not self.stopping else None

    def _work(self, wait_for) -> None:
        try:
            if wait_for is not None:
                wait_for()
            with self.lock:
                if self.stopping:
                    return
                self.working.append(threading.current_thread())     # stop() waits for these only
            started = time.monotonic()
            self.first_start = self.first_start or started
            server, driver = self._lab_server(), start_chromium()
            with self.lock:
                if self.stopping:                   # stop() has quit the others already
                    driver.quit()
                    return
                self.drivers.append(driver)
            TIMINGS[f"{threading.current_thread().name}: JupyterLab and Chromium start"] = time.monotonic() - started
        except Exception as error:          # raised by ``result`` if no worker ran the notebooks
            self.failures.append(error)
            return
        while (relative := self._next_notebook()) is not None:
            try:
                run = Run(driver, server, relative)
            except Exception as error:      # reported by that notebook's test
                self.results[relative] = error
                continue
            self.results[relative] = run
            if relative != STUDENT_01:
                run.page.close()
        try:
            LabPage(driver, server).wait_for_shutdowns()
        except Exception as error:          # raised by ``result``: a kernel that would not shut down
            self.shutdown_failures.append(error)

    def result(self) -> dict:
        """Relative path -> Run, or the exception its run raised; once every worker has finished."""
        for thread in self.threads:
            thread.join()
        if self.first_start:
            TIMINGS["all notebooks, from the first worker's start"] = time.monotonic() - self.first_start
        missing = [relative for relative in self.pending if relative not in self.results]
        if missing:
            raise RuntimeError(f"no browser ran {missing}") from (self.failures[0] if self.failures else None)
        if self.shutdown_failures:
            raise self.shutdown_failures[0]
        return self.results

    def stop(self) -> None:
        """Close notebook 01, end every Chromium and JupyterLab (with its kernels), remove the folder."""
        with self.lock:
            self.stopping = True
        kept = self.results.get(STUDENT_01)
        try:
            if isinstance(kept, Run):
                kept.page.close()
                kept.page.wait_for_shutdowns()
        finally:
            with self.lock:
                drivers, working = list(self.drivers), list(self.working)
            for driver in drivers:
                driver.quit()
            for thread in working:      # a worker still waiting to start sees `stopping` when it wakes, and returns
                thread.join(timeout=60)
            if self.server is not None:
                self.server.stop()
            shutil.rmtree(self.folder, ignore_errors=True)
            _report_timings()


BACKGROUND: list[BackgroundRuns] = []


def start_runs(session, wait_for=None) -> None:
    """Start the first worker now, in the background, once ``wait_for()`` returns (tests/conftest.py calls this
    when it collects this module's tests: the worker uses the core the single-threaded tests before it leave)."""
    BACKGROUND.append(BackgroundRuns(_selected_notebooks(session)))
    BACKGROUND[0].add_worker(wait_for)


def stop_runs() -> None:
    """End what still runs (after the module's tests, or when the session ends early)."""
    while BACKGROUND:
        BACKGROUND.pop().stop()


def _report_timings() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "timings.txt").write_text("".join(f"{seconds:6.1f} s  {name}\n" for name, seconds in TIMINGS.items()))


@pytest.fixture(scope="module")
def runs():
    """Every needed notebook run once: relative path -> Run, or the exception it raised. The first worker started
    at collection (``start_runs``, from tests/conftest.py); here the others join it."""
    background = BACKGROUND[0]
    for _ in range(WORKERS - len(background.threads)):
        background.add_worker()
    started = time.monotonic()
    results = background.result()
    TIMINGS["waited for the notebooks once the browser tests began"] = time.monotonic() - started
    yield results
    stop_runs()


def _run(runs, relative: str) -> Run:
    run = runs[relative]
    if isinstance(run, Exception):
        raise run
    return run


@pytest.fixture
def student_01(runs):
    """Notebook 01's student copy, run, still open (made the active notebook of its page)."""
    run = _run(runs, STUDENT_01)
    run.page.focus()
    return run


def problems_shown(run: Run) -> list[str]:
    """What a student must not see after Run All, one line each."""
    student = run.relative.startswith("notebooks/")
    problems = ["JupyterLab marks it modified on opening (metadata it rewrites)"] if run.dirty_on_opening else []
    for cell in run.cells:
        if cell["type"] != "code":
            continue
        where = f"cell {cell['index']} ({cell['source'].splitlines()[0][:50] if cell['source'] else ''!r})"
        for output in cell["outputs"]:
            if output["output_type"] == "error":
                problems.append(f"{where}: {output['ename']}: {output['evalue'][:200]}")
            elif output["output_type"] == "stream" and output["name"] == "stderr":
                problems.append(f"{where}: stderr {output['text'][:200]!r}")
        text = cell["text"]
        is_check = bool(CHECK_CALL.search(cell["source"]))
        if FAILED in text and not (student and is_check):
            problems.append(f"{where}: {text[:200]!r}")
        if student and is_check and FAILED not in text:
            problems.append(f"{where}: an unsolved exercise's check shows no {FAILED}: {text[:200]!r}")
        if not student and is_check and PASSED not in text:      # what nbval's stored-output comparison saw
            problems.append(f"{where}: the solution does not pass its check: {text[:200]!r}")
        for shown in cell["shown"]:
            # A widget closed by its code (a tqdm bar with leave=False) leaves an empty output: no problem.
            if shown["widgetView"] and not shown["widget"] and shown["text"].strip():
                problems.append(f"{where}: a widget did not render: {shown['text'][:200]!r}")
        for phrase in ("Error displaying widget", "interactive(children=", "Traceback"):
            if phrase in text:
                problems.append(f"{where}: shows {phrase!r}")
        for interact in cell["interacts"]:
            if not interact["outputs"]:
                problems.append(f"{where}: an interact shows no output")
    return problems


@pytest.mark.parametrize("relative", NOTEBOOKS)
def test_run_all_in_jupyterlab_shows_no_errors_and_live_widgets(runs, relative):
    run = _run(runs, relative)
    problems = problems_shown(run)
    assert not problems, f"{relative} in JupyterLab (screenshots in {ARTIFACTS}):\n" + "\n".join(problems)
    assert any(cell["outputs"] for cell in run.cells), "Run All produced no output at all"


def _cell_index(run: Run, predicate) -> int:
    return next(cell["index"] for cell in run.cells if cell["type"] == "code" and predicate(cell))


def test_moving_a_slider_in_notebook_01_redraws_the_picture(student_01):
    page = student_01.page
    index = _cell_index(student_01, lambda cell: cell["interacts"] and "IntSlider" in cell["source"])
    before = page.interact_images(index)
    assert before, "the interact shows no picture"
    page.screenshot_of_cell(index, ARTIFACTS / "01-slider-before.png")
    page.drag_slider(index, pixels=120)
    deadline = time.monotonic() + 60
    while page.interact_images(index) in ([], before):
        assert time.monotonic() < deadline, "the picture did not change within 60 s of moving the slider"
        time.sleep(0.3)
    page.screenshot_of_cell(index, ARTIFACTS / "01-slider-after.png")


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_notebook_01_first_exercise_shows_a_tick_for_the_answer_and_the_hint_for_a_mistake(student_01):
    """The solution's code gets ✅; a typical mistake of the checker's registry gets ❌ and that mistake's hint."""
    page = student_01.page
    check_index = _cell_index(student_01, lambda cell: CHECK_CALL.search(cell["source"]))
    exercise = EXERCISES[CHECK_CALL.search(student_01.cells[check_index]["source"]).group(1)]
    answer_index = max(cell["index"] for cell in student_01.cells[:check_index] if cell["type"] == "code"
                       and cell["metadata"].get("nbgrader", {}).get("grade_id", "").startswith("answer_"))
    grade_id = student_01.cells[answer_index]["metadata"]["nbgrader"]["grade_id"]
    solution = nbformat.read(ROOT / "solutions" / Path(STUDENT_01).name, as_version=4)
    correct = next(cell.source for cell in solution.cells
                   if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)

    stub = student_01.cells[answer_index]["source"]
    signature = stub.splitlines()[0]                           # def name(arguments):
    arguments = re.search(r"\((.*)\)", signature).group(1)
    names = ", ".join(part.split("=")[0].strip() for part in arguments.split(","))
    mistake = exercise.mistakes[0]
    typed_mistake = (f"from course_lib.checks import EXERCISES\n\n{signature}\n"
                     f"    return EXERCISES[{exercise.id!r}].mistakes[0].fn({names})\n")

    shown = page.type_and_run(answer_index, correct, check_index)
    page.screenshot_of_cell(check_index, ARTIFACTS / "01-exercise-answer.png")
    assert PASSED in shown and FAILED not in shown, shown
    shown = page.type_and_run(answer_index, typed_mistake, check_index)
    page.screenshot_of_cell(check_index, ARTIFACTS / "01-exercise-mistake.png")
    assert FAILED in shown and PASSED not in shown, shown
    assert _normalised(mistake.hint) in _normalised(shown), f"expected the hint of {mistake.name!r}, got {shown}"
