"""The errors genreg raises for things a user can fix.

Every one of them is a :class:`GenregError`; the CLI prints its message as one
paragraph and exits with code 2, so a user never sees a traceback for bad input.
"""

from __future__ import annotations

from typing import Any


class GenregError(Exception):
    """Base class: a problem with input the user controls (spec, files, plugins)."""


class SpecError(GenregError):
    """A spec (or a ``--set`` override) does not validate."""


class UnknownComponentError(GenregError):
    """A registered name was asked for that does not exist."""


class PluginError(GenregError):
    """A plugin registered something inconsistent (duplicates, bad config class)."""


class ModelFileError(GenregError):
    """A ``.safetensors`` file cannot be turned back into a genreg model."""


class DataError(GenregError):
    """A dataset file is missing, malformed or inconsistent."""


class RunFolderError(GenregError):
    """A run folder cannot be written to, or resumed from."""


class AssemblyError(GenregError):
    """Components that validate on their own do not fit together."""


class ConditionError(GenregError, ValueError):
    """A condition that does not fit the model: a missing column, a class it does not know, a NaN."""


class InputError(GenregError, ValueError):
    """Images or latent codes a model's methods cannot take: another shape, dtype or range (see ``encode``)."""


class OutputError(GenregError, OSError):
    """A file could not be written (disk full, no permission); the previous version of it is kept.

    It is also an :class:`OSError`, so code that already treats a failed write as
    an OS problem (e.g. the classifier cache, which only warns) keeps doing so.
    """


class TrainingInterruptedError(GenregError):
    """SIGINT or SIGTERM stopped training; the run folder holds a resumable checkpoint.

    ``exit_code`` follows the shell's convention (128 + the signal's number).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class SpecWarning(UserWarning):
    """A spec that validates but probably does not do what was meant (e.g. a warm-up longer than the run)."""


class DataWarning(UserWarning):
    """Data that loads but probably not as meant (e.g. classes in 0..K-1 with no training images)."""


class PictureWarning(UserWarning):
    """A picture drawn otherwise than asked (e.g. a continuous conditioner without the range pictures span)."""


class PictureError(GenregError):
    """A run's picture could not be drawn; its model file and every other file are written."""


class UsageError(GenregError):
    """A command-line option or a picture asked for that cannot be given as it is (a grid of a 3-D latent, say)."""


class NonFiniteLossError(GenregError):
    """A loss became NaN or infinite during training; the run folder keeps the last finished epoch."""


class ExtensionError(GenregError):
    """A model, column or class that cannot be extended or fine-tuned as asked (see :mod:`genreg.model.extend`)."""


class SweepError(GenregError):
    """A grid, a combination or a sweep folder that cannot be swept as asked.

    ``exit_code`` is 2 for a mistake in the command, or the code of the signal that stopped a run.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none), to fit in a one-paragraph error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def listing(values: Any, limit: int = 20, quote: bool = True) -> str:
    """``'a', 'b', 3000 (and 7 more)``, at most ``limit`` of ``values`` for one message; ``none`` for no values.
    Text is quoted (``quote=False`` lists phrases as they are), numbers are written as they are."""
    texts = [repr(str(value)) if quote and isinstance(value, str) else str(value) for value in values]
    shown = ", ".join(texts[:limit]) or "none"
    return shown + (f" (and {len(texts) - limit} more)" if len(texts) > limit else "")


def special_file(path: object) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder ("a named pipe (FIFO)", "a
    character device", ...), else None: reading such a thing as a file may never end (a FIFO, /dev/zero)."""
    kind = file_kind(path)
    return None if kind in (None, "a regular file", "a directory") else kind


def file_kind(path: object) -> str | None:
    """What kind of thing ``path`` names, in words ("a regular file", "a directory", "a named pipe (FIFO)",
    "a character device", "a block device", "a socket"), following links; None when nothing is there."""
    import os
    import stat

    try:
        mode = os.stat(os.fspath(path)).st_mode  # type: ignore[arg-type]
    except (OSError, ValueError):  # missing, a dangling link, a name the OS refuses
        return None
    kinds = [
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")
