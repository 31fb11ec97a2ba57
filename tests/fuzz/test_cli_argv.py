"""Fuzzes genreg/cli: random argument vectors over every command, with values drawn from interesting sets (huge,
negative, NaN, odd paths, a valid tiny model file and run folder), run in-process in a temporary folder.

Each ends with exit code 0, or 2 and one message without a traceback; any other exception is a bug, and so is
an example that takes longer than ``LIMIT_S`` (a size that should have been refused).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import event
from hypothesis import strategies as st

from genreg.cli import cli
from tests.helpers import FUZZ_EXAMPLES, TINY_PARTS, fuzz, posix_only, single_thread, write_npz

LIMIT_S = 20
COMMANDS = sorted(cli.commands)
PATHS = ["run", "run/model.safetensors", "spec.json", "digits.npz", "missing.json", "missing/x.png", ".", "/",
         "out.png", "out.safetensors", "new-run", "locked/x.png", "odd name ü.png", "bad.json", "", "-"]  # fmt: skip
VALUES = ["-1", "0", "1", "3", "2147483648", "1e40", "nan", "inf", "-inf", "x", "label=1", "label=nan",
          "label=99", "ink=1e400", "all", "0,1", "train.lr=nan", "model.latent_dim=-1", "seed=[1,2]",
          "model.latent_dim=2,3", "train.epochs=1", "data.path=missing.npz", "label", "test", "train"]  # fmt: skip


VALID = ["run", "run", "run/model.safetensors", "spec.json", "spec.json"]
NUMBERS = ["-1", "0", "1", "2", "3", "2147483648", "1e40", "nan", "x"]


def value(param: click.Parameter) -> st.SearchStrategy[str]:
    """A value for ``param``: paths for a path, numbers for a number, anything for the rest."""
    if isinstance(param.type, (click.Path, click.File)):
        return st.sampled_from(VALID + PATHS)
    if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
        return st.sampled_from(NUMBERS)
    return st.sampled_from(VALUES + NUMBERS)


@st.composite
def argv(draw: st.DrawFn) -> list[str]:
    """A command, its arguments (mostly valid paths), some of its options with values, maybe a stray token."""
    name = draw(st.sampled_from(COMMANDS))
    args = [name]
    for param in cli.commands[name].params:
        if isinstance(param, click.Argument):
            count = draw(st.integers(1, 3)) if param.nargs == -1 else param.nargs
            args += draw(st.lists(st.sampled_from(VALID) | value(param), min_size=count, max_size=count))
        elif param.name != "help" and draw(st.integers(0, 3)) == 0:
            args.append(draw(st.sampled_from(param.opts)))
            if not param.is_flag:
                args += [draw(value(param)) for _ in range(max(param.nargs, 1))]
    if draw(st.integers(0, 9)) == 0:
        args.insert(draw(st.integers(1, len(args))), draw(st.sampled_from(PATHS + VALUES)))
    return args


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary working folder (and classifier cache) with a tiny dataset, its spec, a run and odd files."""
    folder = tmp_path_factory.mktemp("cli-fuzz")
    before, cache = Path.cwd(), os.environ.get("GENREG_CACHE")
    os.chdir(folder)
    os.environ["GENREG_CACHE"] = str(folder / "cache")
    try:
        write_npz(folder / "digits.npz", labels=np.arange(40) % 3)
        spec = {"model": {"type": "cvae", **TINY_PARTS}, "data": {"type": "npz", "path": "digits.npz"},
                "train": {"epochs": 1, "batch_size": 20}}  # fmt: skip
        (folder / "spec.json").write_text(json.dumps(spec))
        (folder / "bad.json").write_text("{")
        (folder / "locked").mkdir()
        (folder / "locked").chmod(0o500)
        with single_thread():
            result = CliRunner().invoke(cli, ["run", "spec.json", "--out", "run", "--quiet"])
        assert result.exit_code == 0, result.output
        yield folder
    finally:
        os.chdir(before)
        if cache is None:
            os.environ.pop("GENREG_CACHE", None)
        else:
            os.environ["GENREG_CACHE"] = cache


def _too_long(signum: int, frame: object) -> None:
    raise TimeoutError(f"an example ran past {LIMIT_S} s")


def exits_0_or_2(args: list[str]) -> None:
    """The property: exit code 0, or 2 with an ``Error:``/usage message; never a traceback or other exception."""
    previous = signal.signal(signal.SIGALRM, _too_long)
    signal.alarm(LIMIT_S)
    try:
        with single_thread():
            result = CliRunner().invoke(cli, args, prog_name="genreg", catch_exceptions=True)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    event(f"{args[0]}: exit {result.exit_code}")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 2), (args, result.exit_code, result.output)
    assert "Traceback" not in result.output, (args, result.output)


@posix_only
@pytest.mark.parametrize("examples", FUZZ_EXAMPLES)
def test_argument_vectors_exit_0_or_2(folder: Path, examples: int) -> None:
    """``folder`` (the working folder, with a real run and model file in it) is where each vector runs."""
    fuzz(examples, argv(), exits_0_or_2)
