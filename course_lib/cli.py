"""The command line's shared edge: what every command does with what it was given, and the helpers for it.

One module per command (cli_notebooks, cli_procedural, cli_train, cli_sample); ``__main__.py`` parses the
arguments and calls one. Each command checks what it was given before starting (paths by the command, settings
by the configs), prints errors as one line on stderr and returns the exit status: 0 done, 1 runtime failure,
2 usage error.

    usage_error                 a library error as one line on stderr, its setting spelled as the option; exit 2
    require_writable_directory  an output path refused before any work: a folder, or nowhere writable
    png_bytes                   an image (H, W, C) in [0, 1] as PNG bytes, to be written atomically
"""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path


def usage_error(error: Exception, flags: dict) -> int:
    """Print ``error`` as one line on stderr, a leading library name (grad_clip) spelled as its option
    (--grad-clip); return 2, the exit status of a usage error."""
    name, _, rest = str(error).partition(" ")
    print(f"error: {flags.get(name, name)} {rest}".rstrip(), file=sys.stderr)
    return 2


def require_writable_directory(option: str, path: Path) -> None:
    """ValueError naming ``option`` unless ``path`` is not a folder and its folder exists (or can be made) and is
    writable."""
    if path.is_dir():
        raise ValueError(f"{option}: {path} is a folder; give a file name")
    folder = path.resolve().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write {path}: {folder} is not a writable directory")


def png_bytes(image) -> bytes:
    """An image (H, W, C) in [0, 1] as the bytes of a PNG file (grey for C = 1), for an atomic write."""
    from PIL import Image

    from .procedural import to_uint8

    pixels = to_uint8(image)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()
