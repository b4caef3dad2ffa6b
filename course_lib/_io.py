"""Writing files so that no reader, and no crash, ever leaves half of one behind."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomically(path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary)`` for a temporary file beside ``path``, then rename it over ``path``.

    os.replace is atomic within a directory: ``path`` holds either its old content or the complete
    new one, whatever fails in between. Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
