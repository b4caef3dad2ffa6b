"""Docstrings stay true to their signatures, and the public functions the notebooks use are listed in one place."""
import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path

import pytest

import course_lib

ROOT = Path(__file__).resolve().parent.parent
# A documented parameter: "name: ..." or "name1, name2: ..." at the start of a docstring line or after "; ".
DOCUMENTED = re.compile(r"(?:^\s*|;\s+)((?:[a-z_][a-z0-9_]*)(?:, [a-z_][a-z0-9_]*)*):\s", re.MULTILINE)


def _modules():
    for info in pkgutil.iter_modules(course_lib.__path__):
        if not info.name.startswith("_") and info.name != "checks":
            yield importlib.import_module(f"course_lib.{info.name}")


def _public_callables():
    for module in _modules():
        for name, value in vars(module).items():
            if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(value):
                yield f"{module.__name__}.{name}", value, set(inspect.signature(value).parameters)
            elif inspect.isclass(value) and not issubclass(value, Exception):
                names = set(inspect.signature(value).parameters) | set(getattr(value, "__dataclass_fields__", {}))
                yield f"{module.__name__}.{name}", value, names | set(vars(value))
                for method_name, method in vars(value).items():
                    if inspect.isfunction(method) and not method_name.startswith("_"):
                        yield (f"{module.__name__}.{name}.{method_name}", method,
                               set(inspect.signature(method).parameters))


CALLABLES = sorted(_public_callables(), key=lambda item: item[0])


@pytest.mark.parametrize("name, fn, parameters", CALLABLES, ids=[item[0] for item in CALLABLES])
def test_documented_parameters_exist(name, fn, parameters):
    """Every 'name:' a docstring documents is a parameter (or, for a class, a field or attribute) of the signature."""
    doc = inspect.getdoc(fn) or ""
    documented = {part for match in DOCUMENTED.findall(doc) for part in match.split(", ")}
    stale = documented - parameters
    assert not stale, f"{name}: the docstring documents {sorted(stale)}, which the signature does not have"


def test_every_public_function_has_a_docstring():
    missing = [name for name, fn, _ in CALLABLES if not inspect.getdoc(fn) and "." not in name.split(".", 2)[-1]]
    assert not missing, f"public functions and classes without a docstring: {missing}"


def test_the_public_map_lists_what_the_notebooks_use():
    """course_lib.PUBLIC is the one list of what notebooks call; each entry exists and has a docstring."""
    for module_name, names in course_lib.PUBLIC.items():
        module = importlib.import_module(f"course_lib.{module_name}")
        for name in names:
            value = getattr(module, name)
            assert not callable(value) or inspect.getdoc(value), f"course_lib.{module_name}.{name} has no docstring"
    used = set()
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            used |= set(re.findall(r"\b(" + "|".join(course_lib.PUBLIC) + r")\.([A-Za-z_]\w*)", source))
            for module_name, names in re.findall(r"from course_lib\.(\w+) import ([\w, ]+)", source):
                used |= {(module_name, name.strip()) for name in names.split(",")}
    unlisted = sorted(f"{m}.{n}" for m, n in used if m in course_lib.PUBLIC and n not in course_lib.PUBLIC[m])
    assert not unlisted, f"notebooks use names missing from course_lib.PUBLIC: {unlisted}"
