"""Tests genreg/data/loading.py: the data a model file records (``recorded_data``), through ``genreg eval``."""

from __future__ import annotations

from pathlib import Path

import genreg
from tests.helpers import invoke


def test_eval_of_a_file_without_data_is_a_clear_error(tmp_path: Path) -> None:
    model = genreg.build_model({"type": "vae", "latent_dim": 2}, genreg.DataInfo((1, 28, 28), 10))
    path = genreg.save_model(model, tmp_path / "bare.safetensors")
    result = invoke("eval", str(path))
    assert result.exit_code == 2 and "records no dataset" in result.output
