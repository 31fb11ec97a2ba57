"""Tests examples/cvae.json, the README's first command: its samples read as the asked class (issue 16, case 18)."""

from __future__ import annotations

from pathlib import Path

import pytest

import genreg
from genreg.evaluation.classifier import conditional_accuracy
from tests.helpers import EXAMPLES


@pytest.mark.slow
def test_the_first_commands_samples_read_as_the_asked_class_at_least_95_percent(trained, tmp_path: Path) -> None:
    """Trained as the README's first command trains it (50 epochs), its samples are read as the class asked for
    at least 95% of the time by the reference classifier of `genreg eval` (measured 0.969 trained in bf16, 0.965
    in fp32; the 8-D latent it had before: 0.844-0.864)."""
    result = genreg.run(genreg.load_spec(EXAMPLES / "cvae.json"), tmp_path / "cvae", progress=False)
    assert conditional_accuracy(result.model, trained.model, n_per_class=100)["overall"] >= 0.95
