"""The errors genreg raises for things a user can fix.

Every one of them is a :class:`GenregError`; the CLI prints its message as one
paragraph and exits with code 2, so a user never sees a traceback for bad input.
"""

from __future__ import annotations


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
