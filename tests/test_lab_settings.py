"""`course.py lab` starts JupyterLab with the course's own settings: no news or update-check pop-ups."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import course  # noqa: E402

pytest.importorskip("jupyterlab", reason="JupyterLab is the lab extra: pip install '.[lab]'")
NOTIFICATION_SETTINGS = "@jupyterlab/apputils-extension:notification"
START_SECONDS = 120


def test_the_course_ships_a_settings_override_with_news_and_update_checks_off():
    overrides = json.loads((course.LAB_SETTINGS / "overrides.json").read_text())
    assert overrides[NOTIFICATION_SETTINGS] == {"checkForUpdates": False, "fetchNews": "false"}
    command = course.lab_command(Path(sys.executable), [])
    assert f"--LabApp.app_settings_dir={course.LAB_SETTINGS}" in command
    assert not any("user_settings_dir" in arg for arg in command), "the user's own settings stay untouched"


def test_jupyterlab_started_by_course_py_serves_those_settings(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = course.lab_command(Path(sys.executable), ["--no-browser", "--ServerApp.ip=127.0.0.1",
                                                        f"--port={port}", "--ServerApp.token=course-test"])
    # A private settings folder for this server, so nothing the test does reaches the user's settings.
    environment = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings"),
                   "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/lab/api"

    def get(path):
        with urllib.request.urlopen(f"{base}/{path}?token=course-test", timeout=10) as response:
            return json.load(response)

    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                settings = get(f"settings/{NOTIFICATION_SETTINGS}")
                break
            except OSError:
                assert server.poll() is None, "JupyterLab exited"
                assert time.monotonic() < deadline, f"JupyterLab did not answer within {START_SECONDS} s"
                time.sleep(0.5)
        defaults = {name: spec.get("default") for name, spec in settings["schema"]["properties"].items()}
        assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
        assert get("news") == {"news": []}
        assert get("update") == {"notification": None}
    finally:
        server.terminate()
        server.wait(timeout=30)
