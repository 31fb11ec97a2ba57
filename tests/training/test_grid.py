"""Tests genreg/training/grid.py: a sweep's --grid values split as JSON allows, and folder names short and safe."""

from __future__ import annotations

from genreg.training import grid


def test_folder_names_are_short_safe_and_unique() -> None:
    assert grid.split_values('1e-3,[64,32],"a,b",{"type": "x"}') == ["1e-3", "[64,32]", '"a,b"', '{"type": "x"}']
    assert grid.labels(["train.lr", "model.latent_dim"]) == ["lr", "latent_dim"]
    assert grid.labels(["model.encoder.hidden", "model.decoder.hidden", "model.losses.1.weight"]) == [
        "encoder.hidden",
        "decoder.hidden",
        "weight",
    ]
    assert grid.labels(["model.encoder.hidden.0"]) == ["hidden.0"]
    assert grid.folder_name([("hidden", "[64,32]"), ("lr", "1e-3")]) == "hidden=[64,32],lr=1e-3"
    unsafe = [grid.folder_name([("path", value)]) for value in ("a/b", "a b", "a_b")]
    assert len(set(unsafe)) == 3 and not any("/" in n or " " in n for n in unsafe)
    assert len(grid.folder_name([("x", "9" * 400)]).encode()) <= 200
