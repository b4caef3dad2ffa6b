"""Where the arithmetic runs and in which precision: one device choice, one autocast context.

    pick_device        "auto" -> the best device present (CUDA, then Apple's MPS, then the CPU); a device named
                       outright must be present, or a ValueError says so in one line
    default_precision  fp32 on the CPU and MPS; bf16 on a CUDA GPU that has it (no loss scaling needed)
    autocast           torch.autocast for bf16 / fp16, nothing for fp32
    grad_scaler        torch.amp.GradScaler, enabled for fp16 only (its 5 exponent bits underflow small gradients)

Random numbers stay on the CPU whatever the device (noise is drawn there with the seeded generator and then
moved), so a seed means the same numbers everywhere; only the arithmetic's rounding differs between devices.
"""
from __future__ import annotations

import contextlib

import torch

from ._validate import require_choice

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _present(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return torch.backends.mps.is_available()
    return True


def pick_device(name: str = "auto") -> torch.device:
    """The torch.device to compute on: name is "auto" (CUDA if present, else MPS, else CPU), "cpu", "cuda" or "mps".

    Call it once at the top of a notebook or script and pass the result wherever a ``device`` is taken.
    ValueError (one line) when the device named is not present on this machine.
    """
    require_choice(name, "device", DEVICES)
    if name == "auto":
        return torch.device(next(kind for kind in ("cuda", "mps", "cpu") if _present(kind)))
    if not _present(name):
        why = {"cuda": "no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False)",
               "mps": "Apple's MPS backend is not available (torch.backends.mps.is_available() is False)"}[name]
        raise ValueError(f"--device {name}: {why}; use --device auto or cpu")
    return torch.device(name)


def default_precision(device) -> str:
    """fp32 except on a CUDA GPU with bfloat16 (Ampere and later), where bf16 runs the convolutions faster."""
    device = torch.device(device)
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def autocast(device, precision: str = "fp32"):
    """A context in which the forward pass runs in ``precision`` ("fp32": a context that does nothing)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision])


def grad_scaler(device, precision: str = "fp32") -> torch.amp.GradScaler:
    """A GradScaler that scales the loss only for fp16 (disabled, it passes everything through unchanged)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
