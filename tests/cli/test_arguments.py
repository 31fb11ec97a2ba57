"""Tests genreg/cli/arguments.py: condition values from the command line (``--label``, ``--condition``,
``--to``), checked against the columns the model reads; a bad one exits with code 2, naming the column."""

from __future__ import annotations

import pytest

from genreg.cli.arguments import check_label, transfer_targets
from genreg.errors import ConditionError, UsageError
from tests.helpers import invoke


def test_without_the_label_label_options_are_refused(ink_only) -> None:
    with pytest.raises(UsageError, match=r"--label 1: this model is not conditioned on the label \(it reads ink\)"):
        check_label(ink_only, 1)
    with pytest.raises(ConditionError, match="--to all: this model is not conditioned on the label; give COLUMN="):
        transfer_targets(ink_only, "all")


# ---------------------------------------------------------------- bad condition values


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["sample", "--condition", "dose=1"], "--condition dose=1: this model has no condition column 'dose'; "
                                              "it reads label (classes 0..9), ink (a number;"),
        (["sample", "--condition", "label=10"], "--condition label=10: column 'label' takes a class in 0..9"),
        (["sample", "--condition", "ink=nan"], "--condition ink=nan: column 'ink' takes a finite number"),
        (["sample", "--condition", "ink=thick"], "column 'ink' takes a finite number, got 'thick'"),
        (["sample", "--condition", "ink"], "--condition ink: write COLUMN=VALUE"),
        (["sample", "--label", "2", "--condition", "label=4"], "column 'label' is already given by --label 2"),
        (["sample", "--label", "12"], "--label 12: must be a class in 0..9"),
        (["transfer", "--to", "dose=1"], "--to dose=1: this model has no condition column 'dose'"),
        (["transfer", "--to", "ink=0.1,nan"], "--to ink=0.1,nan: column 'ink' takes a finite number, got 'nan'"),
        (["transfer", "--to", "ink="], "--to ink=: give at least one value"),
        (["transfer", "--to", "label=3,12"], "--to label=3,12: column 'label' takes a class in 0..9, got '12'"),
        (["transfer", "--to", "12"], "--to 12: must be 'all' or a class in 0..9, or COLUMN=v1,v2,..."),
        (["latent", "--color-by", "dose"], "cannot colour by 'dose': the split has no such column; "
                                           "its columns: label, ink"),
    ],
)  # fmt: skip
def test_bad_condition_input_exits_2_naming_the_column(ink_run, tmp_path, args: list[str], says: str) -> None:
    command, *options = args
    out = tmp_path / "x.png"
    result = invoke(command, ink_run, *options, "-o", out)
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not out.exists()
