"""Fuzzes genreg/files/model_files.py: a valid tiny model file with its metadata JSON, its tensors or its bytes
mutated, then loaded, sampled and decoded.

Each example ends in a model that samples and decodes, or in a :class:`GenregError`; any other exception is a bug.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import event
from hypothesis import strategies as st

import genreg
from genreg.errors import GenregError
from genreg.files.tensors import CHECKSUM, save_tensors
from tests.helpers import FUZZ_EXAMPLES, NASTY, contents, fuzz, json_paths, json_values, single_thread, small_cvae

# Sizes stay small or absurd, never in between: a model of 10**9 weights would take the machine, not test it.
SIZES = [-(2**63), -1, 0, 1, 2, 3, 7, 64, 2**31, 2**63, 10**40]
nasty = st.sampled_from(NASTY) | st.sampled_from(SIZES) | json_values.filter(lambda v: not isinstance(v, int))
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool]


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], dict[str, str], Path]:
    """The tensors and metadata of a valid tiny model file, and a folder to write mutants into."""
    folder = tmp_path_factory.mktemp("model-fuzz")
    tensors, metadata = contents(genreg.save_model(small_cvae(), folder / "good.safetensors"))
    metadata.pop(CHECKSUM)
    return tensors, metadata, folder


def replaced(value: object, path: tuple, new: object) -> object:
    """``value`` with the item at ``path`` replaced by ``new`` (removed where ``new`` is the string ``'<drop>'``)."""
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    if len(path) == 1 and new == "<drop>":
        del copy[path[0]]
    else:
        copy[path[0]] = replaced(copy[path[0]], path[1:], new)
    return copy


@st.composite
def mutated_metadata(draw: st.DrawFn, metadata: dict[str, str]) -> dict[str, str]:
    """One metadata entry dropped, replaced by junk, or its JSON changed at one place."""
    key = draw(st.sampled_from(sorted(metadata)))
    how = draw(st.sampled_from(["json", "json", "json", "drop", "text"]))
    if how == "drop":
        return {k: v for k, v in metadata.items() if k != key}
    if how == "text":
        return {**metadata, key: draw(st.text(max_size=30) | st.sampled_from(["{}", "[]", "null", "[" * 5000]))}
    try:
        value = json.loads(metadata[key])
    except ValueError:
        return {**metadata, key: draw(st.text(max_size=10))}
    paths = json_paths(value)
    path = draw(st.sampled_from(paths)) if paths else ()
    new = draw(st.just("<drop>") | nasty) if path else draw(nasty)
    return {**metadata, key: json.dumps(replaced(value, path, new))}


@st.composite
def mutated_tensors(draw: st.DrawFn, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One tensor dropped, added, reshaped, recast or filled with NaN or infinity."""
    name = draw(st.sampled_from(sorted(tensors)))
    tensor = tensors[name]
    how = draw(st.sampled_from(["drop", "add", "shape", "dtype", "nan", "inf"]))
    if how == "drop":
        return {k: v for k, v in tensors.items() if k != name}
    if how == "add":
        return {**tensors, draw(st.text(min_size=1, max_size=12)): torch.zeros(2)}
    if how == "shape":
        shape = draw(st.lists(st.integers(0, 9), max_size=3))
        return {**tensors, name: torch.zeros(shape)}
    if how == "dtype":
        return {**tensors, name: tensor.to(draw(st.sampled_from(DTYPES)))}
    if not tensor.is_floating_point() or not tensor.numel():
        return tensors
    changed = tensor.clone()
    changed.view(-1)[draw(st.integers(0, tensor.numel() - 1))] = float("nan") if how == "nan" else float("inf")
    return {**tensors, name: changed}


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` cut short, or with one byte changed."""
    at = draw(st.integers(0, len(data) - 1))
    if draw(st.booleans()):
        return data[:at]
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]


def use(model: genreg.GenerativeModel) -> None:
    """Sample and decode a little, with a condition the model's data description allows."""
    info = model.data_info
    condition = {name: torch.zeros(2, dtype=torch.long if k else torch.float) for name, k in info.columns.items()}
    condition = condition if model.conditional else None
    images = model.sample(2, condition=condition) if condition else model.sample(2)
    assert images.shape[1:] == info.image_shape
    model.decode(torch.zeros(2, model.latent.dim), condition)


def loads_or_explains(original: tuple, data: st.DataObject) -> None:
    """The property: a mutated model file loads and works, or raises a GenregError."""
    tensors, metadata, folder = original
    path = folder / "model.safetensors"
    kind = data.draw(st.sampled_from(["metadata", "tensors", "bytes"]))
    if kind == "metadata":
        save_tensors(path, tensors, data.draw(mutated_metadata(metadata)))
    elif kind == "tensors":
        save_tensors(path, data.draw(mutated_tensors(tensors)), metadata)
    else:
        save_tensors(path, tensors, metadata)
        path.write_bytes(data.draw(damaged(path.read_bytes())))
    try:
        with single_thread():
            use(genreg.load_model(path))
        event(f"{kind}: worked")
    except GenregError as error:
        event(f"{kind}: {type(error).__name__}")


@pytest.mark.parametrize("examples", FUZZ_EXAMPLES)
def test_model_files_load_or_raise_a_genreg_error(original: tuple, examples: int) -> None:
    fuzz(examples, st.data(), lambda data: loads_or_explains(original, data))
