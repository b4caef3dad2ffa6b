#!/usr/bin/env python3
"""Set up the course and run it: the two commands of the README.

    python3 course.py lab     # create .venv (first time), install, open JupyterLab on the course
    python3 course.py test    # create .venv (first time), install, run every test
    python3 course.py lock    # maintainers: re-resolve constraints.txt, the lock of every dependency

Uses only the standard library, so it works on a fresh Python >= 3.10 with pip, on Linux, macOS
and Windows. Installs use the lock constraints.txt; each command installs the extras it needs
(lab: JupyterLab; test: also pytest, nbval and nbgrader), again only when pyproject.toml or the
lock change. Extra arguments go to the tool: `python3 course.py test -k schedules`,
`python3 course.py lab --port 9999`.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "course-install.json"
LOCK = "constraints.txt"
INSTALL_INPUTS = ("pyproject.toml", LOCK)
EXTRAS = {"lab": ("lab",), "test": ("lab", "test", "instructor")}
LOCKED_EXTRAS = ("lab", "test", "instructor")
# The CPU build lies in pip's find-links on the course's machines; any other version may pull a
# multi-GB CUDA build. The lock records it as torch==2.13.0, which the CPU build (2.13.0+cpu) satisfies.
TORCH_PIN = "torch==2.13.0"
PIP_TOOLS = "pip-tools==7.6.2"
UV = "uv==0.13.9"
FIRST_NOTEBOOK = "notebooks/01_forward_process.ipynb"
# JupyterLab settings shipped with the course: news and update checks off, so no "get notified about
# Jupyter news?" toast covers the notebook. LabApp.app_settings_dir is where JupyterLab reads
# overrides.json; pointing it here changes nothing in the user's own settings.
LAB_SETTINGS = ROOT / "jupyterlab-settings"
LAB_OPTIONS = (f"--LabApp.app_settings_dir={LAB_SETTINGS}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate")


def venv_python() -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return VENV / scripts / ("python.exe" if os.name == "nt" else "python")


def install_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in INSTALL_INPUTS:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def installed_state() -> dict:
    try:
        return json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}


def ensure_venv() -> Path:
    if sys.version_info < (3, 10):
        sys.exit(f"course.py: Python >= 3.10 is required, this is {sys.version.split()[0]}")
    python = venv_python()
    if not python.exists():
        print(f"course.py: creating the virtual environment {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    return python


def ensure_installed(extras: tuple[str, ...]) -> Path:
    """Install course_lib (editable) with ``extras`` from the lock, unless that is already done."""
    python = ensure_venv()
    fingerprint, state = install_fingerprint(), installed_state()
    if state.get("fingerprint") == fingerprint:
        if set(extras) <= set(state.get("extras", ())):
            return python
        extras = tuple(sorted(set(extras) | set(state["extras"])))
    print(f"course.py: installing course_lib[{','.join(extras)}] from the lock {LOCK} "
          "(the first time takes a minute or two)", flush=True)
    install(python, f"{ROOT}[{','.join(extras)}]")
    STAMP.write_text(json.dumps({"fingerprint": fingerprint, "extras": sorted(extras)}) + "\n")
    return python


def install(python: Path, project: str) -> None:
    """Install ``project`` (editable) and its locked dependencies into the virtual environment.

    uv resolves, downloads and unpacks in parallel: both compiling bytecode, the first install took 59 s with uv
    and 107-110 s with pip on a 2-core machine. It is given pip's own settings (indexes, find-links, constraints),
    so it installs what pip would (the local CPU torch, say) and keeps what is already installed. Where uv cannot
    install, pip does.

    uv compiles no bytecode here: Python writes each module's the first time it is imported (see
    ``command_environment``). Compiling all 12,000 installed files took two thirds of the install (62 s with it,
    21 s without, on 2 cores), and the course imports about 40 % of them.
    """
    pip = [str(python), "-m", "pip"]
    try:
        subprocess.run([*pip, "install", "--quiet", UV], check=True)
        # The cache on the venv's own file system: uv hard-links from it, then it goes.
        with tempfile.TemporaryDirectory(dir=VENV) as cache:
            subprocess.run([str(python), "-m", "uv", "pip", "install", "--quiet", "--python", str(python),
                            "--index-strategy", "unsafe-best-match", "--cache-dir", cache,
                            *uv_options_from_pip_config(python), "-c", str(ROOT / LOCK), "-e", project],
                           check=True)
    except subprocess.CalledProcessError as error:
        print(f"course.py: uv could not install ({error.returncode}); pip installs instead (slower)", flush=True)
        subprocess.run([*pip, "install", "--quiet", "-c", str(ROOT / LOCK), "-e", project], check=True)


# pip's settings that mean the same to uv. pip reads the command's section over [global], and its
# PIP_* environment variables (":env:") over both.
PIP_SECTIONS = ("global", "install", ":env:")
UV_FLAGS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
            "constraint": "--constraint"}


def uv_options_from_pip_config(python: Path) -> list[str]:
    """pip's indexes, find-links and constraints (``pip config list``: files and PIP_* variables) as uv options."""
    listing = subprocess.run([str(python), "-m", "pip", "config", "list"], capture_output=True, text=True,
                             check=True).stdout
    values = {}
    for section in PIP_SECTIONS:
        for key, quoted in re.findall(rf"^{re.escape(section)}\.([\w-]+)=(.*)$", listing, flags=re.MULTILINE):
            values[key] = ast.literal_eval(quoted).split()
    return [arg for key, flag in UV_FLAGS.items() for value in values.get(key, ()) for arg in (flag, value)]


def lock() -> int:
    """Re-resolve the lock from pyproject.toml's dependencies and extras (pip-tools, pip's own resolver)."""
    python = ensure_venv()
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", PIP_TOOLS], check=True)
    pins = VENV / "lock-pins.txt"
    pins.write_text(TORCH_PIN + "\n")
    environment = {**os.environ, "CUSTOM_COMPILE_COMMAND": "python3 course.py lock"}
    # --allow-unsafe: setuptools too (torch and nbgrader need it at run time); no index or find-links
    # lines: those are this machine's, not the project's.
    subprocess.run([str(python), "-m", "piptools", "compile", "--quiet", "--upgrade", "--newline", "LF",
                    "--strip-extras", "--allow-unsafe", "--no-emit-index-url", "--no-emit-find-links",
                    *[f"--extra={extra}" for extra in LOCKED_EXTRAS], "--constraint", str(pins),
                    "--output-file", LOCK, "pyproject.toml"], cwd=ROOT, env=environment, check=True)
    text = (ROOT / LOCK).read_text()
    # The local CPU build's version label would make the lock uninstallable where that file is absent.
    text = re.sub(r"^torch==[^\s]+", TORCH_PIN, text, flags=re.MULTILINE)
    text = text.replace(f"-c {pins}", "course.py's TORCH_PIN")
    (ROOT / LOCK).write_text(text)
    print(f"course.py: wrote {LOCK} ({len(text.splitlines())} lines)")
    return 0


def lab_command(python: Path, extra: list[str]) -> list[str]:
    args = [str(python), "-m", "jupyterlab", f"--ServerApp.root_dir={ROOT}", *LAB_OPTIONS, FIRST_NOTEBOOK, *extra]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers often run as root, where JupyterLab refuses to start without this flag.
        args.append("--allow-root")
    return args


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("lab", "test", "lock"):
        print(__doc__)
        return 2
    command, extra = argv[0], argv[1:]
    if command == "lock":
        return lock()
    python = ensure_installed(EXTRAS[command])
    if command == "lab":
        args = lab_command(python, extra)
    else:
        args = [str(python), "-m", "pytest", *extra]
    return subprocess.run(args, cwd=ROOT, env=command_environment(command)).returncode


def command_environment(command: str) -> dict:
    """The environment of the lab and test commands: this one, with bytecode kept and (tests) one thread."""
    # The install leaves bytecode to the first import. With PYTHONDONTWRITEBYTECODE set, none would be kept and every
    # process would compile what it imports again: `import torch` took 5.3-6.5 s instead of 2.2-3.0 s. The files go
    # to .venv and to the course's __pycache__ folders, which git ignores.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    if command == "test":
        # The course's models are tiny: one thread per process is fastest, and with the notebook kernels that the
        # tests start side by side, two threads each on two cores spin against each other (100x slower measured).
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as error:
        sys.exit(f"course.py: set-up step failed ({error.returncode}): {' '.join(error.cmd)}")
