"""A run folder's lock file: one process writes a run folder at a time (see :meth:`RunFolder.locked`).

The lock file names its holder (pid, host, command, start) and is never seen empty or half written: the holder
is written to a temporary file first, which is then linked into place (creating the lock and filling it are one
step). A lock whose holder was on this machine and is gone (a killed process) is stale and taken over; so is a
broken one (a pid no process can have, or contents that are not a holder and are older than :data:`GRACE`
seconds: written by something else, or by an earlier genreg killed while writing it).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from genreg.errors import RunFolderError
from genreg.files.atomic import process_alive

GRACE = 5.0  # seconds; an unreadable lock younger than this may be one an earlier genreg is still writing


@contextlib.contextmanager
def holding(lock: Path, folder: Path) -> Iterator[None]:
    """Hold ``lock`` (the lock file of the run folder ``folder``, which exists) while the body runs.

    Raises :class:`RunFolderError` naming the holder when another process holds it, or naming ``lock`` when it
    cannot be written or is a folder.
    """
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300]}
    mine["since"] = time.strftime("%Y-%m-%d %H:%M:%S")
    while not take(lock, mine):
        if lock.is_dir() or (lock.exists() and not lock.is_file()):
            raise RunFolderError(
                f"{lock} is not a lock file genreg wrote (it is a folder or another kind of file), so {folder} "
                "cannot be locked; delete it, or choose another folder with --out."
            )
        holder = read_holder(lock)
        if not (broken(lock, holder) or (holder is not None and stale(holder))):
            raise RunFolderError(in_use(folder, lock, holder))
        lock.unlink(missing_ok=True)  # its process is gone (a killed run), or no process wrote it: take it over
    try:
        yield
    finally:
        if read_holder(lock) == mine:
            lock.unlink(missing_ok=True)


def take(lock: Path, holder: dict) -> bool:
    """Create the lock file with ``holder`` in it, in one step; False if it exists already.

    The holder goes to a temporary file, linked to ``lock`` (which fails if ``lock`` exists); where a file
    system has no links, the lock is created exclusively and then written. Raises :class:`RunFolderError`
    when it cannot be written (no space, no permission), leaving no lock behind.
    """
    _remove_orphans(lock)
    tmp = lock.with_name(f"{lock.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(holder))
        try:
            os.link(tmp, lock)
        except FileExistsError:
            return False
        except OSError:  # no hard links here (FAT, some network file systems): create, then write
            return _create_then_write(lock, holder)
        return True
    except OSError as exc:
        raise RunFolderError(f"cannot write the lock file {lock}: {exc.strerror or exc}.") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _create_then_write(lock: Path, holder: dict) -> bool:
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(holder))
    except OSError:
        lock.unlink(missing_ok=True)  # never leave an empty lock that blocks the folder
        raise
    return True


def _remove_orphans(lock: Path) -> None:
    """Delete temporary holder files that killed processes left beside ``lock``."""
    for orphan in lock.parent.glob(f"{lock.name}.*.tmp"):
        pid = orphan.name[len(lock.name) + 1 :].partition(".")[0]
        if pid.isdecimal() and not process_alive(int(pid)):
            orphan.unlink(missing_ok=True)


def read_holder(lock: Path) -> dict | None:
    """Who holds ``lock`` (None if it cannot be read as a holder)."""
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return holder if isinstance(holder, dict) else None


def valid_pid(pid: object) -> bool:
    """Whether ``pid`` is one a process can have: a positive int within the range operating systems use."""
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31


def broken(lock: Path, holder: dict | None) -> bool:
    """A lock no running genreg holds whatever it names: a pid no process can have, or contents that are not
    a holder, older than :data:`GRACE` seconds."""
    if holder is not None:
        return not valid_pid(holder.get("pid"))
    try:
        return time.time() - lock.stat().st_mtime > GRACE
    except OSError:  # gone meanwhile: try again
        return True


def stale(holder: dict) -> bool:
    """A lock of a process on this machine that no longer exists."""
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and valid_pid(pid) and not process_alive(pid)


def in_use(folder: Path, lock: Path, holder: dict | None) -> str:
    """The error for a folder another process is writing."""
    who = "another process"
    if holder is not None:
        who = f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}: {holder.get('command')}"
    return (
        f"{folder} is being written by another genreg process ({who}); wait for it to end, or choose another "
        f"folder with --out. If that process is gone for good (another machine, say), delete {lock}."
    )
