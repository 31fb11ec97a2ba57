"""Tests genreg/evaluation/report.py: the plain and Markdown tables of evaluation results."""

from __future__ import annotations

import re

import pytest

from genreg.evaluation.report import format_table, markdown_table

pytestmark = pytest.mark.usefixtures("module_on_one_thread")  # tiny networks: one thread is much faster


def rows_of(table: str) -> dict[str, list[str]]:
    """Plain table -> {metric label: [cell per run]}, splitting on the two-space column gaps."""
    lines = table.splitlines()
    header = lines[0]
    starts = [0] + [i + 2 for i in range(len(header) - 2) if header[i : i + 2] == "  " and header[i + 2] != " "]
    out = {}
    for line in lines[:1] + lines[2:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        out[cells[0]] = cells[1:]
    return out


def test_format_table_has_one_column_per_run(evaluations: dict[str, dict]) -> None:
    table = format_table(evaluations)
    rows = rows_of(table)
    assert rows["metric"] == ["ae", "vae"]
    vae = evaluations["vae"]
    assert rows["bce (nats/image)"] == [f"{evaluations['ae']['losses']['bce']:.2f}", f"{vae['losses']['bce']:.2f}"]
    assert rows["kld (nats/image)"] == ["—", f"{vae['losses']['kld']:.2f}"]
    assert rows["-ELBO (nats/image)"] == ["—", f"{vae['neg_elbo']:.2f}"]
    assert rows["NLL, IWAE (nats/image)"] == ["—", f"{vae['nll_iwae']:.2f} (K=20)"]
    assert rows["active units"] == [f"{r['active_units']} / 4" for r in evaluations.values()]
    assert rows["k-NN accuracy (k=5, 5-fold)"][1] == f"{vae['knn_accuracy']:.3f} (chance {vae['chance']:.3f})"
    assert all(len(cells) == 2 for cells in rows.values())


def test_format_table_has_one_row_per_metric(evaluations: dict[str, dict]) -> None:
    rows = rows_of(format_table(evaluations))
    nll = [label for label in rows if label.startswith("NLL")]
    assert len(nll) == 1
    assert rows[nll[0]] == ["—", f"{evaluations['vae']['nll_iwae']:.2f} (K=20)"]


def test_markdown_table_matches_the_plain_table(evaluations: dict[str, dict]) -> None:
    lines = markdown_table(evaluations).splitlines()
    assert lines[0] == "| metric | ae | vae |"
    assert lines[1] == "| --- | --- | --- |"
    cells = {line.split(" | ")[0].removeprefix("| "): line.removesuffix(" |").split(" | ")[1:] for line in lines[2:]}
    assert all(len(row) == 2 for row in cells.values())
    plain = rows_of(format_table(evaluations))
    del plain["metric"]
    assert cells == plain


def test_markdown_table_cells_survive_github_rendering(evaluations: dict[str, dict]) -> None:
    # GFM tables: a row's cells are split on every '|' not escaped as '\|' (spaces around it do not matter).
    for line in markdown_table(evaluations).splitlines():
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        assert len(cells) == 3, line
