"""Runs ``python -m course_lib`` command lines in child processes without paying torch's start-up for each.

tests/test_bad_input.py starts this script once. It imports the command line (and torch) once, then for each
request, one JSON line on stdin, it forks a child that caps its address space (RLIMIT_AS), sends its stdout and
stderr to files, calls ``course_lib.__main__.main(argv)`` exactly as ``python -m course_lib`` does (an uncaught
exception prints its traceback and exits 1) and exits with its status. The child is killed with SIGKILL when
it outlives its time limit, or at ``kill_after`` seconds when asked (the kill tests), counted from the start or,
with ``kill_after_change_of``, from the moment that file first changes. The answer is one JSON line: status (None
if killed), killed, seconds, stdout, stderr.

    {"argv": [...], "cwd": DIR, "memory_cap": BYTES, "time_limit": S, "kill_after": S or null,
     "kill_after_change_of": PATH or null}
"""
from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback

# Imported once here, the children inherit them: torch (and the _dynamo that its optimizers import) and the
# notebook tools take seconds to import on a busy machine.
import nbclient  # noqa: F401
import torch  # noqa: F401
import torch._dynamo  # noqa: F401

import course_lib.__main__ as cli_main
import course_lib.authoring  # noqa: F401
import course_lib.data  # noqa: F401
import course_lib.procedural  # noqa: F401
import course_lib.sampling  # noqa: F401
import course_lib.training  # noqa: F401


def _child(request: dict, stdout_path: str, stderr_path: str) -> None:
    """In the forked child: never returns."""
    status = 1
    try:
        os.chdir(request["cwd"])
        resource.setrlimit(resource.RLIMIT_AS, (request["memory_cap"], request["memory_cap"]))
        for descriptor, path in ((1, stdout_path), (2, stderr_path)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), descriptor)
        sys.argv = ["python -m course_lib", *request["argv"]]
        try:
            status = cli_main.main(request["argv"])
        except SystemExit as exit_:           # what the interpreter does with sys.exit's argument
            code = exit_.code
            status = code if isinstance(code, int) else 0 if code is None else 1
            if not isinstance(code, (int, type(None))):
                print(code, file=sys.stderr)
        except BaseException:                 # an uncaught exception: the interpreter prints the traceback
            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status if isinstance(status, int) else 1)


def _identity(path: str):
    """(inode, modification time) of path, None when it is absent: an atomic replace changes both."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns


def run(request: dict, folder: str) -> dict:
    stdout_path, stderr_path = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
    # kill_after counts from the start, or with kill_after_change_of from the moment that file first changes
    # (the run's first checkpoint: a loaded machine's slow start-up then cannot use up every kill).
    watched, kill_after = request.get("kill_after_change_of"), request.get("kill_after")
    before = _identity(watched) if watched else None
    sys.stdout.flush()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        _child(request, stdout_path, stderr_path)
    limit = start + request["time_limit"]
    kill_at = start + kill_after if kill_after and not watched else None
    while True:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        now = time.perf_counter()
        if watched and kill_at is None and _identity(watched) != before:
            kill_at = now + kill_after
        if now > limit or (kill_at is not None and now > kill_at):
            os.kill(pid, signal.SIGKILL)
            _, wait_status = os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    seconds = time.perf_counter() - start
    killed = os.WIFSIGNALED(wait_status)
    with open(stdout_path, errors="replace") as out, open(stderr_path, errors="replace") as err:
        return {"status": None if killed else os.WEXITSTATUS(wait_status), "killed": killed,
                "signal": os.WTERMSIG(wait_status) if killed else None, "seconds": seconds,
                "stdout": out.read(), "stderr": err.read()}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cli_worker") as folder:
        for line in sys.stdin:
            print(json.dumps(run(json.loads(line), folder)), flush=True)


if __name__ == "__main__":
    main()
