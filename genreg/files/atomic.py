"""Writes that readers never see half done: a temporary file renamed over the old one, then synced.

A write that fails (disk full, no permission) raises :class:`~genreg.errors.OutputError`
and leaves the old file as it was; a writer killed meanwhile leaves only a hidden
temporary file, which the next write of the same file removes.
"""

from __future__ import annotations

import json
import os
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
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _remove_orphans(path: Path) -> None:
    """Delete temporary files that killed writers left beside ``path`` (their process no longer exists)."""
    for orphan in path.parent.glob(f".{path.name}.*.tmp{path.suffix}"):
        pid = orphan.name[len(path.name) + 2 :].partition(".")[0]
        if pid.isdecimal() and not process_alive(int(pid)):
            orphan.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
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
