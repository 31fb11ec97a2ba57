"""Tests genreg/files/tensors.py: a damaged model file says how it is damaged (empty, not safetensors,
truncated, a checksum that no longer matches), also on the command line (exit code 2, no traceback); a file
written before checksums existed still loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import genreg
from genreg.cli import cli
from genreg.errors import ModelFileError
from genreg.files.tensors import CHECKSUM, check_weights
from tests.helpers import contents, resave, small_cvae


def damaged(good: Path, target: Path, case: str) -> Path:
    data = good.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    if case == "empty":
        target.write_bytes(b"")
    elif case == "random bytes":
        target.write_bytes(torch.randint(0, 256, (2000,), generator=torch.Generator().manual_seed(1)).byte().numpy())
    elif case == "truncated in the header":
        target.write_bytes(data[: header_end // 2])
    elif case == "truncated in the weights":
        target.write_bytes(data[:-7])
    elif case == "a flipped bit in the weights":
        target.write_bytes(data[:-3] + bytes([data[-3] ^ 0x10]) + data[-2:])
    elif case == "an edited spec":  # still valid JSON and a valid spec, but not what was saved
        target.write_bytes(data.replace(b'\\"hidden\\": [8]', b'\\"hidden\\": [9]', 1))
        assert target.read_bytes() != data
    return target


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("empty", "is not a readable safetensors file: it is empty."),
        ("random bytes", "it does not start with a safetensors header"),
        ("truncated in the header", "bytes, but its header alone needs"),
        ("truncated in the weights", "bytes its header describes"),
        ("a flipped bit in the weights", "is corrupted: its contents no longer match the checksum"),
        ("an edited spec", "is corrupted: its contents no longer match the checksum"),
    ],
)
def test_a_damaged_file_says_how_it_is_damaged(good_model_file, tmp_path, case, says):
    path = damaged(good_model_file, tmp_path / "model.safetensors", case)
    with pytest.raises(ModelFileError) as caught:
        genreg.load_model(path)
    assert str(path) in str(caught.value) and says in str(caught.value)
    assert "\n" not in str(caught.value)
    if case.startswith("truncated in the weights"):
        assert (
            f"it has {len(good_model_file.read_bytes()) - 7} of the {len(good_model_file.read_bytes())} bytes"
            in str(caught.value)
        )


def test_a_file_saved_without_a_checksum_still_loads(good_model_file, tmp_path):
    """Files written before checksums existed keep loading (the format did not change)."""
    old = resave(good_model_file, tmp_path / "old.safetensors", **{CHECKSUM: None})
    assert CHECKSUM not in contents(old)[1] and CHECKSUM in contents(good_model_file)[1]
    assert torch.equal(
        genreg.load_model(old).decode(torch.zeros(1, 2), torch.tensor([1])),
        small_cvae().decode(torch.zeros(1, 2), torch.tensor([1])),
    )


@pytest.mark.parametrize("case", ["truncated in the weights", "a flipped bit in the weights", "random bytes"])
def test_the_cli_says_which_damage_and_exits_2(good_model_file, tmp_path, case):
    path = damaged(good_model_file, tmp_path / "model.safetensors", case)
    result = CliRunner().invoke(cli, ["sample", str(path), "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and result.stdout == ""
    assert result.stderr.startswith(f"Error: {path} is ")
    assert ("truncated" if "truncated" in case else "corrupted" if "flipped" in case else "header") in result.stderr
    assert not (tmp_path / "out.png").exists()


# --------------------------------------------------------------- values a checksum cannot judge (issue 15, case 20)


@pytest.mark.parametrize(
    ("tensors", "dtypes", "says"),
    [
        ({"w": torch.tensor([1.0, float("inf")])}, {}, "tensor 'w' holds NaN or infinite values"),
        ({"w": torch.tensor([float("-inf")], dtype=torch.bfloat16)}, {}, "tensor 'w' holds NaN or infinite"),
        ({"w": torch.zeros(2, dtype=torch.float64)}, {"w": torch.float32}, "tensor 'w' is float64, but the model "
         "holds float32 there"),
        ({"n": torch.zeros(2, dtype=torch.int32)}, {"n": torch.int64}, "tensor 'n' is int32, but the model holds"),
    ],
)  # fmt: skip
def test_check_weights_refuses_non_finite_values_and_other_dtypes(tensors, dtypes, says):
    with pytest.raises(ModelFileError) as caught:
        check_weights(Path("m.safetensors"), tensors, dtypes)
    assert str(caught.value).startswith(f"m.safetensors: {says}")


def test_check_weights_passes_finite_weights_of_the_expected_dtypes():
    tensors = {"w": torch.ones(3), "flag": torch.tensor(True), "n": torch.tensor(2**62), "extra": torch.zeros(1)}
    check_weights(Path("m.safetensors"), tensors, {"w": torch.float32, "flag": torch.bool, "n": torch.int64})
