"""Fixtures the picture tests share: vectors of counts with named classes and features, in other units."""

from __future__ import annotations

import pytest
import torch

import genreg
from tests.viz.vectors import SPECS, named_data


@pytest.fixture(scope="module")
def named() -> genreg.DataSplits:
    return named_data()


@pytest.fixture(scope="module")
def named_cvae(named: genreg.DataSplits) -> genreg.GenerativeModel:
    """An untrained cVAE of counts fitted with log1p, standardize: its units are not the data's."""
    torch.manual_seed(0)
    return genreg.build_model(SPECS["cvae"], named.info).eval()
