"""The exercise loop's checker: run a student's function against the reference and explain the difference.

An ``Exercise`` holds a reference implementation, the cases to try, and the typical mistakes a
student makes, each a deliberately wrong implementation with the hint that fixes it. ``check``
runs the student's function on every case and prints one line: ✅, or ❌ with what went wrong
(a stub, an exception, a wrong type, shape or dtype, NaN, a mutated input, a run past the time
limit, wrong values) and a hint. When wrong values equal what a registered mistake produces,
the hint is that mistake's. ``check`` never raises: a notebook always runs on to its end.
"""
from __future__ import annotations

import copy
import inspect
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn


@dataclass
class Case:
    """One call of the exercise function: positional and keyword arguments, and a label for messages."""
    args: tuple
    kwargs: dict = field(default_factory=dict)
    label: str = ""


@dataclass
class Mistake:
    """A typical wrong answer, written as code, and the hint that points a student away from it."""
    name: str
    fn: Callable
    hint: str


@dataclass
class Exercise:
    id: str
    title: str
    reference: Callable
    cases: Callable[[], list]           # builds fresh Case objects (seeded) on every call
    mistakes: list
    hint: str                           # shown when wrong values match no registered mistake
    rtol: float = 1e-5
    atol: float = 1e-6
    time_limit: float = 10.0            # seconds for the whole set of cases
    check_dtype: bool = True
    broadcast_ok: bool = False          # accept outputs that broadcast to the expected shape
    updates: tuple = ()                 # arguments the function must change in place (a training step's model):
                                        # compared with the reference's after the call, exempt from the in-place check


EXERCISES: dict[str, Exercise] = {}


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator with a fixed seed: every case is built from one, so a verdict never depends on luck."""
    return torch.Generator().manual_seed(seed)


def seeded_randn(*shape, seed: int) -> torch.Tensor:
    """Standard-normal test input, identical on every run."""
    return torch.randn(*shape, generator=seeded_generator(seed))


def register(exercise: Exercise) -> Exercise:
    if exercise.id in EXERCISES:
        raise ValueError(f"exercise id {exercise.id!r} is registered twice")
    if len(exercise.mistakes) < 2:
        raise ValueError(f"exercise {exercise.id!r} needs at least two typical mistakes")
    EXERCISES[exercise.id] = exercise
    return exercise


class _TimeLimit(BaseException):
    """Raised inside the student's code by the alarm; a BaseException so `except Exception` won't swallow it."""


_NO_RESULT = object()


class _Failure(Exception):
    """One failed case: the message to print, whether a hint helps, and the wrong result if there is one."""

    def __init__(self, message: str, hint: bool = False, result: Any = _NO_RESULT):
        super().__init__(message)
        self.hint = hint
        self.result = result


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"{type(value).__name__} {value!r:.60}"


def _leaves(value) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _compare(result, expected, exercise: Exercise) -> str | None:
    """None when ``result`` matches ``expected``; otherwise what differs, in words."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(result, (tuple, list)) or len(result) != len(expected):
            return f"expected a tuple of {len(expected)} items, got {_describe(result)}"
    for index, (got, want) in enumerate(zip(_leaves(result), _leaves(expected))):
        where = f"output {index + 1}: " if isinstance(expected, (tuple, list)) else ""
        problem = _compare_leaf(got, want, exercise)
        if problem:
            return where + problem
    return None


def _compare_leaf(got, want, exercise: Exercise) -> str | None:
    if not isinstance(want, torch.Tensor):
        if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
            ok = abs(got - want) <= exercise.atol + exercise.rtol * abs(want)
            return None if ok else f"expected {want:.6g}, got {got:.6g}"
        return None if got == want else f"expected {want!r}, got {got!r}"
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor, got {_describe(got)}"
    if got.shape != want.shape:
        try:
            shape_ok = exercise.broadcast_ok and torch.broadcast_shapes(got.shape, want.shape) == want.shape
        except RuntimeError:
            shape_ok = False
        if not shape_ok:
            return f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
        got = got.expand(want.shape)
    if exercise.check_dtype and got.dtype != want.dtype:
        return f"expected dtype {want.dtype}, got {got.dtype}"
    if got.is_floating_point() and not torch.isfinite(got).all() and torch.isfinite(want).all():
        return "the result contains NaN or infinity"
    got_cmp = got.detach().cpu().to(want.dtype)
    want_cmp = want.detach().cpu()
    if not torch.allclose(got_cmp, want_cmp, rtol=exercise.rtol, atol=exercise.atol, equal_nan=True):
        if want_cmp.is_floating_point():
            error = (got_cmp - want_cmp).abs().max().item()
            return f"values differ from the reference (largest difference {error:.3g})"
        return "values differ from the reference"
    return None


def _same_inputs(before, after) -> bool:
    if isinstance(before, torch.Tensor):
        return isinstance(after, torch.Tensor) and before.shape == after.shape and torch.equal(before, after)
    if isinstance(before, (tuple, list)):
        return len(before) == len(after) and all(_same_inputs(a, b) for a, b in zip(before, after))
    return True


def _call_with_limit(fn: Callable, case: Case, seconds: float):
    """Call fn(*args, **kwargs); interrupt it after ``seconds`` where the OS allows (SIGALRM in the main thread)."""
    can_alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not can_alarm:
        start = time.perf_counter()
        result = fn(*case.args, **case.kwargs)
        if time.perf_counter() - start > seconds:
            raise _TimeLimit
        return result

    def on_alarm(signum, frame):
        raise _TimeLimit

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        return fn(*case.args, **case.kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def state_tensors(value, path: str) -> list:
    """(path, tensor) pairs of everything an in-place update can change: tensors, modules, optimizers, objects."""
    if isinstance(value, torch.Tensor):
        return [(path, value.detach())]
    if isinstance(value, nn.Module):
        return [(f"{path}.{name}", tensor.detach()) for name, tensor in value.state_dict().items()]
    if isinstance(value, torch.optim.Optimizer):
        return [(f"{path}.state[{index}].{key}", tensor.detach())
                for index, state in enumerate(value.state.values()) for key, tensor in state.items()
                if isinstance(tensor, torch.Tensor)]
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in state_tensors(item, f"{path}[{key!r}]")]
    if isinstance(value, (list, tuple)):
        return [pair for index, item in enumerate(value) for pair in state_tensors(item, f"{path}[{index}]")]
    if hasattr(value, "__dict__") and not callable(value):
        return [pair for name, item in vars(value).items() for pair in state_tensors(item, f"{path}.{name}")]
    return []


def updated_state_problem(mine, theirs, name: str, exercise: Exercise) -> str | None:
    """What differs between an argument the student's function updated and the reference's, or None."""
    got, want = state_tensors(mine, name), state_tensors(theirs, name)
    if [path for path, _ in got] != [path for path, _ in want]:
        return f"after your function, `{name}` does not have the reference's parts (was it replaced or re-created?)"
    for (path, a), (_, b) in zip(got, want):
        if a.shape != b.shape or not torch.allclose(a.double(), b.double(), rtol=exercise.rtol, atol=exercise.atol):
            if a.shape != b.shape:
                return f"after your function, `{path}` has shape {tuple(a.shape)} instead of {tuple(b.shape)}"
            return (f"after your function, `{path}` differs from the reference's after one step "
                    f"(largest difference {(a.double() - b.double()).abs().max().item():.3g})")
    return None


def _run_case(fn: Callable, case: Case, exercise: Exercise, deadline: float):
    """Run one case; return the result or raise _Failure with the message for the student."""
    reference_case = Case(copy.deepcopy(case.args), copy.deepcopy(case.kwargs), case.label)
    expected = exercise.reference(*reference_case.args, **reference_case.kwargs)
    student_case = Case(copy.deepcopy(case.args), copy.deepcopy(case.kwargs), case.label)
    untouched = copy.deepcopy(student_case)
    try:
        result = _call_with_limit(fn, student_case, deadline - time.perf_counter())
    except NotImplementedError:
        raise _Failure("not implemented yet: replace the `raise NotImplementedError(...)` line "
                       "with your code, then run this cell again.")
    except _TimeLimit:
        raise _Failure(f"your function took longer than the {exercise.time_limit:g} s limit. Look for a "
                       f"Python loop over elements and use whole-tensor operations instead.")
    except Exception as error:  # the student's code may raise anything; report it, never re-raise
        raise _Failure(f"your function raised {type(error).__name__}: {error}", hint=True)
    updated = {}
    for (name, before, after), (_, reference_after, _) in zip(_named_inputs(exercise, untouched, student_case),
                                                              _named_inputs(exercise, reference_case, reference_case)):
        if name in exercise.updates:
            updated[name] = (after, reference_after)
        elif not _same_inputs(before, after):
            raise _Failure(f"your function changed its input `{name}` in place. Use out-of-place operations "
                           f"(x = x * 2 rather than x *= 2, torch.clamp rather than clamp_).")
    problem = _compare(result, expected, exercise)
    for name, (mine, theirs) in updated.items():
        problem = problem or updated_state_problem(mine, theirs, name, exercise)
    if problem:
        raise _Failure(problem, hint=True, result=(result, problem))
    return result


def _named_inputs(exercise: Exercise, before: Case, after: Case):
    try:
        names = list(inspect.signature(exercise.reference).parameters)
    except (TypeError, ValueError):
        names = []
    for index, (a, b) in enumerate(zip(before.args, after.args)):
        yield (names[index] if index < len(names) else f"argument {index + 1}"), a, b
    for key in before.kwargs:
        yield key, before.kwargs[key], after.kwargs[key]


def _matching_mistake(result, case: Case, exercise: Exercise) -> Mistake | None:
    """The registered mistake whose outcome (result and problem) equals the student's on this case, if any."""
    for mistake in exercise.mistakes:
        try:
            _run_case(mistake.fn, case, exercise, time.perf_counter() + exercise.time_limit)
        except _Failure as failure:
            if failure.result is not _NO_RESULT and _same_outcome(result, failure.result, exercise):
                return mistake
        except Exception:  # a mistake may be undefined on some inputs; it simply does not match there
            continue
    return None


def _same_outcome(mine, theirs, exercise: Exercise) -> bool:
    """(result, problem) pairs: the same problem in words and results that match each other."""
    if mine[1] != theirs[1]:
        return False
    try:
        return _compare(mine[0], theirs[0], exercise) is None
    except Exception:  # an odd result simply matches no mistake
        return False


# --- grading hook (helper `tooling`, issue 15) ---------------------------------------------------
# nbgrader sets NBGRADER_EXECUTION ("autograde" or "validate") in the environment of the kernel that
# runs a notebook it grades. There a failing check raises after printing its message, so the check
# cell, an autograded test cell, scores zero; everywhere else check never raises.
GRADING_VARIABLE = "NBGRADER_EXECUTION"


def check(exercise_id: str, fn: Callable) -> bool:
    """Run ``fn`` on every case of the exercise; print ✅ or ❌ with a hint; return whether it passed.

    Under nbgrader's execution (``NBGRADER_EXECUTION`` set) a failed check raises AssertionError.
    """
    passed = _check(exercise_id, fn)
    if not passed and os.environ.get(GRADING_VARIABLE):
        raise AssertionError(f"exercise {exercise_id} did not pass its check (message above)")
    return passed
# --- end of grading hook ----------------------------------------------------------------------------


def _check(exercise_id: str, fn: Callable) -> bool:
    """Run ``fn`` on every case of the exercise; print ✅ or ❌ with a hint; return whether it passed."""
    exercise = EXERCISES.get(exercise_id)
    if exercise is None:
        print(f"❌ Unknown exercise id {exercise_id!r}. Known ids: {', '.join(sorted(EXERCISES))}")
        return False
    name = f"Exercise {exercise.id} ({exercise.title})"
    if not callable(fn):
        print(f"❌ {name}: expected a function, got {_describe(fn)}.")
        return False
    cases = exercise.cases()
    deadline = time.perf_counter() + exercise.time_limit
    for case in cases:
        try:
            _run_case(fn, case, exercise, deadline)
        except _Failure as failure:
            where = f" [case: {case.label}]" if case.label else ""
            message = f"❌ {name}: {failure}{where}"
            if failure.hint:
                mistake = None if failure.result is _NO_RESULT else _matching_mistake(failure.result, case, exercise)
                message += f"\n   Hint: {mistake.hint if mistake else exercise.hint}"
            print(message)
            return False
        except Exception as error:  # a broken reference or case builder must not stop the notebook either
            print(f"❌ {name}: the checker itself failed ({type(error).__name__}: {error}); please report this.")
            return False
    print(f"✅ {name}: correct on all {len(cases)} cases.")
    return True
