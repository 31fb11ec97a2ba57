"""Fixtures shared by the unit tests: spec files written to a temporary folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def minimal_spec() -> dict:
    """The smallest spec that validates: every other field takes its default."""
    return {"model": {"type": "cvae"}, "data": {"type": "mnist-sample"}}


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., Path]:
    """``write_file(content, name)``: a dict/list is written as JSON, str as text, bytes as-is."""

    def write(content: object, name: str = "spec.json") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(json.dumps(content, indent=2))
        return path

    return write
