import torch

# The unit tests run thousands of tiny tensor operations: extra threads only add synchronisation,
# which on a shared 2-core machine can make them many times slower. Notebooks run in their own
# kernels and keep torch's default.
torch.set_num_threads(1)


# --- one run of each notebook: the browser's, or nbval's ------------------------------------------------
# tests/test_browser.py runs every notebook of solutions/ and notebooks/ in JupyterLab and fails on what nbval
# fails on (an error in any cell; a solution's check not showing ✅, which nbval compares for the cells tagged
# nbval-check-output), and on more (widgets, the page). Where it runs a notebook, nbval's run of the same
# notebook adds nothing but minutes, so it is left out here, and says so. Without Chromium the browser tests
# are skipped at collection and nbval runs every notebook as before.
import pytest  # noqa: E402


@pytest.hookimpl(trylast=True)      # after -m / -k deselection: only browser tests that will run count
def pytest_collection_modifyitems(config, items):
    # The browser tests last: they keep both cores busy, while the single-threaded tests before them leave one
    # core to the nbgrader runs started in the background (below).
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
    in_browser = {item.callspec.params["relative"] for item in items if item.get_closest_marker("browser")
                  and hasattr(item, "callspec") and "relative" in item.callspec.params}
    if not in_browser:
        return
    replaced = [item for item in items if type(item).__name__ == "IPyNbCell"
                and item.path.relative_to(config.rootpath).as_posix() in in_browser]
    if not replaced:
        return
    items[:] = [item for item in items if item not in replaced]
    config.hook.pytest_deselected(items=replaced)
    notebooks = sorted({item.path.relative_to(config.rootpath).as_posix() for item in replaced})
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"nbval left out for {len(notebooks)} notebooks ({len(replaced)} cells): "
                            "the browser tests run them in JupyterLab")


# --- nbgrader grades, and the browser starts, in the background ------------------------------------------------
# tests/test_nbgrader.py's autograde runs execute notebooks for minutes; started once the tests are collected,
# they use the core the single-threaded tests leave idle. When they are done, the first browser worker of
# tests/test_browser.py takes that core over; the others join it when the browser tests begin.
def _module_using(session, fixture: str):
    return next((item.module for item in session.items if fixture in getattr(item, "fixturenames", ())), None)


def pytest_collection_finish(session):
    grading, browser = _module_using(session, "graded"), _module_using(session, "runs")
    if grading is not None:
        grading.start_grading()
    if browser is not None:
        browser.start_runs(session, wait_for=grading.wait_for_grading if grading is not None else None)


def pytest_sessionfinish(session):
    browser, grading = _module_using(session, "runs"), _module_using(session, "graded")
    if browser is not None:
        browser.stop_runs()
    if grading is not None:
        grading.stop_grading()
