"""Writing files so that no reader, and no crash, ever leaves half of one behind."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a directory) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary)`` for a temporary file beside ``path``, then rename it over ``path``.

    The temporary is fsynced before os.replace (atomic within a directory) and the directory after it, so
    ``path`` holds either its old content or the complete new one, whatever fails in between, even a power
    cut; the temporary is removed if anything fails. Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        _fsync(temporary)
        os.replace(temporary, path)
        _fsync(path.parent)
    finally:
        temporary.unlink(missing_ok=True)
