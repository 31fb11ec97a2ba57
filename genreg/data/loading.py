"""Loading the dataset a spec names, or the one a model file records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genreg.data.splits import DataSplits
from genreg.errors import ModelFileError
from genreg.files.model_files import read_spec
from genreg.spec.validate import build_part


def load_data(data_spec: Any) -> DataSplits:
    """Load the dataset a ``data`` config names (validated, or a dict such as ``{"type": "npz", ...}``).

    Raises :class:`~genreg.errors.SpecError` for an invalid dict and
    :class:`~genreg.errors.DataError` for data that cannot be read or fails genreg's checks.
    """
    return build_part("dataset", data_spec)


def recorded_data(model_path: str | Path) -> tuple[dict, DataSplits]:
    """The dataset spec a model file (or run folder) records, and that dataset loaded.

    Raises :class:`~genreg.errors.ModelFileError` for a model file that records no dataset (one saved from
    Python rather than by a run).
    """
    spec = read_spec(model_path)
    if "data" not in spec:
        raise ModelFileError(
            f"{model_path} records no dataset (it was not saved by a run); it has no data to use here."
        )
    return spec["data"], load_data(spec["data"])
