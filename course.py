#!/usr/bin/env python3
"""Set up the course and run it: the two commands of the README.

    python3 course.py lab     # create .venv (first time), install, open JupyterLab on the course
    python3 course.py test    # create .venv (first time), install, run every test

Uses only the standard library, so it works on a fresh Python >= 3.10 with pip, on Linux, macOS
and Windows. The install is redone only when pyproject.toml or constraints.txt change.
Extra arguments go to the tool: `python3 course.py test -k schedules`, `python3 course.py lab --port 9999`.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "course-install.sha256"
INSTALL_INPUTS = ("pyproject.toml", "constraints.txt")
FIRST_NOTEBOOK = "notebooks/01_forward_process.ipynb"


def venv_python() -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return VENV / scripts / ("python.exe" if os.name == "nt" else "python")


def install_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in INSTALL_INPUTS:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_installed() -> Path:
    if sys.version_info < (3, 10):
        sys.exit(f"course.py: Python >= 3.10 is required, this is {sys.version.split()[0]}")
    python = venv_python()
    if not python.exists():
        print(f"course.py: creating the virtual environment {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    fingerprint = install_fingerprint()
    if STAMP.exists() and STAMP.read_text().strip() == fingerprint:
        return python
    print("course.py: installing course_lib and its tested dependencies (first run takes a few minutes)",
          flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                    "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(fingerprint + "\n")
    return python


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("lab", "test"):
        print(__doc__)
        return 2
    command, extra = argv[0], argv[1:]
    python = ensure_installed()
    if command == "lab":
        args = [str(python), "-m", "jupyterlab", f"--ServerApp.root_dir={ROOT}", FIRST_NOTEBOOK, *extra]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Containers often run as root, where JupyterLab refuses to start without this flag.
            args.append("--allow-root")
    else:
        args = [str(python), "-m", "pytest", *extra]
    return subprocess.run(args, cwd=ROOT).returncode


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as error:
        sys.exit(f"course.py: set-up step failed ({error.returncode}): {' '.join(error.cmd)}")
