"""Comparing a student's result with the reference, and an argument with its snapshot, by exact type."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def tolerance(want, exercise) -> tuple[float, float]:
    """(rtol, atol): float64 tensors at float64 precision; everything else at what float32 arithmetic keeps.

    1e-3 relative for float32: a coefficient cast to float32 before ``1 - alpha_bar`` loses up to ~1e-3 of
    sqrt(1 - alpha_bar) at t = 0 of the cosine schedule, and that order of operations is a correct answer.
    """
    if exercise.rtol is not None:
        return exercise.rtol, exercise.atol if exercise.atol is not None else 0.0
    if isinstance(want, torch.Tensor) and want.dtype == torch.float64:
        return 1e-7, 1e-10
    return 1e-3, 1e-5


# ---------------------------------------------------------------- comparing a result with the reference
class ContractProblem(str):
    """A problem with the result's type, container, shape or dtype (rather than its values)."""


def describe(value) -> str:
    kind = type(value)
    if isinstance(value, torch.Tensor):
        sub = "" if kind is torch.Tensor else f" (a {kind.__name__}, subclass of torch.Tensor)"
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}{sub}"
    if isinstance(value, np.ndarray):
        return f"a NumPy array of shape {value.shape} (convert it back with torch.from_numpy)"
    if isinstance(value, (tuple, list)):
        return f"a {kind.__name__} of {len(value)} items"
    if kind in (float, int, bool, str):
        return f"{kind.__name__} {value!r:.40}"
    return f"an object of type {kind.__module__}.{kind.__qualname__}"


def _plain_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy copy of an exact torch.Tensor's data: nothing the student defined takes part in comparing."""
    return torch.Tensor.numpy(torch.Tensor.cpu(torch.Tensor.detach(tensor))).astype(np.float64, copy=True)


def compare(got, want, exercise, where: str = "") -> str | None:
    """None when ``got`` matches ``want`` exactly in type and closely in value; otherwise what differs, in words."""
    if isinstance(want, torch.Tensor):
        if type(got) is not torch.Tensor:
            return ContractProblem(f"{where}expected a torch.Tensor, got {describe(got)}")
        if got.shape != want.shape:
            return ContractProblem(f"{where}expected shape {tuple(want.shape)}, got {tuple(got.shape)}")
        if got.dtype != want.dtype:
            return ContractProblem(f"{where}expected dtype {want.dtype}, got {got.dtype}")
        mine, theirs = _plain_numpy(got), _plain_numpy(want)
        if not np.isfinite(mine).all() and np.isfinite(theirs).all():
            return f"{where}the result contains NaN or infinity"
        rtol, atol = tolerance(want, exercise)
        if not np.allclose(mine, theirs, rtol=rtol, atol=atol, equal_nan=True):
            if want.is_floating_point():
                return f"{where}values differ from the reference (largest difference {np.abs(mine - theirs).max():.3g})"
            return f"{where}values differ from the reference"
        return None
    if isinstance(want, (tuple, list)):
        if type(got) is not type(want) or len(got) != len(want):
            return ContractProblem(f"{where}expected a {type(want).__name__} of {len(want)} items, got {describe(got)}")
        for index, (mine, theirs) in enumerate(zip(got, want)):
            problem = compare(mine, theirs, exercise, f"{where}item {index + 1} of the {type(want).__name__}: ")
            if problem:
                return problem
        return None
    if isinstance(want, float):
        if type(got) is not int and not isinstance(got, float):
            return ContractProblem(f"{where}expected a Python float, got {describe(got)} (use float(...) or .item())")
        got = float.__float__(float(got)) if type(got) is int else float.__float__(got)   # the value, not an override
        rtol, atol = tolerance(want, exercise)
        return None if abs(got - want) <= atol + rtol * abs(want) else f"{where}expected {want:.6g}, got {got:.6g}"
    if type(got) is not type(want):
        return ContractProblem(f"{where}expected {describe(want)}, got {describe(got)}")
    return None if got == want else f"{where}expected {want!r}, got {got!r}"


# ---------------------------------------------------------------- snapshots: was an argument changed in place?
def changed(before, after, path: str) -> str | None:
    """The path of the first part of ``after`` that differs from its snapshot ``before``, or None."""
    if isinstance(before, torch.Tensor):
        same = (isinstance(after, torch.Tensor) and after.shape == before.shape and after.dtype == before.dtype
                and torch.equal(torch.Tensor.detach(after), torch.Tensor.detach(before)))
        return None if same else path
    if isinstance(before, nn.Module):
        if not isinstance(after, nn.Module) or after.training != before.training:
            return path
        mine, theirs = after.state_dict(), before.state_dict()
        if mine.keys() != theirs.keys():
            return path
        return next((f"{path}.{name}" for name in theirs if changed(theirs[name], mine[name], "") is not None), None)
    if isinstance(before, (tuple, list)):
        if type(after) is not type(before) or len(after) != len(before):
            return path
        return next((f"{path}[{i}]" for i, (b, a) in enumerate(zip(before, after)) if changed(b, a, "") is not None),
                    None)
    if isinstance(before, dict):
        if not isinstance(after, dict) or after.keys() != before.keys():
            return path
        return next((f"{path}[{k!r}]" for k in before if changed(before[k], after[k], "") is not None), None)
    if isinstance(before, torch.Generator) or callable(before):
        return None                       # drawing from a generator is its purpose; functions hold no data
    if hasattr(before, "__dict__"):
        fields = vars(after)
        for name, value in vars(before).items():
            if name not in fields or changed(value, fields[name], "") is not None:
                return f"{path}.{name}"
        return None
    return None if type(after) is type(before) and after == before else path


# ---------------------------------------------------------------- arguments a function must update in place
def state_tensors(value, path: str) -> list:
    """(path, tensor) pairs of everything an in-place update can change: tensors, modules, optimizers, objects."""
    if isinstance(value, torch.Tensor):
        return [(path, torch.Tensor.detach(value))]
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


def updated_differently(mine, theirs, name: str, exercise) -> str | None:
    """What differs between an argument the student's function updated and the reference's after its call, or None."""
    got, want = state_tensors(mine, name), state_tensors(theirs, name)
    if [path for path, _ in got] != [path for path, _ in want]:
        return f"after your function, `{name}` does not have the reference's parts (was it replaced or re-created?)"
    for (path, a), (_, b) in zip(got, want):
        if a.shape != b.shape:
            return f"after your function, `{path}` has shape {tuple(a.shape)} instead of {tuple(b.shape)}"
        mine_values, theirs_values = _plain_numpy(a), _plain_numpy(b)
        rtol, atol = tolerance(b, exercise)
        if not np.allclose(mine_values, theirs_values, rtol=rtol, atol=atol):
            return (f"after your function, `{path}` differs from the reference's after its call "
                    f"(largest difference {np.abs(mine_values - theirs_values).max():.3g})")
    return None
