"""Every exercise check passes its reference and its correct alternatives, and rejects the stub and
each registered typical mistake with that mistake's own hint; the framework survives hostile student code."""
import pytest

from course_lib.checks import EXERCISES, check
from course_lib.checks._framework import MIN_ALTERNATIVES, MIN_MISTAKES

EXERCISE_IDS = sorted(EXERCISES)
MISTAKES = [(exercise_id, mistake) for exercise_id in EXERCISE_IDS for mistake in EXERCISES[exercise_id].mistakes]
ALTERNATIVES = [(exercise_id, index) for exercise_id in EXERCISE_IDS
                for index in range(len(EXERCISES[exercise_id].alternatives))]


def run(capsys, exercise_id, fn):
    verdict = check(exercise_id, fn)
    return bool(verdict), capsys.readouterr().out


@pytest.mark.parametrize("exercise_id", EXERCISE_IDS)
def test_reference_passes(capsys, exercise_id):
    passed, out = run(capsys, exercise_id, EXERCISES[exercise_id].reference)
    assert passed, out
    assert out.startswith("✅ passed")


@pytest.mark.parametrize("exercise_id, index", ALTERNATIVES, ids=[f"{e}-{i}" for e, i in ALTERNATIVES])
def test_correct_alternative_passes(capsys, exercise_id, index):
    passed, out = run(capsys, exercise_id, EXERCISES[exercise_id].alternatives[index])
    assert passed, out


@pytest.mark.parametrize("exercise_id", EXERCISE_IDS)
def test_stub_is_rejected(capsys, exercise_id):
    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {exercise_id}: replace this line with your code")

    passed, out = run(capsys, exercise_id, stub)
    assert not passed
    assert out.startswith("❌ not yet") and "not implemented yet" in " ".join(out.split())


@pytest.mark.parametrize("exercise_id, mistake", MISTAKES, ids=[f"{e}-{m.name}" for e, m in MISTAKES])
def test_typical_mistake_is_rejected_with_its_own_hint(capsys, exercise_id, mistake):
    passed, out = run(capsys, exercise_id, mistake.fn)
    assert not passed, f"the check accepts the mistake {mistake.name!r}"
    assert out.startswith("❌ not yet")
    assert " ".join(mistake.hint.split()) in " ".join(out.split()), \
        f"the check did not recognise the mistake {mistake.name!r}:\n{out}"


@pytest.mark.parametrize("exercise_id", EXERCISE_IDS)
def test_every_exercise_states_its_contract_and_has_enough_mistakes_and_alternatives(exercise_id):
    exercise = EXERCISES[exercise_id]
    hints = [mistake.hint for mistake in exercise.mistakes]
    assert len(hints) >= MIN_MISTAKES and len(set(hints)) == len(hints)
    assert len(exercise.alternatives) >= MIN_ALTERNATIVES
    assert exercise.contract


@pytest.mark.parametrize("exercise_id", EXERCISE_IDS)
def test_cases_are_reproducible(exercise_id):
    """Cases are seeded: two builds give identical inputs, so the check's verdict never depends on luck."""
    import torch
    first, second = EXERCISES[exercise_id].cases(), EXERCISES[exercise_id].cases()
    for a, b in zip(first, second):
        for x, y in zip(a.args, b.args):
            if isinstance(x, torch.Tensor):
                assert torch.equal(x, y)


# ---------------------------------------------------------------- the framework, on a toy exercise
import io  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from course_lib.checks import Case, Exercise, Mistake, Verdict  # noqa: E402
from course_lib.checks import _sandbox  # noqa: E402
from course_lib.checks._framework import register  # noqa: E402
from course_lib.checks._verdict import WIDTH, wrap  # noqa: E402


def _double(x):
    return 2 * x


@pytest.fixture(scope="module")
def toy_id():
    exercise = register(Exercise(
        id="test.double", title="double a tensor", reference=_double, contract="a float32 tensor of x's shape",
        cases=lambda: [Case((torch.arange(6, dtype=torch.float32).reshape(2, 3),), label="2x3")],
        mistakes=[Mistake("adds", lambda x: x + 2, "hint-adds"), Mistake("squares", lambda x: x * x, "hint-squares")],
        hint="generic-hint", time_limit=1.0))
    yield exercise.id
    del EXERCISES[exercise.id]


@pytest.fixture(params=[True, False], ids=["forked", "in-process"])
def isolation(request, monkeypatch):
    """Every robustness case runs both ways: in a forked child (Linux) and with the in-process fallback."""
    monkeypatch.setattr(_sandbox, "USE_FORK", request.param)
    return request.param


def _mutates(x):
    x *= 2
    return x


def _sleeps(x):
    time.sleep(5)
    return 2 * x


def _bare_except_loop(x):
    while True:
        try:
            time.sleep(0.01)
        except:  # noqa: E722 - the point: a loop that swallows everything, the time limit included
            pass


def _exits(x):
    sys.exit(3)


class _Forged(torch.Tensor):
    def __eq__(self, other):
        return True

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal, torch.Tensor.__eq__):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


class _EqualsEverything:
    def __eq__(self, other):
        return True

    def allclose(self, *args, **kwargs):
        return True


def _messes_with_global_state(x):
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    torch.set_num_threads(1)
    return 2 * x


@pytest.mark.parametrize("fn, expected", [
    (lambda x: 2 * x, "✅ passed"),
    (lambda x: x + 2, "hint-adds"),
    (lambda x: 3 * x, "generic-hint"),
    (lambda x: (2 * x)[0], "expected shape (2, 3), got (3,)"),
    (lambda x: (2 * x).double(), "expected dtype torch.float32, got torch.float64"),
    (lambda x: (2 * x).double(), "Your result is float64 where the exercise returns float32"),
    (lambda x: x * float("nan"), "NaN or infinity"),
    (lambda x: (2 * x).tolist(), "expected a torch.Tensor, got a list"),
    (lambda x: (2 * x,), "expected a torch.Tensor, got a tuple of 1 items"),
    (lambda x: (2 * x,), "This exercise returns a float32 tensor of x's shape."),
    (lambda x: (2 * x).numpy(), "convert it back with torch.from_numpy"),
    (lambda x: 1 / 0, "raised ZeroDivisionError: division by zero"),
    (_mutates, "changed its argument `x` in place"),
    (_sleeps, "longer than the 1 s limit"),
    (_bare_except_loop, "longer than the 1 s limit"),
    (_exits, "called sys.exit()"),
    (lambda x: (2 * x).as_subclass(_Forged) + 1, "subclass of torch.Tensor"),
    (lambda x: _EqualsEverything(), "expected a torch.Tensor, got an object of type"),
    ("not a function", "expected a function"),
])
def test_framework_messages(capsys, toy_id, isolation, fn, expected):
    if fn is _bare_except_loop and not isolation:
        pytest.skip("only a forked child (Linux) can stop a loop that catches every exception; see _sandbox.py")
    passed, out = run(capsys, toy_id, fn)
    assert passed == (expected == "✅ passed")
    assert expected in " ".join(out.split())
    assert out.startswith("✅ passed" if passed else "❌ not yet")


def test_a_loop_that_swallows_every_exception_ends_within_the_limit_off_the_main_thread(capsys, toy_id, isolation):
    if not isolation:
        pytest.skip("only a forked child (Linux) can stop a loop that catches every exception; see _sandbox.py")
    verdicts = []
    start = time.perf_counter()
    worker = threading.Thread(target=lambda: verdicts.append(check(toy_id, _bare_except_loop)))
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive() and time.perf_counter() - start < 4
    assert not verdicts[0] and "longer than the 1 s limit" in " ".join(capsys.readouterr().out.split())


def test_time_limit_interrupts_a_runaway_function(capsys, toy_id, isolation):
    start = time.perf_counter()
    run(capsys, toy_id, _sleeps)
    assert time.perf_counter() - start < 3


def test_global_state_is_restored(capsys, toy_id, isolation):
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    before = (torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_rng_state(), np.random.get_state()[1].copy(),
              random.getstate(), torch.get_num_threads())
    passed, _ = run(capsys, toy_id, _messes_with_global_state)
    after = (torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_rng_state(), np.random.get_state()[1].copy(),
             random.getstate(), torch.get_num_threads())
    assert passed
    assert before[:2] == after[:2] and torch.equal(before[2], after[2]) and np.array_equal(before[3], after[3])
    assert before[4:] == after[4:]


def test_keyboard_interrupt_prints_one_line(capsys, toy_id, monkeypatch):
    def interrupted(task, seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(_sandbox, "run_isolated", interrupted)
    passed, out = run(capsys, toy_id, _double)
    assert not passed and out == "check interrupted\n"


def _sleeps_long(x):
    time.sleep(20)
    return 2 * x


def test_a_real_sigint_during_a_check_stops_it_cleanly(capsys, toy_id, monkeypatch):
    import os
    import signal
    # A generous limit: on a loaded machine the timer thread may fire late, and the interrupt, not the
    # limit, must end the check (a missed interrupt would let the answer finish after 20 s and pass).
    monkeypatch.setattr(EXERCISES[toy_id], "time_limit", 60.0)
    # Ctrl-C raises KeyboardInterrupt, as in a Jupyter kernel. A process started in the background by a
    # non-interactive shell inherits SIGINT ignored, and Python then keeps it ignored: install the handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        passed, out = run(capsys, toy_id, _sleeps_long)
        timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not passed and out == "check interrupted\n"


def test_verdict_is_truthy_on_pass_and_not_echoed_by_jupyter(capsys, toy_id):
    verdict = check(toy_id, _double)
    assert isinstance(verdict, Verdict) and verdict and verdict._ipython_display_() is None
    assert not check(toy_id, lambda x: x + 2)
    assert capsys.readouterr().out.count("Exercise test.double") == 2


def test_ascii_terminal_gets_plain_words(toy_id, monkeypatch):
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))
    passed_verdict, failed_verdict = check(toy_id, _double), check(toy_id, lambda x: x + 2)
    sys.stdout.flush()
    text = raw.getvalue().decode("ascii")
    assert passed_verdict and not failed_verdict
    assert text.startswith("passed - Exercise test.double") and "\nnot yet - Exercise test.double" in text


def test_messages_wrap_at_word_boundaries():
    long_word_free = "Hint: " + " ".join(f"word{i}" for i in range(60))
    wrapped = wrap("❌ not yet - " + "x " * 80 + "\n   " + long_word_free)
    lines = wrapped.splitlines()
    assert all(len(line) <= WIDTH for line in lines)
    assert " ".join(wrapped.split()) == " ".join(("❌ not yet - " + "x " * 80 + " " + long_word_free).split())
    assert all(line.startswith("   ") for line in lines[1:])


def test_every_registered_hint_wraps_without_splitting_words(capsys, toy_id):
    run(capsys, toy_id, lambda x: x + 2)
    for exercise in EXERCISES.values():
        for mistake in exercise.mistakes:
            text = wrap("   Hint: " + mistake.hint)
            assert text.split() == ("Hint: " + mistake.hint).split()


@pytest.mark.parametrize("mode", ["autograde", "validate"])
def test_under_nbgrader_a_failing_check_raises_after_showing_its_message(capsys, toy_id, monkeypatch, mode):
    monkeypatch.setenv("NBGRADER_EXECUTION", mode)
    assert check(toy_id, _double)
    with pytest.raises(AssertionError, match="not yet"):
        check(toy_id, lambda x: x + 2)
    assert "hint-adds" in capsys.readouterr().out


def test_without_nbgrader_a_failing_check_never_raises(capsys, toy_id, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert not check(toy_id, lambda x: 1 / 0)


def test_student_prints_are_shown(capsys, toy_id, isolation):
    def chatty(x):
        print("hello from the student")
        return 2 * x

    passed, out = run(capsys, toy_id, chatty)
    assert passed and out.startswith("hello from the student\n")


def test_unknown_id_is_reported_not_raised(capsys):
    passed, out = run(capsys, "99.nothing", _double)
    assert not passed and "Unknown exercise id '99.nothing'" in out


def test_register_rejects_duplicates_and_single_mistakes(toy_id):
    with pytest.raises(ValueError, match="registered twice"):
        register(EXERCISES[toy_id])
    lonely = Exercise(id="test.lonely", title="", reference=_double, cases=list,
                      mistakes=[Mistake("one", _double, "")], hint="")
    with pytest.raises(ValueError, match="at least two"):
        register(lonely)


# ---------------------------------------------------------------- exercises that update arguments in place
def _accumulate(total, x):
    """A training-step-like exercise: add x into total (in place, on purpose) and return x's sum."""
    total.add_(x)
    return x.sum().item()


def _adds_one_too_many(total, x):
    total.add_(x + 1)
    return x.sum().item()


def _subtracts(total, x):
    total.sub_(x)
    return x.sum().item()


def _changes_x(total, x):
    total.add_(x)
    x.mul_(2)
    return x.sum().item() / 2


@pytest.fixture(scope="module")
def updating_id():
    exercise = register(Exercise(
        id="test.accumulate", title="add into a running total", reference=_accumulate,
        contract="a Python float; total updated in place",
        cases=lambda: [Case((torch.zeros(3), torch.arange(3.0)), label="three numbers")],
        mistakes=[Mistake("forgets to add", lambda total, x: x.sum().item(), "hint-forgets"),
                  Mistake("adds one too many", _adds_one_too_many, "hint-plus-one")],
        hint="generic-hint", updates=("total",)))
    yield exercise.id
    del EXERCISES[exercise.id]


@pytest.mark.parametrize("fn, expected", [
    (_accumulate, "✅ passed"),
    (lambda total, x: x.sum().item(), "hint-forgets"),
    (_adds_one_too_many, "hint-plus-one"),
    (_subtracts, "after your function, `total` differs from the reference's after its call"),
    (_changes_x, "changed its argument `x` in place"),
])
def test_updated_arguments_are_compared_with_the_reference(capsys, updating_id, fn, expected):
    """An argument in ``updates`` must end as the reference leaves it; every other argument must stay untouched."""
    passed, out = run(capsys, updating_id, fn)
    assert passed == (expected == "✅ passed")
    assert expected in " ".join(out.split())


def test_training_step_is_judged_by_the_weights_after_the_step(capsys):
    """Skipping optimizer.step() returns the right loss; only the updated weights give it away."""
    passed, out = run(capsys, "04.training_step", next(m.fn for m in EXERCISES["04.training_step"].mistakes
                                                       if m.name == "no optimizer.step()"))
    assert not passed and "after your function, `model." in " ".join(out.split())


# ---------------------------------------------------------------- every argument is snapshotted, not only tensors
def _scaled_layer(x, schedule, layer):
    return layer(x) * schedule.alpha_bars[-1].to(x.dtype)


def _layer_and_schedule_case():
    from course_lib.schedules import NoiseSchedule
    layer = torch.nn.Linear(3, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))
        layer.bias.zero_()
    return [Case((torch.ones(2, 3), NoiseSchedule.linear(10), layer), label="a layer and a schedule")]


@pytest.fixture(scope="module")
def layer_id():
    exercise = register(Exercise(
        id="test.scaled_layer", title="a layer scaled by the schedule", reference=_scaled_layer,
        contract="a float32 tensor of x's shape", cases=_layer_and_schedule_case,
        mistakes=[Mistake("first alpha_bar", lambda x, s, layer: layer(x) * s.alpha_bars[0].float(), "hint-first"),
                  Mistake("no layer", lambda x, s, layer: x * s.alpha_bars[-1].float(), "hint-layer")],
        hint="generic-hint"))
    yield exercise.id
    del EXERCISES[exercise.id]


def _casts_schedule(x, schedule, layer):
    schedule.alpha_bars = schedule.alpha_bars.float()
    return _scaled_layer(x, schedule, layer)


def _edits_betas(x, schedule, layer):
    result = _scaled_layer(x, schedule, layer)
    schedule.betas[0] = 0.5
    return result


def _scales_weights(x, schedule, layer):
    result = _scaled_layer(x, schedule, layer)
    with torch.no_grad():
        layer.weight.mul_(2)
    return result


def _switches_to_eval(x, schedule, layer):
    layer.eval()
    return _scaled_layer(x, schedule, layer)


@pytest.mark.parametrize("fn, where", [
    (_casts_schedule, "schedule.alpha_bars"),
    (_edits_betas, "schedule.betas"),
    (_scales_weights, "layer.weight"),
    (_switches_to_eval, "layer"),
])
def test_changes_to_any_argument_are_seen(capsys, layer_id, fn, where):
    """Schedule fields (replaced or edited), module parameters and a module's mode are all snapshotted."""
    assert run(capsys, layer_id, _scaled_layer)[0]
    passed, out = run(capsys, layer_id, fn)
    assert not passed and f"changed its argument `{where}` in place" in " ".join(out.split())


def test_solution_check_cells_show_the_verdict_once():
    """The stored output of every check cell is one "✅ passed" line, with no echoed `True` under it."""
    from pathlib import Path

    import nbformat
    from course_lib.authoring import CHECK_OUTPUT_TAG
    checked = 0
    for path in sorted(Path(__file__).resolve().parents[1].glob("solutions/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code" and CHECK_OUTPUT_TAG in cell.metadata.get("tags", []):
                checked += 1
                assert [output.output_type for output in cell.outputs] == ["stream"], (path.name, cell.source)
                assert cell.outputs[0].text.startswith("✅ passed - Exercise"), (path.name, cell.outputs[0].text)
    assert checked >= len(EXERCISE_IDS), f"only {checked} tagged check cells for {len(EXERCISE_IDS)} exercises"
