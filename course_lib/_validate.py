"""Input checks shared by the library: each raises a message naming what was expected and what came."""
from __future__ import annotations

import numbers

import torch


def require_tensor(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def require_float_tensor(value, name: str, min_dims: int = 1) -> torch.Tensor:
    require_tensor(value, name)
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.ndim < min_dims:
        raise ValueError(f"{name} must have at least {min_dims} dimension(s) (batch first), "
                         f"got shape {tuple(value.shape)}")
    return value


def require_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_b} must have the shape of {name_a} {tuple(a.shape)}, got {tuple(b.shape)}")


def require_int(value, name: str, minimum: int | None = None) -> int:
    """An integer (Python or NumPy), returned as a Python int; bool is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def require_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(choices)}")
    return value
