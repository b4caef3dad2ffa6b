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
        raise ValueError(f"{name} must be a finite number{' ' * bool(bounds)}{bounds}, got {value}")
    return float(value)


def require_in_unit_interval(value, name: str) -> None:
    """A number, array or tensor whose every value lies in [0, 1] (NaN refused); a ValueError naming the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) and not hasattr(value, "min"):
        raise TypeError(f"{name} must be a number, array or tensor in [0, 1], got {type(value).__name__}")
    if getattr(value, "size", 1) == 0 or isinstance(value, torch.Tensor) and value.numel() == 0:
        return
    low, high = (float(value), float(value)) if isinstance(value, numbers.Real) else (float(value.min()), float(value.max()))
    if not 0.0 <= low <= high <= 1.0:
        got = f"{low:g}" if low == high else f"values from {low:g} to {high:g}"
        raise ValueError(f"{name} must lie in [0, 1], got {got}")


def require_interpolable(z0, z1) -> None:
    """Two tensors of one shape with an angle between them: neither zero, not (anti)parallel (slerp's sin(theta) > 0)."""
    for tensor, name in ((z0, "z0"), (z1, "z1")):
        require_float_tensor(tensor, name)
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    norms = (z0.norm().item(), z1.norm().item())
    if not all(math.isfinite(norm) and norm > 0 for norm in norms):
        raise ValueError(f"z0 and z1 must be non-zero and finite (slerp divides by their norms), got norms "
                         f"{norms[0]:g} and {norms[1]:g}")
    cosine = ((z0 * z1).sum() / (norms[0] * norms[1])).item()
    if abs(cosine) >= 1.0:
        raise ValueError("z0 and z1 point the same or opposite ways, so no single great circle joins them "
                         "(sin(theta) = 0); interpolate between two independent noises")


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
