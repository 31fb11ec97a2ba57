"""Tests genreg/spec/parts.py: the checked names a spec holds; a run's ``name`` names one folder under
``runs/``, never a path."""

from __future__ import annotations

import pytest

import genreg
from genreg.errors import SpecError


@pytest.mark.parametrize("name", ["../../x", "/abs/dir", "..", ".", "", "a/b", "a\\b", "x" * 201])
def test_a_run_name_is_one_folder_under_runs_and_never_a_path(name: str) -> None:
    """Case 10 of issue 15: `name` decides the run folder, and "../../x" or "/abs" wrote outside runs/."""
    spec = {"name": name, "model": {"type": "vae"}, "data": {"type": "mnist-sample"}}
    with pytest.raises(SpecError, match=r"  name: Value error, must be"):
        genreg.validate_spec(spec)
    assert genreg.validate_spec({**spec, "name": "vae.v2 (small)"}).name == "vae.v2 (small)"
