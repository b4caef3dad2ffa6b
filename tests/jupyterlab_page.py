"""JupyterLab in headless Chromium, driven as a student drives it: open a notebook, Run All, look at it.

``LabServer`` starts JupyterLab the way ``course.py lab`` does (the course's settings overrides, so
no news toast), on a free local port with a token, serving a private copy of the notebooks: nothing
the browser does (outputs, autosave, files a notebook writes) reaches the repository. ``LabPage``
drives Debian's Chromium through its chromedriver (Selenium; no browser is downloaded): one
JupyterLab page per browser, in which notebooks open as a double-click in the file browser opens
them. It reads what the front end shows through the page's DOM and the notebook model JupyterLab
holds (``--LabApp.expose_app_in_browser``): outputs exactly as the browser received them.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import course  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
TOKEN = "course-browser-test"
START_SECONDS = 180
# After a scroll, before a screenshot: the jump is instant (no smooth scrolling); this only lets a frame be drawn.
# Every pause here holds a core idle, about ten times per notebook.
SCROLL_SETTLE = 0.1
# Settings of this test server only (a private user-settings folder): every cell stays in the page, so widgets
# and outputs render whether scrolled into view or not; no autosave, so a run never asks to save.
TEST_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LabServer:
    """JupyterLab on 127.0.0.1 serving ``folder`` (a copy of the course's notebooks); ``stop`` ends it."""

    def __init__(self, folder: Path):
        self.folder = folder
        for name in ("solutions", "notebooks"):
            shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        shutil.copy(ROOT / "GLOSSARY.md", folder / "GLOSSARY.md")
        settings = folder.parent / f"{folder.name}-settings"
        for name, values in TEST_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.port = free_port()
        command = [arg for arg in course.lab_command(Path(sys.executable), [
            "--no-browser", "--ServerApp.ip=127.0.0.1", f"--port={self.port}", f"--ServerApp.token={TOKEN}",
            "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={folder}"])
            if arg != course.FIRST_NOTEBOOK and not arg.startswith(f"--ServerApp.root_dir={ROOT}")]
        environment = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings),
                       "JUPYTERLAB_WORKSPACES_DIR": str(folder.parent / f"{folder.name}-workspaces"),
                       "JUPYTER_RUNTIME_DIR": str(folder.parent / f"{folder.name}-runtime")}
        self.log = (folder.parent / f"{folder.name}-server.log").open("w")
        self.process = subprocess.Popen(command, cwd=folder, env=environment, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={TOKEN}", timeout=5):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"JupyterLab exited ({self.process.returncode}); see {self.log.name}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer within {START_SECONDS} s")
                time.sleep(0.3)

    def stop(self) -> None:
        """End the server and the kernels it started (its own process group)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.log.close()


def start_chromium(width: int = 1400, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--no-first-run", "--disable-extensions",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     # a notebook kept open in a background tab must keep its timers and websocket running
                     "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                     "--disable-backgrounding-occluded-windows"):
        options.add_argument(argument)
    # The system's chromedriver, named explicitly: Selenium Manager then downloads nothing.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(900)
    return driver


# JavaScript run in the page. `app` is JupyterLab's application (window.jupyterapp).
_CURRENT = "const panel = window.coursePanel;"    # set by LabPage.open and LabPage.focus: the notebook in use
# Widget views are built after the kernel's messages have arrived, each into its output (empty until then): done
# when every output shows something (a view, or its error) and every interact shows its output. The wait for it
# ends there, or after WIDGET_SETTLE seconds.
WIDGET_SETTLE = 3.0
_WIDGETS_DRAWN = _CURRENT + """
const node = panel.content.node;
return Array.from(node.querySelectorAll('.jp-OutputArea-output')).every(output => output.childElementCount > 0)
    && Array.from(node.querySelectorAll('.widget-interact'))
           .every(interact => interact.querySelector('.widget-output .jp-OutputArea-child'));
"""
# The panel of the notebook at arguments[0] (found by its path: several notebooks share the page).
_PANEL_OF_PATH = ("const app = window.jupyterapp;"
                  "const panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === arguments[0]);")
_CELLS = _CURRENT + """
const WIDGET_VIEW = 'application/vnd.jupyter.widget-view+json';
const strip = output => {   // pictures are compared elsewhere; their base64 would only slow the transfer
  const data = Object.fromEntries(Object.entries(output.data || {}).map(
      ([mime, value]) => [mime, mime.startsWith('image/') ? '<image>' : value]));
  return Object.assign({}, output, output.data ? {data} : {});
};
return panel.content.widgets.map((widget, index) => {
  const cell = widget.model;
  const code = cell.type === 'code';
  const outputs = code ? cell.outputs.toJSON() : [];
  const area = code ? widget.node.querySelector('.jp-Cell-outputArea') : null;
  const children = area ? Array.from(area.children).filter(n => n.classList.contains('jp-OutputArea-child')) : [];
  return {index, type: cell.type, source: cell.sharedModel.getSource(), metadata: cell.sharedModel.getMetadata(),
          outputs: outputs.map(strip), text: area ? area.innerText : '',
          shown: children.map((node, i) => ({
              widgetView: !!(outputs[i] && outputs[i].data && outputs[i].data[WIDGET_VIEW]),
              widget: node.querySelector('.jp-OutputArea-output > .jupyter-widgets') !== null,
              text: node.innerText})),
          interacts: area ? Array.from(area.querySelectorAll('.widget-interact')).map(node => ({
              outputs: node.querySelectorAll('.widget-output .jp-OutputArea-child').length})) : []};
});
"""


class LabPage:
    """One notebook in JupyterLab, in the browser's single tab (the notebooks a test opens share it)."""

    def __init__(self, driver, server: LabServer):
        self.driver, self.server = driver, server
        self.relative = None

    def _load_lab(self, timeout: float) -> None:
        """JupyterLab itself, once per browser: booting its front end again for every notebook would cost 6 s each."""
        from selenium.webdriver.support.ui import WebDriverWait

        if self.driver.execute_script("return !!window.jupyterapp && location.href.startsWith(arguments[0]);",
                                      self.server.url):
            return
        self.driver.get(f"{self.server.url}/lab?reset&token={TOKEN}")
        WebDriverWait(self.driver, timeout, poll_frequency=0.3).until(lambda d: d.execute_script(
            "const app = window.jupyterapp; return !!app && !!app.shell && app.commands.hasCommand('docmanager:open');"))
        # Notebooks full width in every screenshot: the side bars (file browser, nbgrader) folded away.
        self.driver.execute_script("window.jupyterapp.shell.collapseLeft(); window.jupyterapp.shell.collapseRight();")

    def open(self, relative: str, timeout: float = 120) -> None:
        """Open a notebook as a double-click in the file browser does, and wait until its kernel is ready."""
        from selenium.webdriver.support.ui import WebDriverWait

        self._load_lab(timeout)
        self.relative = relative
        self.driver.execute_script("window.coursePanel = null;")     # until this notebook's panel is ready
        self.driver.execute_script("window.jupyterapp.commands.execute('docmanager:open', {path: arguments[0]});",
                                   relative)
        WebDriverWait(self.driver, timeout, poll_frequency=0.3).until(lambda d: d.execute_script(
            _PANEL_OF_PATH + "if (!panel || !panel.content.widgets.length) return false;"
            "const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;"
            "return !!kernel && kernel.status === 'idle';", relative))
        self.focus()

    def focus(self) -> None:
        """Make this notebook the active one, the one menu commands and the page's scripts act on."""
        self.driver.execute_script(_PANEL_OF_PATH + "window.coursePanel = panel; app.shell.activateById(panel.id);",
                                   self.relative)

    def is_dirty(self) -> bool:
        """Whether JupyterLab marks the notebook modified (the ● on its tab) although nobody edited it."""
        return self.driver.execute_script(_CURRENT + "return panel.context.model.dirty;")

    def run_all(self, timeout: float = 900) -> float:
        """Run → Run All Cells; wait for the last cell and an idle kernel. Returns the seconds it took."""
        from selenium.webdriver.support.ui import WebDriverWait

        start = time.monotonic()
        # Started here and watched from Python: one WebDriver call must not wait longer than its HTTP timeout.
        self.driver.execute_script(
            "window.courseRunAll = 'running'; window.jupyterapp.commands.execute('notebook:run-all-cells')"
            ".then(() => { window.courseRunAll = 'done'; }, e => { window.courseRunAll = String(e); });")
        WebDriverWait(self.driver, timeout, poll_frequency=0.5).until(
            lambda d: d.execute_script("return window.courseRunAll;") != "running")
        outcome = self.driver.execute_script("return window.courseRunAll;")
        if outcome != "done":
            raise RuntimeError(f"Run All failed in the page: {outcome}")
        self.wait_idle(timeout)
        return time.monotonic() - start

    def wait_idle(self, timeout: float = 300) -> None:
        """Until the kernel is idle and no cell is queued or running, then until the widgets have drawn."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, timeout, poll_frequency=0.5).until(lambda d: d.execute_script(
            _CURRENT + "return panel.sessionContext.session.kernel.status === 'idle' && Array.from("
            "panel.content.node.querySelectorAll('.jp-InputArea-prompt')).every(p => !p.textContent.includes('*'));"))
        try:
            WebDriverWait(self.driver, WIDGET_SETTLE, poll_frequency=0.1).until(
                lambda d: d.execute_script(_WIDGETS_DRAWN))
        except TimeoutException:
            pass        # a widget that never draws is reported by the tests that read the page

    def cells(self) -> list[dict]:
        return self.driver.execute_script(_CELLS)

    def _cell_node(self, index: int):
        return self.driver.execute_script(_CURRENT + "return panel.content.widgets[arguments[0]].node;", index)

    def interact_images(self, index: int) -> list[str]:
        """The pictures (data URLs) an interact of cell ``index`` shows now."""
        return self.driver.execute_script(
            _CURRENT + "return Array.from(panel.content.widgets[arguments[0]].node.querySelectorAll("
            "'.widget-interact .widget-output img')).map(img => img.src);", index)

    def drag_slider(self, index: int, pixels: int) -> None:
        """Drag the first slider handle of cell ``index`` sideways with the mouse."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        handle = self._cell_node(index).find_element(By.CSS_SELECTOR, ".noUi-handle")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
        ActionChains(self.driver).click_and_hold(handle).move_by_offset(pixels, 0).release().perform()

    def _execution_count(self, index: int):
        return self.driver.execute_script(_CURRENT + "return panel.content.widgets[arguments[0]].model.executionCount;",
                                          index)

    def run_cell_with_keyboard(self, index: int, timeout: float = 120) -> None:
        """Click into cell ``index`` and press Shift+Enter; wait for its new execution count and an idle kernel."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import WebDriverWait

        before = self._execution_count(index)
        editor = self._cell_node(index).find_element(By.CSS_SELECTOR, ".cm-content")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", editor)
        editor.click()
        editor.send_keys(Keys.SHIFT, Keys.ENTER)
        WebDriverWait(self.driver, timeout, poll_frequency=0.3).until(
            lambda d: self._execution_count(index) not in (None, before))
        self.wait_idle(timeout)

    def type_into(self, index: int, text: str) -> None:
        """Replace cell ``index``'s code as a student does: click, select all, type (inserted as one paste)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        editor = self._cell_node(index).find_element(By.CSS_SELECTOR, ".cm-content")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", editor)
        editor.click()
        editor.send_keys(Keys.CONTROL, "a")
        # Typed key by key, the editor would indent each new line on its own; a paste inserts the text as it is.
        self.driver.execute_cdp_cmd("Input.insertText", {"text": text})

    def type_and_run(self, answer: int, text: str, check: int) -> str:
        """Type ``text`` into the answer cell, run it and then the check cell; return what the check shows."""
        self.type_into(answer, text)
        self.run_cell_with_keyboard(answer)
        self.run_cell_with_keyboard(check)
        return self.driver.execute_script(
            _CURRENT + "return panel.content.widgets[arguments[0]].node.querySelector('.jp-Cell-outputArea').innerText;",
            check)

    def screenshot_of_cell(self, index: int, path: Path) -> Path:
        """The page with cell ``index`` scrolled to the middle of the view."""
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", self._cell_node(index))
        time.sleep(SCROLL_SETTLE)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path

    def scroll_to(self, fraction: float) -> None:
        """Bring the cell at ``fraction`` of the notebook into view: 0 the first cell, 1 the end of the last."""
        self.driver.execute_script(
            _CURRENT + "if (!panel) return; const cells = panel.content.widgets;"
            "const index = Math.round((cells.length - 1) * arguments[0]);"
            "cells[index].node.scrollIntoView({block: arguments[0] >= 1 ? 'end' : 'start'});", fraction)
        time.sleep(SCROLL_SETTLE)

    def screenshots(self, folder: Path, stem: str) -> list[Path]:
        """The notebook at its top, middle and end, as PNG files in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for where, fraction in (("top", 0.0), ("middle", 0.5), ("end", 1.0)):
            self.scroll_to(fraction)
            path = folder / f"{stem}-{where}.png"
            self.driver.save_screenshot(str(path))
            paths.append(path)
        return paths

    def close(self) -> None:
        """Close the notebook and shut its kernel down (File → Close and Shut Down), without the save prompt.

        Returns at once: the kernel takes seconds to exit, and the next notebook need not wait for it (16 waits
        of 2-3 s each held a core idle). ``wait_for_shutdowns`` reports how every shutdown ended."""
        self.driver.execute_script(
            _PANEL_OF_PATH + "window.coursePanel = null; window.courseShutdowns = window.courseShutdowns || [];"
            "if (!panel) return;"            # it never opened: nothing to close
            "const path = arguments[0];"
            "window.courseShutdowns.push(panel.sessionContext.shutdown().then(() => true, e => path + ': ' + String(e))"
            "    .finally(() => panel.dispose()));",
            self.relative)

    def wait_for_shutdowns(self) -> None:
        """Wait until every kernel ``close`` shut down has exited; raise if a shutdown failed in the page."""
        outcomes = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all(window.courseShutdowns || []).then(done, e => done([String(e)]));")
        failed = [outcome for outcome in outcomes if outcome is not True]
        if failed:
            raise RuntimeError(f"shutting down kernels failed in the page: {failed}")
