"""The checked edges: every input check of the library lives here, and only the edges call it.

Formula functions (schedules, forward, sampler steps, guidance combinations, losses) trust their callers;
the public entry points (the CLI, ``sample``, ``inpaint``, ``ddim_invert``, ``train``, the loaders, ``check``)
call these once. Each raises a TypeError / ValueError naming what was expected and what came.
"""
from __future__ import annotations

import math
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


def require_int(value, name: str, minimum: int | None = None) -> int:
    """An integer (Python or NumPy), returned as a Python int; bool is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def require_number(value, name: str, low: float | None = None, high: float | None = None) -> float:
    """A finite real number in [low, high] (either bound optional), returned as a float; bool is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        bounds = (f"in [{low}, {high}]" if low is not None and high is not None
                  else f">= {low}" if low is not None else f"<= {high}" if high is not None else "")
        raise ValueError(f"{name} must be a finite number {bounds}, got {value}".rstrip())
    return float(value)


def require_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(choices)}")
    return value


def require_callable(fn, name: str, signature: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be callable as {signature}, got {type(fn).__name__}")


def require_schedule(schedule):
    """``schedule`` itself when it is a NoiseSchedule; a TypeError naming what came otherwise."""
    from .schedules import NoiseSchedule     # imported here: schedules imports this module

    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    return schedule


def require_labels(y, num_classes: int | None = None, batch: int | None = None):
    """Class labels: an int, or an integer tensor of shape (B,), in 0..num_classes-1 when num_classes is given.

    Returns an int or a CPU int64 tensor of shape (B,); a tensor must hold ``batch`` labels when batch is given.
    """
    if isinstance(y, bool):
        raise TypeError("y must be an int label or an int64 tensor of labels of shape (B,), got bool")
    if isinstance(y, numbers.Integral):
        y = int(y)
        labels = torch.tensor([y])
    elif isinstance(y, torch.Tensor):
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"y must hold integer class labels (int64), got dtype {y.dtype}")
        if y.ndim != 1 or y.numel() == 0:
            raise ValueError(f"y must be an int or a tensor of labels of shape (B,), got shape {tuple(y.shape)}")
        labels = y = y.detach().to(device="cpu", dtype=torch.int64)
        if batch is not None and y.numel() != batch:
            raise ValueError(f"y holds {y.numel()} labels but the batch holds {batch}; pass one label per "
                             f"item or a single int for all")
    else:
        raise TypeError(f"y must be an int label or an int64 tensor of labels of shape (B,), got {type(y).__name__}")
    if labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes):
        upper = "" if num_classes is None else f"..{num_classes - 1}"
        raise ValueError(f"class labels must lie in 0{upper}, got values from {labels.min().item()} "
                         f"to {labels.max().item()}")
    return y


def require_shape(shape) -> tuple[int, ...]:
    """A non-empty tuple of positive ints such as (B, C, H, W)."""
    if not isinstance(shape, (tuple, list, torch.Size)):
        raise TypeError(f"shape must be a tuple of ints such as (B, C, H, W), got {type(shape).__name__}")
    if len(shape) == 0 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape):
        raise ValueError(f"shape must be a non-empty tuple of positive ints such as (B, C, H, W), got {tuple(shape)}")
    return tuple(shape)


def require_model_kwargs(model_kwargs) -> dict:
    if model_kwargs is None:
        return {}
    if not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict of extra model arguments, got {type(model_kwargs).__name__}")
    return model_kwargs


def make_generator(seed) -> torch.Generator | None:
    """A CPU generator from an int seed; a given CPU generator as is; None -> None (the global RNG, torch.manual_seed)."""
    if seed is None:
        return None
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ValueError(f"the generator must live on the CPU (noise is drawn there, then moved), got {seed.device}")
        return seed
    return torch.Generator().manual_seed(require_int(seed, "seed", minimum=0))
