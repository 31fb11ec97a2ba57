"""Presenting evaluations: the metrics table (one column per run) and the comparison picture."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from genreg.data.loading import recorded_data
from genreg.data.splits import Split
from genreg.evaluation.evaluate import evaluate_file, recorded_evaluation
from genreg.files.model_files import load_model, model_file
from genreg.model.generative import GenerativeModel
from genreg.viz.figures import save_figure
from genreg.viz.latent import comparison_figure


def _number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def loss_rows(result: dict) -> list[tuple[str, str]]:
    """(label, value) for each loss term of one evaluation."""
    losses = result.get("losses", {})
    return [(f"{name} (nats/image)", _number(value)) for name, value in losses.items() if name != "loss"]


def metric_rows(result: dict) -> list[tuple[str, str]]:
    """(label, value) for the likelihood and latent-space metrics; a metric a model lacks shows —."""
    k = result.get("iw_samples")
    rows = [
        ("-ELBO (nats/image)", _number(result.get("neg_elbo"))),
        ("NLL, IWAE (nats/image)", "—" if k is None else f"{result['nll_iwae']:.2f} (K={k})"),
        ("active units", f"{result['active_units']} / {result['latent_dim']}"),
        ("KL(fitted Gaussian ‖ N(0,I))", _number(result["gaussian_kl"], 3)),
        ("MMD² to N(0,I), RBF", _number(result["mmd"], 4)),
        ("k-NN accuracy (k=5, 5-fold)", f"{result['knn_accuracy']:.3f} (chance {result['chance']:.3f})"),
    ]
    if "conditional_accuracy" in result:
        trust = f"classifier test acc {result['classifier_test_accuracy']:.3f}"
        rows.append(("conditional accuracy", f"{result['conditional_accuracy']:.3f} ({trust})"))
    return rows


def table_cells(results: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Header and body: loss terms first (as they appear across runs), then the other metrics."""
    losses = {name: dict(loss_rows(result)) for name, result in results.items()}
    metrics = {name: dict(metric_rows(result)) for name, result in results.items()}
    body = []
    for columns in (losses, metrics):
        labels = list(dict.fromkeys(label for rows in columns.values() for label in rows))
        body += [[label, *(rows.get(label, "—") for rows in columns.values())] for label in labels]
    return ["metric", *results], body


def format_table(results: dict[str, dict]) -> str:
    """Metrics side by side as aligned text, one column per named result."""
    header, body = table_cells(results)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *body]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def markdown_table(results: dict[str, dict]) -> str:
    """The same table as Markdown, for README files."""
    header, body = table_cells(results)
    rows = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)


def compare_runs(
    runs: Sequence[str | Path], output: str | Path, markdown: str | Path | None = None, iw_samples: int = 1000
) -> tuple[str, list[Path]]:
    """Evaluate each run, or reuse its ``eval.json`` if that measured this very model file; return the table
    and the files written."""
    results: dict[str, dict] = {}
    pictured: dict[str, tuple[GenerativeModel, Split]] = {}
    for run in runs:
        file = model_file(run)
        name = Path(run).name if Path(run).name not in results else str(run)
        results[name] = recorded_evaluation(file) or evaluate_file(file, iw_samples=iw_samples)[0]
        pictured[name] = (load_model(file), recorded_data(file)[1].test)
    written = [save_figure(comparison_figure(pictured), output)]
    if markdown:
        Path(markdown).write_text(markdown_table(results) + "\n")
        written.append(Path(markdown))
    return format_table(results), written
