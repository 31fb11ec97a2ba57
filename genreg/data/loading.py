"""Loading the dataset a spec names, or the one a model file records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from genreg.data.splits import DataSplits
from genreg.errors import GenregError, ModelFileError, special_file
from genreg.files.model_files import missing_plugins, model_file, read_metadata, read_spec
from genreg.spec.validate import build_part, validate_part

# Fields of a dataset config that name a file or folder: checked to exist before a recorded dataset loads.
_PATH_NAMES = ("root", "path")
_PATH_SUFFIXES = ("_root", "_path", "_dir", "_file")


def load_data(data_spec: Any) -> DataSplits:
    """Load the dataset a ``data`` config names (validated, or a dict such as ``{"type": "npz", ...}``).

    Raises :class:`~genreg.errors.SpecError` for an invalid dict and
    :class:`~genreg.errors.DataError` for data that cannot be read or fails genreg's checks.
    """
    return build_part("dataset", data_spec)


def recorded_data(model_path: str | Path) -> tuple[dict, DataSplits]:
    """The dataset spec a model file (or run folder) records, and that dataset loaded.

    A model file is input like any other, so what it records is not trusted: a download it
    asks for is switched off (a command that reloads a model's data never touches the
    network nor creates folders), and every file or folder it names must exist before any
    loader runs. Raises :class:`~genreg.errors.ModelFileError` for a model file that records
    no dataset (one saved from Python rather than by a run), a recorded dataset spec that does
    not validate (an unknown dataset: naming the plugin, and its package and version, the file
    was saved with that is not loaded here), or a recorded path that does not exist or is neither a file
    nor a folder (a FIFO, a device: naming it and its kind).
    """
    spec = read_spec(model_path)
    if "data" not in spec:
        raise ModelFileError(
            f"{model_path} records no dataset (it was not saved by a run); it has no data to use here."
        )
    return spec["data"], load_data(_trusted_config(model_path, spec["data"]))


def _trusted_config(model_path: str | Path, data_spec: Any) -> BaseModel:
    """The recorded dataset config, validated, with ``download`` off and every path it names present."""
    try:
        config = validate_part("dataset", data_spec)
    except GenregError as exc:  # an unknown dataset: name the plugin (and package) the file was saved with
        missing = missing_plugins(read_metadata(model_file(model_path)))
        raise ModelFileError(
            f"the model file {model_path} records a dataset that does not validate here: {exc}{missing}"
        ) from None
    if getattr(config, "download", False):
        config = config.model_copy(update={"download": False})
    for name, value in config:
        if not _names_a_path(name, value):
            continue
        where = Path(value).expanduser().absolute()
        if not where.exists():
            raise ModelFileError(
                f"the model file {model_path} records its data at {value!r} (data.{name}; here {where}), which "
                "does not exist; genreg never creates it nor downloads into it for a recorded dataset. Put the "
                "data there (a link will do), or run the command from the folder the run was started in when the "
                "path is relative."
            )
        kind = special_file(where)  # a FIFO or a device would be read for ever by the loader
        if kind:
            raise ModelFileError(
                f"the model file {model_path} records its data at {value!r} (data.{name}; here {where}), which is "
                f"{kind}, not a data file or folder; put the data there, or run the command from another folder."
            )
    return config


def _names_a_path(name: str, value: Any) -> bool:
    """Whether a dataset config's field ``name`` (with its ``value``) names a file or folder."""
    named = name in _PATH_NAMES or name.endswith(_PATH_SUFFIXES)
    return isinstance(value, Path) or (named and isinstance(value, str))
