"""Presenting evaluations: the metrics table (one column per run) and the comparison picture."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from genreg.data import LABEL, Split
from genreg.model import GenerativeModel


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


def save_comparison(
    runs: dict[str, tuple[GenerativeModel, Split]], path: str | Path, n_samples: int = 10, seed: int = 0
) -> Path:
    """One column per run: its test latents (shared axes and colours) above a row of its samples."""
    from genreg.evaluation import posterior
    from genreg.pictures import project_2d, pyplot, save_figure

    plt = pyplot()
    points = {name: project_2d(posterior(model, split).mu) for name, (model, split) in runs.items()}
    everything = torch.cat([p for p, _ in points.values()])
    low, high = everything.quantile(0.005, 0).tolist(), everything.quantile(0.995, 0).tolist()
    fig, axes = plt.subplots(2, len(runs), figsize=(4.2 * len(runs), 5.6), height_ratios=[4, 1], squeeze=False)
    cmap = plt.get_cmap("tab10")
    classes: set[int] = set()
    for column, (name, (model, split)) in enumerate(runs.items()):
        (xy, (xlabel, ylabel)), ax = points[name], axes[0][column]
        labels = split.labels.cpu()
        classes |= set(labels.tolist())
        ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.6, c=[cmap(int(k) % 10) for k in labels])
        ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), xlabel=xlabel, ylabel=ylabel, title=name)
        ax.set_aspect("equal", adjustable="box")
        _sample_strip(axes[1][column], model, n_samples, seed)
    handles = [plt.Line2D([], [], marker="o", ls="", color=cmap(k % 10), label=str(k)) for k in sorted(classes)]
    fig.legend(handles=handles, title="class", loc="center right", fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.95, 1))
    return save_figure(fig, path)


def _sample_strip(ax, model: GenerativeModel, n: int, seed: int) -> None:
    """A row of at most ``n`` prior samples, titled with what the row shows."""
    from torchvision.utils import make_grid

    torch.manual_seed(seed)
    images, title = strip_samples(model, n)
    grid = make_grid(images.cpu().clamp(0, 1), nrow=images.shape[0], padding=2, pad_value=1.0)
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)


def strip_samples(model: GenerativeModel, n: int) -> tuple[torch.Tensor, str]:
    """Samples for one row, and its title.

    A model conditioned on the label shows one sample of each class (its other columns at class 0
    or their training mean), since the class is what one compares across runs; any other model
    shows its sample grid's first row: ``n`` draws, or a continuous column's ``n`` values.
    """
    from genreg.conditions import default_value
    from genreg.pictures import sample_images

    conditions = model.conditioner
    if conditions is None or conditions.num_classes is None:
        images, _, columns = sample_images(model, n)
        return images[:n], "samples" + (f" ({columns[0]} to {columns[-1]})" if columns else "")
    others = {c: default_value(p) for c, p in zip(conditions.columns, conditions.parts, strict=True) if c != LABEL}
    images = sample_images(model, 1, fixed=others).images[:n]
    return images, f"samples (classes 0-{len(images) - 1})"


def compare_runs(
    runs: Sequence[str | Path], output: str | Path, markdown: str | Path | None = None, iw_samples: int = 1000
) -> tuple[str, list[Path]]:
    """Evaluate (or reuse ``eval.json`` of) each run; return the table and the files written."""
    from genreg.checkpoint import load_model, model_file
    from genreg.evaluation import eval_path, evaluate_file
    from genreg.run import recorded_data

    results: dict[str, dict] = {}
    pictured: dict[str, tuple[GenerativeModel, Split]] = {}
    for run in runs:
        file = model_file(run)
        name = Path(run).name if Path(run).name not in results else str(run)
        saved = eval_path(file)
        results[name] = (
            json.loads(saved.read_text()) if saved.exists() else evaluate_file(file, iw_samples=iw_samples)[0]
        )
        pictured[name] = (load_model(file), recorded_data(file)[1].test)
    written = [save_comparison(pictured, output)]
    if markdown:
        Path(markdown).write_text(markdown_table(results) + "\n")
        written.append(Path(markdown))
    return format_table(results), written
