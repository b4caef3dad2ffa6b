"""Every exercise check passes its reference and rejects the stub and each registered typical mistake."""
import time

import pytest
import torch

from course_lib.checks import EXERCISES, Case, Exercise, Mistake, check
from course_lib.checks._framework import register

EXERCISE_IDS = sorted(EXERCISES)
MISTAKES = [(exercise_id, mistake) for exercise_id in EXERCISE_IDS for mistake in EXERCISES[exercise_id].mistakes]


def run(capsys, exercise_id, fn):
    passed = check(exercise_id, fn)
    return passed, capsys.readouterr().out


@pytest.mark.parametrize("exercise_id", EXERCISE_IDS)
def test_reference_passes(capsys, exercise_id):
    passed, out = run(capsys, exercise_id, EXERCISES[exercise_id].reference)
    assert passed, out
    assert out.startswith("✅") and out.count("\n") == 1


@pytest.mark.parametrize("exercise_id", EXERCISE_IDS)
def test_stub_is_rejected(capsys, exercise_id):
    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {exercise_id}: replace this line with your code")

    passed, out = run(capsys, exercise_id, stub)
    assert not passed
    assert out.startswith("❌") and "not implemented yet" in out


@pytest.mark.parametrize("exercise_id, mistake", MISTAKES, ids=[f"{e}-{m.name}" for e, m in MISTAKES])
def test_typical_mistake_is_rejected_with_its_own_hint(capsys, exercise_id, mistake):
    passed, out = run(capsys, exercise_id, mistake.fn)
    assert not passed, f"the check accepts the mistake {mistake.name!r}"
    assert out.startswith("❌")
    assert mistake.hint in out, f"the check did not recognise the mistake {mistake.name!r}:\n{out}"


@pytest.mark.parametrize("exercise_id", EXERCISE_IDS)
def test_every_exercise_has_two_distinct_mistakes(exercise_id):
    hints = [mistake.hint for mistake in EXERCISES[exercise_id].mistakes]
    assert len(hints) >= 2 and len(set(hints)) == len(hints)


@pytest.mark.parametrize("exercise_id", EXERCISE_IDS)
def test_cases_are_reproducible(exercise_id):
    """Cases are seeded: two builds give identical inputs, so the check's verdict never depends on luck."""
    first, second = EXERCISES[exercise_id].cases(), EXERCISES[exercise_id].cases()
    for a, b in zip(first, second):
        for x, y in zip(a.args, b.args):
            if isinstance(x, torch.Tensor):
                assert torch.equal(x, y)


# ---------------------------------------------------------------- the framework's messages, on a toy exercise
def _double(x):
    return 2 * x


@pytest.fixture(scope="module")
def toy_id():
    exercise = register(Exercise(
        id="test.double", title="double a tensor", reference=_double,
        cases=lambda: [Case((torch.arange(6, dtype=torch.float32).reshape(2, 3),), label="2x3")],
        mistakes=[Mistake("adds", lambda x: x + 2, "hint-adds"), Mistake("squares", lambda x: x * x, "hint-squares")],
        hint="generic-hint", time_limit=1.0))
    yield exercise.id
    del EXERCISES[exercise.id]


def _mutates(x):
    x *= 2
    return x


def _sleeps(x):
    time.sleep(5)
    return 2 * x


@pytest.mark.parametrize("fn, expected", [
    (lambda x: 2 * x, "✅"),
    (lambda x: x + 2, "hint-adds"),
    (lambda x: 3 * x, "generic-hint"),
    (lambda x: (2 * x)[0], "expected shape (2, 3), got (3,)"),
    (lambda x: (2 * x).double(), "expected dtype torch.float32, got torch.float64"),
    (lambda x: x * float("nan"), "NaN or infinity"),
    (lambda x: (2 * x).tolist(), "expected a torch.Tensor, got a list"),
    (lambda x: 1 / 0, "raised ZeroDivisionError: division by zero"),
    (_mutates, "changed its input `x` in place"),
    (_sleeps, "longer than the 1 s limit"),
    ("not a function", "expected a function"),
])
def test_framework_messages(capsys, toy_id, fn, expected):
    passed, out = run(capsys, toy_id, fn)
    assert passed == (expected == "✅")
    assert expected in out


def test_time_limit_interrupts_a_runaway_function(capsys, toy_id):
    start = time.perf_counter()
    run(capsys, toy_id, _sleeps)
    assert time.perf_counter() - start < 3


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


@pytest.fixture(scope="module")
def updating_id():
    exercise = register(Exercise(
        id="test.accumulate", title="add into a running total", reference=_accumulate,
        cases=lambda: [Case((torch.zeros(3), torch.arange(3.0)), label="three numbers")],
        mistakes=[Mistake("forgets to add", lambda total, x: x.sum().item(), "hint-forgets"),
                  Mistake("adds one too many", _adds_one_too_many, "hint-plus-one")],
        hint="generic-hint", updates=("total",)))
    yield exercise.id
    del EXERCISES[exercise.id]


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


@pytest.mark.parametrize("fn, expected", [
    (_accumulate, "✅"),
    (lambda total, x: x.sum().item(), "hint-forgets"),
    (_adds_one_too_many, "hint-plus-one"),
    (_subtracts, "after your function, `total` differs from the reference's"),
    (_changes_x, "changed its input `x` in place"),
])
def test_updated_arguments_are_compared_with_the_reference(capsys, updating_id, fn, expected):
    """An argument in ``updates`` must end as the reference leaves it; every other argument must stay untouched."""
    passed, out = run(capsys, updating_id, fn)
    assert passed == (expected == "✅")
    assert expected in out


NEW_EXERCISES = ["04.training_step", "05.ddpm_sample_loop", "05.skip_posterior"]


@pytest.mark.parametrize("exercise_id", NEW_EXERCISES)
def test_algorithm_exercises_know_five_typical_mistakes(exercise_id):
    assert len(EXERCISES[exercise_id].mistakes) >= 5


def test_training_step_is_judged_by_the_weights_after_the_step(capsys):
    """Skipping optimizer.step() returns the right loss; only the updated weights give it away."""
    passed, out = run(capsys, "04.training_step", next(m.fn for m in EXERCISES["04.training_step"].mistakes
                                                       if m.name == "no optimizer.step()"))
    assert not passed and "after your function, `model." in out
