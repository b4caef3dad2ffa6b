"""Writing files so that no reader, and no crash, ever leaves half of one behind.

    write_atomically        one file: its old content or the complete new one, never a mix
    write_files_atomically  a set of files in one folder (the procedural demo's PNGs and CSV): all or none

Where Linux allows it, the new content is written to an anonymous file (O_TMPFILE), which has no name until
it is complete, so even a SIGKILL mid-write leaves nothing behind. Elsewhere it goes to a hidden temporary
beside the target, ``.NAME.PID.tmp``; temporaries left by a killed process are removed by the next write
to the same place.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable


def _fsync(path) -> None:
    """Flush ``path`` (a file or a directory) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _temporary(directory: Path, name: str) -> Path:
    """This process's temporary for ``name``, in ``directory``, after removing those of ended processes."""
    _remove_stale_temporaries(directory, name)
    return directory / f".{name}.{os.getpid()}.tmp"


def _remove_stale_temporaries(directory: Path, name: str) -> None:
    """Remove the ``.NAME.PID.tmp`` files and folders in ``directory`` whose process has ended (killed mid-write)."""
    for stale in directory.glob(f".{name}.*.tmp"):
        pid = stale.name[len(name) + 2:-len(".tmp")]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # someone else's process
        return True
    return True


def _anonymous_file(folder: Path) -> int | None:
    """A descriptor of a new nameless file in ``folder`` (Linux O_TMPFILE), or None where that is unsupported."""
    if not hasattr(os, "O_TMPFILE") or not Path("/proc/self/fd").is_dir():
        return None
    try:
        return os.open(folder, os.O_TMPFILE | os.O_RDWR, 0o666)
    except OSError:      # a file system without O_TMPFILE support
        return None


def _name_anonymous_file(descriptor: int, path: Path) -> None:
    """Give the O_TMPFILE file ``descriptor`` the name ``path``: linkat(AT_SYMLINK_FOLLOW) of its /proc link.

    os.link calls plain link(2), which would link the /proc symlink itself, unless a dir_fd is given."""
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.link(f"/proc/self/fd/{descriptor}", path.name, dst_dir_fd=folder, follow_symlinks=True)
    finally:
        os.close(folder)


def write_atomically(path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary)`` for a temporary file, then rename it over ``path``.

    The temporary is fsynced before os.replace (atomic within a directory) and the directory after it, so
    ``path`` holds either its old content or the complete new one, whatever fails in between, even a power
    cut; the temporary is removed if anything fails (on Linux it has no name until it is complete, so not
    even a SIGKILL leaves it behind). Parent directories are created. ``write`` must write exactly the path it
    is given, which may be /proc/self/fd/N, with no suffix (np.save, which appends .npy, needs a file object).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary, descriptor = _temporary(path.parent, path.name), _anonymous_file(path.parent)
    try:
        if descriptor is None:
            write(temporary)
            _fsync(temporary)
        else:
            write(Path(f"/proc/self/fd/{descriptor}"))   # reopening the magic link writes the nameless file
            os.fsync(descriptor)
            _name_anonymous_file(descriptor, temporary)   # a name only now, microseconds before the rename
        os.replace(temporary, path)
        _fsync(path.parent)
    finally:
        if descriptor is not None:
            os.close(descriptor)
        temporary.unlink(missing_ok=True)


def write_files_atomically(folder, files: dict[str, bytes]) -> None:
    """Write ``files`` ({name: content}) into ``folder`` as a set: all of them or, if anything fails, none.

    They are written and fsynced in a hidden staging folder first. A new ``folder`` is that staging folder
    renamed (atomic); into an existing one the files are renamed one by one, a window of microseconds in which
    a crash would leave some replaced and some not (the data itself is complete either way).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    fresh = not folder.exists()
    staging = _temporary(folder.parent if fresh else folder, folder.name)
    try:
        staging.mkdir()
        for name, data in files.items():
            (staging / name).write_bytes(data)
            _fsync(staging / name)
        _fsync(staging)
        if fresh:
            os.rename(staging, folder)
        else:
            for name in files:
                os.replace(staging / name, folder / name)
        _fsync(folder)
        _fsync(folder.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
