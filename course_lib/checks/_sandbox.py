"""Run a student's code so that nothing it does can hang, kill or change the notebook's kernel.

On Linux the whole check runs in a forked child process: the parent waits for its answer at most
``seconds`` and then kills it, so an infinite loop ends even when it catches every exception (a bare
``except:``) and even when ``check`` runs off the main thread. ``sys.exit()``, ``os._exit()``, a changed
default dtype, grad mode, random state or thread count all stay inside the child. A fork costs a few
milliseconds (copy-on-write), so a passing check stays fast.

Where ``fork`` is unavailable (Windows) or unsafe (macOS, whose system libraries may not survive a fork
of a threaded process), the check runs in-process instead: a trace function raises ``TimeLimit`` on a
line of Python after the deadline (any thread), SIGALRM raises it every 50 ms after the deadline and
interrupts sleeping C calls (main thread), and the global state is saved and restored around the run.
Limits of that fallback: a loop whose bare ``except:`` catches the TimeLimit every time it is raised
(Python disables a trace function once it has raised) and ``os._exit`` are stopped only by the fork.
"""
from __future__ import annotations

import io
import os
import pickle
import random
import select
import signal
import sys
import threading
import time
from typing import Any, Callable

import numpy as np
import torch

USE_FORK = hasattr(os, "fork") and sys.platform.startswith("linux")


class TimeLimit(BaseException):
    """The run went past its time limit (a BaseException, so `except Exception` in student code won't stop it)."""


class ProcessEnded(Exception):
    """The child process ended without answering: the student's code called os._exit or crashed Python."""


def run_isolated(task: Callable[[], Any], seconds: float) -> tuple[Any, str]:
    """``task()`` and whatever it printed; raises TimeLimit, ProcessEnded or KeyboardInterrupt."""
    if USE_FORK:
        return _run_forked(task, seconds)
    return _run_in_process(task, seconds)


# ---------------------------------------------------------------- forked child
def _run_forked(task, seconds):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # the child: never returns, always ends with os._exit
        try:
            os.close(read_end)
            # OpenMP's worker threads do not survive a fork: the child's first parallel region would wait for
            # them forever. One thread runs every operation inline (and check-sized tensors need no more).
            torch.set_num_threads(1)
            signal.signal(signal.SIGINT, signal.SIG_IGN)   # an interrupt is the parent's to handle
            printed = sys.stdout = sys.stderr = io.StringIO()
            try:
                answer = ("ok", task())
            except BaseException as error:        # noqa: BLE001 - report anything back, never die silently
                answer = ("error", f"{type(error).__name__}: {error}")
            data = pickle.dumps((answer, printed.getvalue()))
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
        finally:
            os._exit(0)
    os.close(write_end)
    chunks, finished = [], False
    try:
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeLimit
            ready, _, _ = select.select([read_end], [], [], remaining)
            if ready:
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    finished = True
                    break
                chunks.append(chunk)
    finally:
        os.close(read_end)
        if not finished:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if not chunks:
        raise ProcessEnded
    (status, value), printed = pickle.loads(b"".join(chunks))
    if status == "error":
        raise RuntimeError(value)
    return value, printed


# ---------------------------------------------------------------- in-process fallback
def _save_state() -> dict:
    return {"dtype": torch.get_default_dtype(), "grad": torch.is_grad_enabled(), "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(), "random": random.getstate(), "threads": torch.get_num_threads()}


def _restore_state(state: dict) -> None:
    torch.set_default_dtype(state["dtype"])
    torch.set_grad_enabled(state["grad"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    torch.set_num_threads(state["threads"])


def _run_in_process(task, seconds):
    deadline = time.monotonic() + seconds
    finished = False                  # once set, neither the tracer nor the alarm raises any more

    def tracer(frame, event, arg):
        if finished:
            return None
        if time.monotonic() > deadline:
            raise TimeLimit
        return tracer

    def on_alarm(signum, frame):
        if not finished:
            raise TimeLimit

    use_alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    state = _save_state()
    previous_trace = sys.gettrace()
    if use_alarm:
        previous_handler = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3), 0.05)   # repeats, in case one is caught
    sys.settrace(tracer)
    try:
        return task(), ""
    except SystemExit as error:       # outside the student's call (which reports its own); never end the kernel
        raise RuntimeError(f"SystemExit: {error}") from None
    finally:
        finished = True
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_handler)
        sys.settrace(previous_trace)
        _restore_state(state)
