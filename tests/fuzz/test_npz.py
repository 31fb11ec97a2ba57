"""Fuzzes plugins/genreg_builtin/datasets.py's npz reader and genreg/data/checks.py: random arrays (shapes,
dtypes, NaN, huge values, strings, objects), missing keys, crafted headers and truncated or flipped files.

Loading one through a spec ends in data or in a :class:`GenregError` (a DataError naming the file); any other
exception is a bug.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import event
from hypothesis import strategies as st

import genreg
from genreg.errors import GenregError
from tests.helpers import FUZZ_EXAMPLES, fuzz, npy_bytes, npy_header, zip_npz

DTYPES = ["uint8", "float32", "float64", ">f8", "float16", "int64", "uint16", "uint64", "bool", "int8",
          "complex64", "<U3", "datetime64[s]"]  # fmt: skip
VALUES = [0, 1, 3, 255, -1, 0.5, 1e30, -1e30, 2**63, 1e300, np.nan, np.inf, -np.inf]
KEYS = ["images", "labels", "dose", "other"]


def arrays(n: int, image: bool = False) -> st.SearchStrategy[np.ndarray]:
    """A small array, mostly with ``n`` rows (images: mostly (n, H, W)), of any dtype, with odd values in it."""
    rows = st.sampled_from([n, n, n, 0, 1, n + 1])
    odd = st.one_of(st.tuples(), st.tuples(rows, st.integers(0, 5), st.integers(0, 5)),
                    st.tuples(rows, st.integers(0, 3), st.integers(1, 4), st.integers(1, 4)))  # fmt: skip
    usual = st.tuples(st.just(n), st.integers(1, 4), st.integers(1, 4)) if image else st.tuples(st.just(n))
    dtypes = st.sampled_from(["uint8", "float32", "int64"]) | st.sampled_from(DTYPES)
    specials = st.lists(st.sampled_from(VALUES), max_size=2) if image else st.lists(st.sampled_from(VALUES), max_size=3)
    return st.tuples(usual | usual | odd, dtypes, st.just([]) | specials).map(lambda args: _filled(*args))


def _filled(shape: tuple[int, ...], dtype: str, specials: list[object]) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` holding 0..4 and ``specials`` where the dtype can hold them."""
    array = (np.arange(int(np.prod(shape))) % 2).reshape(shape).astype(dtype)
    for index, value in enumerate(specials):
        if array.size:
            try:
                with np.errstate(all="ignore"):
                    array.flat[(index * 7) % array.size] = value
            except (ValueError, TypeError, OverflowError):
                pass
    return array


@st.composite
def npz_members(draw: st.DrawFn) -> dict[str, bytes]:
    """The members of an npz: arrays as numpy saves them, some replaced by crafted or odd ones."""
    n = draw(st.integers(1, 12))
    keys = draw(st.sampled_from([KEYS, KEYS[:2], KEYS[:2]]) | st.lists(st.sampled_from(KEYS), unique=True))
    members = {f"{key}.npy": npy_bytes(draw(arrays(n, key == "images"))) for key in keys}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=2)):
        members[f"{key}.npy"] = draw(st.sampled_from([
            npy_bytes(np.array([{"x": 1}] * n, dtype=object)),
            npy_header((2**31, 28, 28)) + bytes(8),
            npy_header((n, -1)),
            npy_header((n,), "<i8") + bytes(8 * n - 1),
            b"not an array",
            b"",
        ]))  # fmt: skip
    return members


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` as it is, cut short, or with one byte changed."""
    how = draw(st.sampled_from(["as is"] * 6 + ["cut", "flip"]))
    if how == "as is" or not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    if how == "cut":
        return data[:at]
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("npz-fuzz")


def loads_or_explains(folder: Path, data: st.DataObject) -> None:
    """The property: writing a drawn npz (and maybe a test file) and loading it gives data or a GenregError."""
    path = zip_npz(folder / "d.npz", data.draw(npz_members()))
    path.write_bytes(data.draw(damaged(path.read_bytes())))
    spec = {
        "type": "npz",
        "path": str(path),
        "columns": data.draw(st.just([]) | st.lists(st.sampled_from(["dose", "other"]))),
    }
    if data.draw(st.booleans()):
        spec["test_path"] = str(zip_npz(folder / "t.npz", data.draw(npz_members())))
    try:
        genreg.load_data(spec)
        event("loaded")
    except GenregError as error:
        event(str(error).partition(": ")[2][:40])
        assert "\n" not in str(error) and str(path.parent) in str(error), str(error)


@pytest.mark.parametrize("examples", FUZZ_EXAMPLES)
def test_npz_files_load_or_raise_a_genreg_error(folder: Path, examples: int) -> None:
    fuzz(examples, st.data(), lambda data: loads_or_explains(folder, data))
