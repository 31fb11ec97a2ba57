"""Tests genreg/cli/arguments.py: condition values from the command line (``--label``, ``--condition``,
``--to``), checked against the columns the model reads; a bad one exits with code 2, naming the column."""

from __future__ import annotations

import pytest

import genreg
from genreg.cli.arguments import (
    check_label,
    condition_value,
    describe_columns,
    parse_condition,
    split_values,
    transfer_targets,
)
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


# ---------------------------------------------------------------- classes as the data names them


def named_cvae(vocabulary: list) -> genreg.GenerativeModel:
    from tests.viz.vectors import SPECS

    info = genreg.DataInfo((12,), len(vocabulary), vocabularies={"label": vocabulary})
    return genreg.build_model(SPECS["cvae"], info).eval()


def test_a_class_is_given_as_the_data_names_it() -> None:
    ids = named_cvae([3000, 7000])
    assert check_label(ids, "7000") == 1 and parse_condition(ids, ["label=3000"]) == {"label": 0}
    with pytest.raises(UsageError, match=r"--label 1: column 'label' has no class '1': .* values .*: 3000, 7000\."):
        check_label(ids, "1")
    cells = named_cvae(["B", "T cell, CD4+", "T cell, CD8+"])
    targets, headers = transfer_targets(cells, "label=T cell, CD8+,B")
    assert targets["label"].tolist() == [2, 0] and headers == ["T cell, CD8+", "B"]
    assert transfer_targets(cells, "T cell, CD4+")[0]["label"].tolist() == [1]
    assert split_values("a,b,c") == ["a", "b", "c"] and split_values("x,y", ["x,y", "x"]) == ["x,y"]
    assert (
        describe_columns(cells.conditioner, cells.data_info) == "label (3 classes: 'B', 'T cell, CD4+', 'T cell, CD8+')"
    )
    many = named_cvae([f"type {k:02d}" for k in range(40)])
    with pytest.raises(ConditionError, match=r"the 40 values .*'type 29' \.\.\.\.$") as caught:
        condition_value(many.conditioner, "label", "type 99", "--condition label=type 99", many.data_info)
    assert "'type 30'" not in str(caught.value) and str(caught.value).startswith("--condition label=type 99: ")


def test_classes_without_a_vocabulary_are_their_indices() -> None:
    model = named_cvae(["a", "b", "c"])
    model.data_info.vocabularies = {}
    assert check_label(model, "2") == 2 and check_label(model, 1) == 1 and check_label(model, None) is None
    for label in ("3", "x", "-1"):
        with pytest.raises(UsageError, match=rf"^--label {label}: must be a class in 0\.\.2\.$"):
            check_label(model, label)
    assert transfer_targets(model, "2")[1] == ["class 2"]
