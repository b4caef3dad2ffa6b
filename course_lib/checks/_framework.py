"""The exercise loop's checker: run a student's function against the reference and explain the difference.

``check(exercise_id, fn)`` runs ``fn`` on every case of the exercise and shows one verdict,
"✅ passed" or "❌ not yet" with what went wrong and a hint aimed at the mistake. It returns a
``Verdict``, truthy on pass (``if check(...)`` works; Jupyter does not echo it a second time).

What a student's code cannot do to a check:
- hang it: the whole check runs in a forked child process (Linux) that is killed at the time limit,
  also for a loop that swallows every exception, also off the main thread (``_sandbox.py``);
- end the kernel: ``sys.exit()`` is a ❌ with its own message; Ctrl-C prints one line, "check interrupted";
- change the notebook: default dtype, grad mode, the torch/NumPy/``random`` random states and the thread
  count are as before the check; every argument (tensors, schedule fields, module parameters, lists)
  is snapshotted and a change in place is a ❌ naming the argument;
- forge a ✅: results must have the exact contracted type (a plain ``torch.Tensor``, a ``tuple``, a
  Python ``float``...) and values are compared as NumPy copies of the data, so subclasses or objects
  overriding ``__eq__``/``allclose``/``__torch_function__`` get a ❌.

``check`` never raises, except under nbgrader (``NBGRADER_EXECUTION`` is "autograde" or "validate",
set by nbgrader's autograde converter and validator): there a failing check raises AssertionError after
showing its message, so the check cell works as an autograded test cell.

How to write an exercise check (one module per notebook, ``nbNN.py``; ``register(Exercise(...))``):
1. ``reference``: the course's implementation, with the stub's exact signature.
2. ``contract``: the return contract in words, e.g. "a float32 tensor shaped like x0". State the same
   sentence in the stub's docstring (with any dtype or random-stream convention the check enforces:
   "draw with torch.randint(..., generator=generator)"). Results are compared by exact type,
   container, length, shape and dtype before values; a mismatch names the contract.
3. ``cases``: a function building fresh, seeded ``Case`` objects. Cover the edges a student meets:
   t = 0, 1 and T - 1, both schedules, an odd T, the last step of a sampler; use a coarse schedule
   (large betas) so off-by-one mistakes show.
4. ``mistakes``: at least five ``Mistake(name, wrong_fn, hint)``, each a plausible wrong answer written
   as code with a hint that teaches (name the mistake, then the fix). Include the classes students hit:
   wrong container (``return (x,)``), wrong dtype (float64 leaking from the schedule), an off-by-one
   in t (``alpha_bars[t - 1]`` at t = 0), a changed argument, a missing factor. A hint is shown when
   the student's outcome (message and result) equals the mistake's on the failing case.
5. ``alternatives``: at least two correct answers written differently (another formula, float64 inside,
   a loop, NumPy converted back): tests prove each passes, so the check is not stricter than the math.
6. Tolerance: leave ``rtol``/``atol`` at None for the course-wide rule (float64 results 1e-7 relative,
   everything else 1e-3 relative), so float32 or float64 arithmetic inside both pass.
7. ``after_call(args, kwargs, result)``: extra requirements on one call (a gradient that reaches a
   parameter, the number of model calls); return a message, or None when fine.
8. ``updates``: names of arguments the function must update in place (a training step's model, optimizer
   and EMA). After the call they must equal the reference's arguments after its own call.
tests/test_checks.py then proves, for every registered exercise: the reference and each alternative
pass, the stub fails, each mistake fails with its own hint, and there are at least 5 mistakes.
"""
from __future__ import annotations

import copy
import inspect
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from . import _sandbox
from ._compare import ContractProblem, changed, compare, describe, updated_differently
from ._verdict import Verdict, deliver, show


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
    contract: str = ""                  # the return contract in words, as the stub's docstring states it
    alternatives: list = field(default_factory=list)   # correct answers written differently
    rtol: float | None = None           # None: the course-wide rule of ``tolerance``
    atol: float | None = None
    time_limit: float = 10.0            # seconds for the whole set of cases
    after_call: Callable | None = None  # (args, kwargs, result) -> problem or None
    updates: tuple = ()                 # arguments the function must change in place (a training step's model):
                                        # compared with the reference's after its call, exempt from the in-place check


EXERCISES: dict[str, Exercise] = {}
MIN_MISTAKES, MIN_ALTERNATIVES = 5, 2
GLOBAL_SEED = 20251130       # the global random streams during a call (the caller's are restored afterwards)


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


# ---------------------------------------------------------------- one case
_NO_RESULT = object()


@dataclass
class Expected:
    """What the reference did on a case: its result, and its arguments (by name) after the call."""
    result: Any
    arguments: dict


@dataclass
class Outcome:
    problem: str | None        # None: this case passed
    result: Any = _NO_RESULT
    hinted: bool = True        # False where a hint would not help (a stub, an exit)


def _argument_names(exercise: Exercise, count: int) -> list:
    try:
        names = list(inspect.signature(exercise.reference).parameters)
    except (TypeError, ValueError):
        names = []
    return names[:count] + [f"argument {i + 1}" for i in range(len(names), count)]


def _seed_global_streams() -> None:
    torch.default_generator.manual_seed(GLOBAL_SEED)     # CPU only: torch.manual_seed also seeds (slowly) lazy GPUs
    np.random.seed(GLOBAL_SEED)
    random.seed(GLOBAL_SEED)


def expect(case: Case, exercise: Exercise) -> Expected:
    """Run the reference on a fresh copy of the case, with the same global random streams a student's call gets."""
    args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
    _seed_global_streams()
    result = exercise.reference(*args, **kwargs)
    names = _argument_names(exercise, len(args)) + list(kwargs)
    return Expected(result, dict(zip(names, [*args, *kwargs.values()])))


def evaluate(fn: Callable, case: Case, expected: Expected, exercise: Exercise) -> Outcome:
    """Call ``fn`` on a fresh copy of the case and judge what it returned and what it changed."""
    args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
    snapshot = copy.deepcopy((args, kwargs))
    _seed_global_streams()    # an answer that ignores its generator draws the same numbers on every run
    try:
        result = fn(*args, **kwargs)
    except NotImplementedError:
        return Outcome("not implemented yet: replace the `raise NotImplementedError(...)` line with your code, "
                       "then run this cell again.", hinted=False)
    except (_sandbox.TimeLimit, KeyboardInterrupt):
        raise
    except SystemExit:
        return Outcome("your function called sys.exit() (or raised SystemExit). A function hands back its "
                       "answer with `return`; exiting would end the whole notebook.", hinted=False)
    except BaseException as error:  # noqa: BLE001 - the student's code may raise anything; report it
        return Outcome(f"your function raised {type(error).__name__}: {error}")
    names = _argument_names(exercise, len(args)) + list(kwargs)
    for name, before, after in zip(names, [*snapshot[0], *snapshot[1].values()], [*args, *kwargs.values()]):
        if name in exercise.updates:
            continue
        where = changed(before, after, name)
        if where is not None:
            return Outcome(f"your function changed its argument `{where}` in place. Leave inputs as they are: "
                           f"use out-of-place operations (x = x * 2, not x *= 2 or x.mul_(2); torch.clamp, "
                           f"not clamp_) and never assign into an argument.", result)
    problem = compare(result, expected.result, exercise)
    for name, after in zip(names, [*args, *kwargs.values()]):
        if problem is None and name in exercise.updates:
            problem = updated_differently(after, expected.arguments[name], name, exercise)
    if problem is None and exercise.after_call is not None:
        problem = exercise.after_call(args, kwargs, result)
    return Outcome(problem, result)


def _same_outcome(mine: Outcome, theirs: Outcome, exercise: Exercise) -> bool:
    if mine.problem != theirs.problem:
        return False
    if mine.result is _NO_RESULT or theirs.result is _NO_RESULT:
        return mine.result is theirs.result
    if type(mine.result) is type(theirs.result) and not isinstance(mine.result, (torch.Tensor, tuple, list, float, int)):
        return True           # objects without values to compare (a generator, None): the same kind of mistake
    try:
        return compare(mine.result, theirs.result, exercise) is None
    except Exception:  # noqa: BLE001 - an odd result simply matches no mistake
        return False


def _dtype_or_shape_hint(problem: str) -> str | None:
    if "expected dtype torch.float32, got torch.float64" in problem:
        return ("Your result is float64 where the exercise returns float32: schedule tensors are float64 and "
                "promote whatever they multiply. Cast the schedule value to the data's dtype first, "
                "e.g. schedule.alpha_bars[t].to(x.dtype).")
    if "expected dtype torch.float64, got torch.float32" in problem:
        return ("Your result is float32 where the exercise returns float64: compute in float64 from the start "
                "(dtype=torch.float64 when you create the tensor); a float32 tensor converted at the end "
                "keeps float32's rounding.")
    if "expected dtype torch.int64" in problem:
        return "Return int64 integers (torch.long), e.g. .round().long() for rounded floats."
    if "expected shape" in problem:
        return ("The shape is wrong. A per-item coefficient of shape (B,) must be reshaped to (B, 1, ..., 1) "
                "to broadcast against (B, C, H, W); check which axes you reduced or concatenated.")
    return None


def _hint(outcome: Outcome, case: Case, exercise: Exercise, expected: Expected) -> str | None:
    """The hint for a failed case: a registered mistake's, else one for the kind of failure, else the general one."""
    if not outcome.hinted:
        return None
    for mistake in exercise.mistakes:
        try:
            if _same_outcome(outcome, evaluate(mistake.fn, case, expected, exercise), exercise):
                return mistake.hint
        except (_sandbox.TimeLimit, KeyboardInterrupt):
            raise
        except Exception:  # noqa: BLE001 - a mistake may be undefined on some inputs; it does not match there
            continue
    if isinstance(outcome.problem, ContractProblem):
        specific = _dtype_or_shape_hint(outcome.problem)
        contract = f"This exercise returns {exercise.contract}." if exercise.contract else ""
        return " ".join(part for part in (specific, contract) if part) or exercise.hint
    return exercise.hint


def judge(exercise: Exercise, fn: Callable) -> tuple[bool, str]:
    """Run every case; (passed, the verdict's text without its mark)."""
    name = f"Exercise {exercise.id} ({exercise.title})"
    cases = exercise.cases()
    for case in cases:
        expected = expect(case, exercise)
        outcome = evaluate(fn, case, expected, exercise)
        if outcome.problem is not None:
            where = f" [case: {case.label}]" if case.label and outcome.hinted else ""
            hint = _hint(outcome, case, exercise, expected)
            return False, f"{name}: {outcome.problem}{where}" + (f"\n   Hint: {hint}" if hint else "")
    return True, f"{name}: correct on all {len(cases)} cases."


def check(exercise_id: str, fn: Callable) -> Verdict:
    """Run ``fn`` on every case of the exercise; show ✅ or ❌ with a hint once; return a truthy-on-pass Verdict."""
    exercise = EXERCISES.get(exercise_id)
    if exercise is None:
        return deliver(False, f"Unknown exercise id {exercise_id!r}. Known ids: {', '.join(sorted(EXERCISES))}")
    if not callable(fn):
        return deliver(False, f"Exercise {exercise.id} ({exercise.title}): expected a function, got {describe(fn)}.")
    try:
        (passed, text), printed = _sandbox.run_isolated(lambda: judge(exercise, fn), exercise.time_limit)
    except KeyboardInterrupt:
        show("check interrupted")
        return Verdict(False, "check interrupted")
    except _sandbox.TimeLimit:
        passed, text, printed = False, (
            f"Exercise {exercise.id} ({exercise.title}): your function took longer than the "
            f"{exercise.time_limit:g} s limit and was stopped. Look for a loop that never ends, or a Python "
            f"loop over elements where a whole-tensor operation would do."), ""
    except _sandbox.ProcessEnded:
        passed, text, printed = False, (
            f"Exercise {exercise.id} ({exercise.title}): your function ended the Python process "
            f"(os._exit or a crash), so the check could not finish. Return a value instead."), ""
    except Exception as error:  # noqa: BLE001 - a broken reference or case builder must not stop the notebook
        passed, text, printed = False, (f"Exercise {exercise.id} ({exercise.title}): the checker itself failed "
                                        f"({type(error).__name__}: {error}); please report this."), ""
    if printed:
        print(printed, end="" if printed.endswith("\n") else "\n")
    return deliver(passed, text)
