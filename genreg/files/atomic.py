"""Writes that readers never see half done: a temporary file renamed over the old one, then synced.

A write that fails (disk full, no permission) raises :class:`~genreg.errors.OutputError`
and leaves the old file as it was; a writer killed meanwhile leaves only a hidden
temporary file, which the next write of the same file removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from genreg.errors import OutputError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then rename ``tmp`` over ``path``: readers never see half a file.

    A process killed meanwhile leaves ``path`` as it was (plus a hidden
    ``.NAME.PID.tmpSUFFIX``, removed by the next write of ``path`` once that process
    is gone); a failed write (disk full, no permission) removes
    ``tmp`` and raises :class:`OutputError`, again leaving ``path`` as it was.
    ``tmp`` keeps the suffix for writers that choose a format by it (matplotlib).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    _remove_orphans(path)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:  # safetensors reports its own I/O errors as SafetensorError
        kept = "its previous contents are unchanged" if os.path.exists(path) else "no partial file was left"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(f"could not write {path} ({reason}); {kept}.") from None
    finally:
        with contextlib.suppress(OSError):  # a cleanup that fails (read-only file system) must not hide the cause
            tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def check_writable(path: str | Path, option: str) -> Path:
    """``path`` if a file can be written there now, so that a command refuses before it works, not after.

    The folder must exist and take a new file (a nameless probe file is created in it
    and vanishes at once; this sees read-only file systems and permissions alike), and
    the name must fit the file system. Raises :class:`OutputError` naming ``option``
    (``-o``, say), the path and the cause.
    """
    path = Path(path)
    problem = _unwritable(path)
    if problem:
        raise OutputError(f"{option} {path}: {problem}")
    return path


def _unwritable(path: Path) -> str | None:
    """Why no file can be written at ``path`` now (None: it can)."""
    folder = path.parent
    try:
        if not folder.is_dir():
            return f"the folder {folder} does not exist; create it, or choose another place."
        longest = os.pathconf(folder, "PC_NAME_MAX")
        if len(path.name.encode()) > longest:
            return f"a file name of {len(path.name.encode()):,} bytes; this file system allows {longest}."
        if path.is_dir():
            return "a folder; give the name of a file to write."
        with tempfile.TemporaryFile(dir=folder, prefix=".genreg-probe"):
            return None
    except OSError as exc:  # a read-only file system, no permission, a path too long
        return f"cannot write in {folder} ({exc.strerror or exc}); choose another place."


def _remove_orphans(path: Path) -> None:
    """Delete temporary files that killed writers left beside ``path`` (their process no longer exists)."""
    for orphan in path.parent.glob(f".{path.name}.*.tmp{path.suffix}"):
        pid = orphan.name[len(path.name) + 2 :].partition(".")[0]
        if pid.isdecimal() and not process_alive(int(pid)):
            orphan.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (another user's counts); an id no process can have
    (0 or less, which would signal a process group, or beyond the system's range) is of no process."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: beyond a C pid_t
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, value: Any) -> None:
    """Write JSON atomically, pretty-printed."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(value, indent=2) + "\n"))
