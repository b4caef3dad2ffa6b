"""One checker per exercise: ``check(exercise_id, fn)`` shows ✅ or ❌ with a hint (see _framework.py).

Each notebook's exercises live in their own module (``nb01.py``, ``nb02.py``, ...), which registers
them in ``EXERCISES`` on import; every such module in this package is imported here.
"""
import importlib
import pkgutil

from ._framework import EXERCISES, Case, Exercise, Mistake, check, register
from ._verdict import Verdict

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["EXERCISES", "Case", "Exercise", "Mistake", "Verdict", "check", "register"]
