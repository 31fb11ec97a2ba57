"""Fixtures shared by the unit tests: spec files written to a temporary folder."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import genreg
from genreg.evaluation import classifier as clf

MNIST_SPEC = {"type": "mnist-sample", "binarize": "none"}


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


@dataclass
class Trained:
    cache: Path
    data: genreg.DataSplits
    model: clf.ReferenceCNN
    accuracy: float


@pytest.fixture(scope="session")
def mnist() -> genreg.DataSplits:
    return genreg.load_data(MNIST_SPEC)


@pytest.fixture(scope="session")
def trained(mnist: genreg.DataSplits, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """The full mnist-sample classifier, trained once per session into its own cache folder."""
    cache = tmp_path_factory.mktemp("genreg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENREG_CACHE", str(cache))
        model, accuracy = clf.reference_classifier(MNIST_SPEC, mnist)
    yield Trained(cache, mnist, model, accuracy)
