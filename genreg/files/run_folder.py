"""A run folder: the files a run writes, by name, its metrics file and whether a spec may go on in it.

Everything that reads or writes a run folder asks :class:`RunFolder` for a file's
name rather than spelling it, so the layout lives here alone::

    runs/vae/
      spec.json               the resolved spec (every default filled in)
      model.safetensors       weights + spec: rebuilds the model alone
      checkpoint.safetensors  model and optimiser after the last finished epoch
      metrics.jsonl           one JSON line per finished epoch
      samples.png, latent.png pictures of the final model
      eval.json               written by `genreg eval` (derived: it names the model file it measured)
      .genreg.lock            while a process writes the run: who (pid, host, command)

One process writes a run folder at a time: :meth:`RunFolder.locked` takes the lock
file, and a second ``genreg run`` into the folder is refused, naming the holder. An
overwrite moves the old run's files aside first and puts them back if the new run
fails before it has written anything (:meth:`RunFolder.set_aside`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from genreg.errors import OutputError, RunFolderError
from genreg.files.atomic import atomic_write, write_json
from genreg.files.lock import holding
from genreg.spec.overrides import dotted, parse_json

NAME_MAX = 255  # bytes in one file or folder name (ext4, XFS, APFS, NTFS)
#: What a resumed run may change: the run may grow longer, and callbacks only watch (they cannot change weights).
MAY_CHANGE_ON_RESUME = ("train.epochs", "train.callbacks")


class RunFolder:
    """The run folder at ``path``, and the path of each file in it (``spec_path``, ``model_path``,
    ``checkpoint_path``, ``metrics_path``, ``samples_path``, ``latent_path``); nothing is read or written until a
    method is called."""

    SPEC = "spec.json"
    MODEL = "model.safetensors"
    CHECKPOINT = "checkpoint.safetensors"
    METRICS = "metrics.jsonl"
    SAMPLES = "samples.png"
    LATENT = "latent.png"
    OUTPUTS = (SPEC, MODEL, CHECKPOINT, METRICS, SAMPLES, LATENT)
    PICTURES = (SAMPLES, LATENT)  # drawn from the final model, after its model file
    DERIVED = "eval*.json"  # files later commands compute from the model file (a glob)
    LOCK = ".genreg.lock"
    ASIDE = ".genreg-replaced"  # an overwritten run's files, until the new run is under way

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.spec_path = self.path / self.SPEC
        self.model_path = self.path / self.MODEL
        self.checkpoint_path = self.path / self.CHECKPOINT
        self.metrics_path = self.path / self.METRICS
        self.samples_path = self.path / self.SAMPLES
        self.latent_path = self.path / self.LATENT

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @staticmethod
    def evaluation_file(model_file: Path, split_name: str = "test") -> Path:
        """Where ``genreg eval`` writes its measurements of ``model_file`` on ``split_name``.

        ``eval.json`` in a run folder (``eval-<split>.json`` for other splits); beside
        a model file of another name, ``<stem>.eval.json``.
        """
        stem = "eval" if model_file.name == RunFolder.MODEL else f"{model_file.stem}.eval"
        return model_file.parent / (f"{stem}.json" if split_name == "test" else f"{stem}-{split_name}.json")

    def artifacts(self) -> list[Path]:
        """What the folder holds worth keeping with a tracker's run: its pictures, model file and spec."""
        return sorted(self.path.glob("*.png")) + [path for path in (self.model_path, self.spec_path) if path.is_file()]

    def present(self, names: tuple[str, ...] = OUTPUTS) -> list[str]:
        """Which of the run files ``names`` the folder holds."""
        return [name for name in names if (self.path / name).exists()]

    def missing_pictures(self) -> list[str]:
        """Which of the run's pictures (:data:`PICTURES`) the folder lacks; none for a run whose spec.json says
        ``train.pictures: false`` (it is finished without them)."""
        if (self.read_spec() or {}).get("train", {}).get("pictures", True) is False:
            return []
        return [name for name in self.PICTURES if not (self.path / name).exists()]

    def unstarted(self) -> bool:
        """Whether the folder holds only a run's ``spec.json``: a run stopped before its first checkpoint, which
        starts again from epoch 1."""
        return self.present() == [self.SPEC]

    def derived(self) -> list[str]:
        """The files later commands computed from the run's model (``eval.json``, ...)."""
        return sorted(path.name for path in self.path.glob(self.DERIVED)) if self.path.is_dir() else []

    # ------------------------------------------------------------------ one writer at a time

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock file while the body runs (see :mod:`genreg.files.lock`); the folder is created if
        need be, and removed again if it is still empty at the end (a run refused before it wrote anything).

        The lock names its holder (pid, host, command, start). A lock whose holder was on
        this machine and is gone (a killed process), or a broken one, is taken over. Raises
        :class:`RunFolderError` naming the holder when another process holds it.
        """
        created = [path for path in (self.path, *self.path.parents) if not os.path.lexists(path)]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"cannot write to the run folder {self.path}: {exc.strerror or exc}.") from None
        try:
            with holding(self.path / self.LOCK, self.path):
                yield
        finally:
            for path in created:  # the deepest first; a folder something was written into stays
                try:
                    path.rmdir()
                except OSError:
                    break

    # ------------------------------------------------------------------ before a run

    def check(self, resume: bool, overwrite: bool) -> list[str]:
        """Refuse to clobber a run, to resume nothing or to use a folder that cannot be written.

        It runs before any data is loaded, so these mistakes cost nothing. Returns the
        run files already there. A folder holding only a spec (:meth:`unstarted`) is
        accepted with or without ``resume``; :meth:`check_unstarted` then compares the
        spec. Raises :class:`RunFolderError`.
        """
        self._check_writable()
        existing = self.present()
        if self.unstarted():
            return existing
        if resume and not self.checkpoint_path.exists():
            raise RunFolderError(f"cannot resume: {self.checkpoint_path} does not exist (run without --resume first).")
        if existing and not resume and not overwrite:
            raise RunFolderError(
                f"{self.path} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
                "--overwrite to replace it, or --out to choose another folder."
            )
        return existing

    def _check_writable(self) -> None:
        """The folder, or else the nearest folder above it that exists, must be a writable directory; none of
        the folders up to it may be a symbolic link to nothing, and no name in it may be longer than file systems
        allow."""
        too_long = next((part for part in self.path.parts if len(part.encode()) > NAME_MAX), None)
        if too_long is not None:
            raise RunFolderError(
                f"cannot write the run folder {self.path}: it names a folder of {len(too_long.encode()):,} bytes, and "
                f"file systems allow {NAME_MAX}; choose a shorter name with --out."
            )
        missing = list(itertools.takewhile(lambda path: not os.path.exists(path), (self.path, *self.path.parents)))
        base = self.path.parents[len(missing) - 1] if missing else self.path
        dangling = next(filter(Path.is_symlink, missing), None)  # a link to nothing: mkdir would say "File exists"
        if dangling is not None:
            problem = f"{dangling} is a symbolic link to {os.readlink(dangling)}, which does not exist"
            raise RunFolderError(
                f"cannot write the run folder {self.path}: {problem}; create that folder, remove the link, or "
                "choose another folder with --out."
            )
        if not base.is_dir():
            problem = f"{base} is a file, not a folder"
        elif not os.access(base, os.W_OK | os.X_OK):
            problem = f"{base} is not writable (no permission, or a read-only file system)"
        else:
            return
        raise RunFolderError(f"cannot write the run folder {self.path}: {problem}; choose another folder with --out.")

    def create(self, replace: list[str], needed: int) -> None:
        """Make the folder and prove it takes a file and ``needed`` bytes (counting the files ``replace``
        names as free). Raises :class:`RunFolderError`."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".genreg-write-test"
            probe.write_text("ok")
            probe.unlink()
            free = shutil.disk_usage(self.path).free + sum((self.path / name).stat().st_size for name in replace)
        except OSError as exc:
            raise RunFolderError(f"cannot write to the run folder {self.path}: {exc.strerror or exc}.") from None
        if free < needed:
            raise RunFolderError(
                f"not enough free space in {self.path}: the run's checkpoint and model files need about "
                f"{needed / 1e6:.1f} MB and {free / 1e6:.1f} MB is free; free some space or choose another folder "
                "with --out."
            )

    def set_aside(self, names: list[str]) -> Path | None:
        """Move the files ``names`` (an overwritten run's) into a hidden folder; returns it (None if none).

        :meth:`restore` puts them back (the new run failed before writing anything),
        :meth:`discard` deletes them (it is under way).
        """
        if not names:
            return None
        aside = self.path / self.ASIDE
        shutil.rmtree(aside, ignore_errors=True)  # left by a process killed between set_aside and discard
        try:
            aside.mkdir()
            for name in names:
                os.replace(self.path / name, aside / name)
        except OSError as exc:
            self.restore(aside)
            raise RunFolderError(f"cannot set the old run's files aside in {aside}: {exc.strerror or exc}.") from None
        return aside

    def restore(self, aside: Path | None) -> None:
        """Put the files :meth:`set_aside` moved back in place (over what the new run wrote)."""
        if aside is None or not aside.is_dir():
            return
        for path in aside.iterdir():
            os.replace(path, self.path / path.name)
        aside.rmdir()

    @staticmethod
    def discard(aside: Path | None) -> None:
        """Delete the files :meth:`set_aside` moved: the new run has written its own."""
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    # ------------------------------------------------------------------ the spec

    def write_spec(self, resolved: dict) -> None:
        write_json(self.spec_path, resolved)

    def read_spec(self, remedy: str = "start the run again with --overwrite") -> dict | None:
        """The resolved spec the folder's run started with (None if there is none).

        Raises :class:`RunFolderError` for a ``spec.json`` that cannot be read back (truncated, edited), saying
        to restore it or to do ``remedy`` (``genreg run``'s by default; a sweep has its own).
        """
        if not self.spec_path.exists():
            return None
        try:
            spec = parse_json(self.spec_path.read_text(encoding="utf-8"), str(self.spec_path), RunFolderError)
        except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise RunFolderError(
                f"{self.spec_path} cannot be read back ({type(exc).__name__}: {exc}); it was cut short or edited. "
                f"Restore it, or {remedy}."
            ) from None
        if not isinstance(spec, dict):
            raise RunFolderError(f"{self.spec_path} does not hold a spec (a JSON object); restore it, or {remedy}.")
        return spec

    def check_resumable(self, resolved: dict, resolve: Callable[[dict], dict] = dict) -> None:
        """A resumed run must use the spec it started with, compared as ``resolve`` reads it (the runner: with this
        genreg's defaults, which an earlier genreg's spec.json lacks); only :data:`MAY_CHANGE_ON_RESUME` may differ."""
        saved = self.read_spec()
        if saved is None:
            raise RunFolderError(
                f"cannot resume {self.path}: it has no {self.SPEC}, which says what the run is; restore it, or "
                "start the run again with --overwrite."
            )
        differences = spec_differences(resolve(saved), resolved, MAY_CHANGE_ON_RESUME)
        if differences:
            raise RunFolderError(
                f"cannot resume {self.path}: the spec differs from the one it started with at "
                f"{', '.join(differences)}; only {' and '.join(MAY_CHANGE_ON_RESUME)} may change."
            )

    def check_unstarted(self, resolved: dict, resume: bool, resolve: Callable[[dict], dict] = dict) -> None:
        """A run that never trained (:meth:`unstarted`) starts again only with its own spec, read as ``resolve``
        reads it (as in :meth:`check_resumable`; with ``resume``, :data:`MAY_CHANGE_ON_RESUME` may differ); raises
        :class:`RunFolderError` naming the differences."""
        may_change = MAY_CHANGE_ON_RESUME if resume else ()
        differences = spec_differences(resolve(self.read_spec() or {}), resolved, may_change)
        if differences:
            raise RunFolderError(
                f"{self.path} holds the {self.SPEC} of a run stopped before its first epoch, and its spec differs "
                f"at {', '.join(differences[:5])}; pass --overwrite to replace it, or choose another folder with --out."
            )

    # ------------------------------------------------------------------ metrics.jsonl

    def append_metrics(self, record: dict) -> None:
        """Add an epoch's line, before that epoch's checkpoint is written: a line past the checkpoint (the
        checkpoint's write failed, or the process was killed between the two) is dropped on resume, and the
        epoch trained again (see :meth:`truncate_metrics`), so the two never disagree. Raises :class:`OutputError`.
        """
        try:
            with open(self.metrics_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise OutputError(
                f"could not append to {self.metrics_path} ({exc.strerror or exc}); {self.checkpoint_path} still "
                f"holds epoch {record['epoch'] - 1}, so the run can be resumed with --resume once there is room "
                f"(epoch {record['epoch']} is trained again)."
            ) from None

    def read_metrics(self) -> list[dict]:
        """Every epoch's record, oldest first; a line cut short by a crash is left out."""
        if not self.metrics_path.exists():
            return []
        return [record for record in map(_record, self.metrics_path.read_text().splitlines()) if record is not None]

    def truncate_metrics(self, epochs: int) -> None:
        """Drop metric lines past the checkpoint of ``epochs`` (written after it, before a crash)."""
        if not self.metrics_path.exists():
            return
        lines = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if _epoch_of(line) <= epochs]
        if len(kept) != len(lines):
            atomic_write(self.metrics_path, lambda tmp: tmp.write_text("".join(k + "\n" for k in kept)))

    def recorded_epochs(self) -> int:
        """The last epoch ``metrics.jsonl`` records (0 if none)."""
        return max((int(record["epoch"]) for record in self.read_metrics()), default=0)

    def finished(self, epochs: int) -> bool:
        """Whether the run is over and every file of it is there: :meth:`trained`, and its pictures drawn."""
        return self.trained(epochs) and not self.missing_pictures()

    def trained(self, epochs: int) -> bool:
        """Whether training is over: its model file is written and it trained ``epochs`` epochs, or it was stopped
        (by a callback) with the model file written after its last checkpoint."""
        if not self.model_path.exists():
            return False
        if self.recorded_epochs() >= epochs:
            return True
        checkpoint = self.checkpoint_path
        return checkpoint.exists() and self.model_path.stat().st_mtime_ns >= checkpoint.stat().st_mtime_ns


def spec_differences(saved: dict, resolved: dict, may_change: tuple[str, ...] = ()) -> list[str]:
    """The dotted keys at which two resolved specs differ, but those under ``may_change`` (lists compare whole)."""
    old, new = dotted(saved, lists=False), dotted(resolved, lists=False)
    return [
        key
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and not any(key == k or key.startswith(k + ".") for k in may_change)
    ]


def _record(line: str) -> dict[str, Any] | None:
    """A metrics line's record; None for a blank line, one cut short by a crash, or one that is not an epoch's
    record (an object with an integer ``epoch`` of 1 or more and ``train`` and ``test`` objects: an edited line),
    which is treated like a line cut short: left out, and dropped on resume."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not all(isinstance(record.get(key), dict) for key in ("train", "test")):
        return None
    epoch = record.get("epoch")
    return record if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 1 else None


def _epoch_of(line: str) -> float:
    """The epoch a metrics line records; a line cut short by a crash (or edited) counts as past every checkpoint."""
    record = _record(line)
    return math.inf if record is None else record["epoch"]
