"""Tests genreg/files/lock.py: a second writer of a run folder is refused, naming the first; a lock whose
process is gone, or that no genreg holds (a pid no process can have, an empty or garbage file), is taken over;
a lock file is never left empty, and one that is a folder is refused naming it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genreg.errors import RunFolderError
from genreg.files import lock as lock_module
from genreg.files.run_folder import RunFolder


def test_a_second_writer_is_refused_naming_the_first_and_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    with folder.locked():
        assert (folder.path / RunFolder.LOCK).exists()
        held = rf"is being written by another genreg process \(pid {os.getpid()} on"
        with pytest.raises(RunFolderError, match=held), folder.locked():
            pass
    assert not (folder.path / RunFolder.LOCK).exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = {"pid": int(gone.stdout), "host": socket.gethostname(), "command": "genreg run (killed)", "since": "-"}
    (folder.path / RunFolder.LOCK).write_text(json.dumps(stale))
    with folder.locked():  # its process is gone: a killed run's lock does not block the folder forever
        assert json.loads((folder.path / RunFolder.LOCK).read_text())["pid"] == os.getpid()


def aged(path: Path, seconds: float = lock_module.GRACE + 60) -> Path:
    os.utime(path, (time.time() - seconds, time.time() - seconds))
    return path


@pytest.mark.parametrize(
    "contents",
    [
        '{"pid": 99999999999999999999, "host": "HOST"}',
        '{"pid": -1, "host": "HOST"}',
        '{"pid": 0, "host": "another machine"}',
        '{"pid": "12", "host": "HOST"}',
        "",
        "\x00garbage",
        "[" * 100_000,
    ],
    ids=["huge pid", "pid -1", "pid 0", "pid as text", "empty", "garbage", "nested"],
)
def test_a_broken_lock_is_taken_over(tmp_path: Path, contents: str) -> None:
    """A lock with a huge pid ended in an OverflowError; an empty one (a process killed between creating and
    writing it) blocked the folder forever, as "another process"."""
    folder = RunFolder(tmp_path)
    lock = tmp_path / RunFolder.LOCK
    lock.write_text(contents.replace("HOST", socket.gethostname()))
    aged(lock)
    with folder.locked():
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_an_unreadable_lock_being_written_now_is_not_taken_over(tmp_path: Path) -> None:
    (tmp_path / RunFolder.LOCK).write_text("")  # an earlier genreg between creating its lock and writing it
    refused = r"being written by another genreg process \(another process\)"
    with pytest.raises(RunFolderError, match=refused), RunFolder(tmp_path).locked():
        pass
    assert (tmp_path / RunFolder.LOCK).exists()


def test_a_lock_that_is_a_folder_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / RunFolder.LOCK).mkdir()
    with pytest.raises(RunFolderError) as caught, RunFolder(tmp_path).locked():
        pass
    assert str(caught.value) == (
        f"{tmp_path / RunFolder.LOCK} is not a lock file genreg wrote (it is a folder or another kind of file), so "
        f"{tmp_path} cannot be locked; delete it, or choose another folder with --out."
    )


def test_the_lock_appears_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    """The holder is written to a temporary file first and linked into place: a write that fails (a full disk)
    leaves no lock, empty or not, and no temporary file."""
    real = Path.write_text

    def full(self: Path, *args, **kwargs):
        real(self, "{")  # half written, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(RunFolderError) as caught, RunFolder(tmp_path).locked():
        pass
    assert str(caught.value) == f"cannot write the lock file {tmp_path / RunFolder.LOCK}: No space left on device."
    assert os.listdir(tmp_path) == []


def test_without_links_the_lock_is_created_then_written(tmp_path: Path, monkeypatch) -> None:
    def no_links(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(lock_module.os, "link", no_links)
    with RunFolder(tmp_path).locked():
        assert json.loads((tmp_path / RunFolder.LOCK).read_text())["pid"] == os.getpid()
        assert sorted(os.listdir(tmp_path)) == [RunFolder.LOCK]
    assert os.listdir(tmp_path) == []


def test_a_killed_takers_temporary_file_is_removed(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{RunFolder.LOCK}.{int(gone.stdout)}.tmp"
    orphan.write_text("{}")
    with RunFolder(tmp_path).locked():
        assert not orphan.exists()
