"""Presenting evaluations: the metrics table (one column per run) and the comparison picture."""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from genreg.data.loading import recorded_data
from genreg.data.splits import Split
from genreg.errors import UsageError
from genreg.evaluation.evaluate import evaluate_file, recorded_evaluation
from genreg.files.atomic import atomic_write, check_writable
from genreg.files.model_files import load_model, model_file
from genreg.files.run_folder import RunFolder
from genreg.model.generative import GenerativeModel
from genreg.model.losses import NATS, NEG_ELBO, NLL, term_unit
from genreg.plugin.manager import get_registry
from genreg.viz.figures import check_picture_path, save_figure
from genreg.viz.latent import comparison_figure


def _number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


UNRECORDED = "(unit not recorded)"  # an evaluation written before units were recorded


def loss_rows(result: dict) -> list[tuple[str, str]]:
    """(label, value) for each loss term of one evaluation and an AE's reconstruction NLL, each labelled with its
    unit from the evaluation's ``units`` (``bce (nats/image)``, ``mse (squared error/image)``); the weighted
    total and the test -ELBO (the -ELBO row of :func:`metric_rows` measures it with K draws) are left out."""
    losses = {name: value for name, value in result.get("losses", {}).items() if name not in ("loss", NEG_ELBO)}
    units = result.get("units") or registered_units(losses)
    return [(f"{name} ({units.get(name, UNRECORDED).strip('()')})", _number(value)) for name, value in losses.items()]


def registered_units(names: Iterable[str]) -> dict[str, str]:
    """For an evaluation that records no units (written before they were): each term named as a registered loss
    type gets the unit that type declares, ``nll`` nats per image; a renamed or unknown term gets none."""
    registry = get_registry()
    entries = {name: registry.lookup("loss", name) for name in names}
    return {NLL: NATS} | {name: term_unit(entry.factory) for name, entry in entries.items() if entry is not None}


def metric_rows(result: dict) -> list[tuple[str, str]]:
    """(label, value) for the likelihood, reconstruction (vectors) and latent-space metrics; a metric a model lacks
    shows —, one the evaluation skipped (None, with its reason under ``skipped``) — and why. The bounds are in
    nats per image, or per vector for an evaluation of vectors (one with ``features``); for data with a
    ``transform`` a row names its steps: the losses, bounds and R^2 are on the model's scale, after them."""
    k = result.get("iw_samples")
    in_bf16 = ", bf16" if result.get("precision") == "bf16" else ""  # see likelihood_bounds' precision rule
    per = "vector" if "features" in result else "image"
    knn, chance = result.get("knn_accuracy"), result.get("chance")
    units = result.get("active_units")
    rows = [
        *([("transform (the figures' scale)", ", ".join(result["transform"]))] if result.get("transform") else []),
        (f"-ELBO (nats/{per})", _number(result.get("neg_elbo"))),
        (f"NLL, IWAE (nats/{per})", "—" if k is None else f"{result['nll_iwae']:.2f} (K={k}{in_bf16})"),
        *r2_rows(result),
        ("active units", skipped(result, "active_units") if units is None else f"{units} / {result['latent_dim']}"),
        ("KL(fitted Gaussian ‖ N(0,I))", _number(result["gaussian_kl"], 3)),
        ("MMD² to N(0,I), RBF", _number(result["mmd"], 4)),
        (
            "k-NN accuracy (k=5, 5-fold)",
            skipped(result, "knn_accuracy") if knn is None else f"{knn:.3f} (chance {chance:.3f})",
        ),
        ("k-NN reads", result.get("knn_on") or "—"),
        *column_rows(result),
    ]
    if result.get("conditional_accuracy") is not None:
        reads = (result["classifier_test_accuracy"], result["classifier_reconstruction_accuracy"])
        trust = "classifier reads test {:.3f}, reconstructions {:.3f}".format(*reads)
        doubt = "" if result["conditional_accuracy_trusted"] else "; NOT TRUSTED"
        rows.append(("conditional accuracy", f"{result['conditional_accuracy']:.3f} ({trust}{doubt})"))
        rows += lowest_class_rows(result)
        rows += profile_rows(result)
    elif "conditional_accuracy" in result:
        rows.append(("conditional accuracy", skipped(result, "conditional_accuracy")))
    return rows


def skipped(result: dict, metric: str) -> str:
    """The cell of a metric the evaluation left out: ``— (the data has no labels)``, or — without a reason."""
    reason = (result.get("skipped") or {}).get(metric)
    return f"— ({reason})" if reason else "—"


NEIGHBOURHOODS = "latent neighbourhoods by column"
#: what the figures of :func:`column_rows` should be
READING = "batches should mix: entropy ≈ if mixed, k-NN ≈ chance; cell types stay apart: k-NN high"


def column_rows(result: dict) -> list[tuple[str, str]]:
    """How each class column's classes sit among the latent codes' nearest neighbours (the evaluation's
    ``columns``): k-NN accuracy beside chance, mixing entropy beside its value if the classes were perfectly
    mixed, and whether the model is conditioned on the column; a heading row says on what, and one how to read
    them. No rows for an evaluation without such a column (or written before they were measured), one saying why
    for one that skipped them."""
    columns = result.get("columns") or {}
    if not columns:
        return [(NEIGHBOURHOODS, skipped(result, "columns"))] if "columns" in (result.get("skipped") or {}) else []
    first = next(iter(columns.values()))
    rows = [(NEIGHBOURHOODS, f"{first['k']} nearest, on {first['on']}"), ("by column, how to read", READING)]
    for name, scores in columns.items():
        knn = f"k-NN {scores['knn_accuracy']:.3f} (chance {scores['chance']:.3f})"
        entropy = f"entropy {scores['mixing_entropy']:.2f} ({scores['mixing_entropy_expected']:.2f} if mixed)"
        rows.append((f"column '{name}'", f"{knn}, {entropy}; {scores['role']}"))
    return rows


def lowest_class_rows(result: dict) -> list[tuple[str, str]]:
    """The class the model draws worst (the lowest conditional accuracy), named as the data names it, when the
    evaluation has more than one class."""
    per_class = result.get("conditional_accuracy_per_class") or []
    if len(per_class) < 2:
        return []
    names = result.get("classes") or [str(k) for k in range(len(per_class))]
    worst = min(range(len(per_class)), key=per_class.__getitem__)
    return [("conditional accuracy, lowest class", f"{names[worst]}: {per_class[worst]:.3f}")]


def profile_rows(result: dict) -> list[tuple[str, str]]:
    """How well each class's samples match its data's mean profile (:mod:`genreg.evaluation.profiles`), for
    vectors."""
    if result.get("profile_r") is None:
        return []
    count = len(result["profile_r_per_class"])
    matched = round(result["profile_matched"] * count)
    shown = f"r {result['profile_r']:.3f} (mean over classes); {matched} / {count} closest to their own class"
    return [("class profiles, samples vs data", shown)]


def r2_rows(result: dict) -> list[tuple[str, str]]:
    """The reconstruction R^2 row of an evaluation of vectors (none for images): the mean over the features that
    vary on the split, and over how many of the ``features`` it is."""
    if "reconstruction_r2" not in result:
        return []
    if result["reconstruction_r2"] is None and (result.get("skipped") or {}).get("reconstruction_r2"):
        return [("reconstruction R², mean over features", skipped(result, "reconstruction_r2"))]
    over, features = result.get("r2_features"), result.get("features")
    left_out = f"; {features - over} constant left out" if over is not None and features and over < features else ""
    scale = "; on the model's scale, after the transform" if result.get("transform") else ""
    count = "" if over is None else f" ({over} features{left_out}{scale})"
    return [("reconstruction R², mean over features", _number(result["reconstruction_r2"], 3) + count)]


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
    and the files written.

    ``output`` and ``markdown`` are checked before any run is measured (:func:`check_compare_outputs`). A run
    whose ``eval.json`` cannot be written (a read-only file system) is measured without keeping it, with a
    warning. IWAE estimates with different numbers of draws K are not comparable (the bound tightens as K
    grows): each shows its K, and a mix warns (``UserWarning``) and ends the Markdown with that note.
    """
    check_compare_outputs(output, markdown)
    results: dict[str, dict] = {}
    pictured: dict[str, tuple[GenerativeModel, Split]] = {}
    for run in runs:
        file = model_file(run)
        name = Path(run).name if Path(run).name not in results else str(run)
        measured = recorded_evaluation(file) or evaluate_file(file, iw_samples=iw_samples, keep_if_possible=True)[0]
        results[name] = measured
        pictured[name] = (load_model(file), recorded_data(file)[1].test)
    written = [save_figure(comparison_figure(pictured), output)]
    note = mixed_iwae_samples(results)
    if note:
        warnings.warn(note, stacklevel=2)
    if markdown:
        text = markdown_table(results) + "\n" + (f"\nNote: {note}\n" if note else "")
        atomic_write(markdown, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        written.append(Path(markdown))
    return format_table(results), written


TABLE_SUFFIXES = (".md", ".markdown", ".txt")  # what ``--markdown`` may write: text, never a run's file


def check_compare_outputs(output: str | Path, markdown: str | Path | None = None) -> None:
    """Refuse, before any run is measured, a comparison picture ``output`` (``-o``) or table ``markdown``
    (``--markdown``) that cannot be written, or that would overwrite a run's own file.

    Raises :class:`~genreg.errors.UsageError` for a file of a run folder (see :func:`refuse_run_file`), a
    picture format that cannot be written here, or a table not named ``.md``, ``.markdown`` or ``.txt``;
    :class:`~genreg.errors.OutputError` for a place where no file can be written.
    """
    refuse_run_file(output, "-o")
    check_picture_path(output)
    if markdown is None:
        return
    refuse_run_file(markdown, "--markdown")
    if Path(markdown).suffix.lower() not in TABLE_SUFFIXES:
        raise UsageError(
            f"--markdown {markdown}: the table is text, written to a file ending in {', '.join(TABLE_SUFFIXES)}; "
            f"'{Path(markdown).suffix or '(none)'}' is none of them. Give e.g. table.md."
        )
    check_writable(markdown, "--markdown")


def refuse_run_file(path: str | Path, option: str) -> None:
    """Raise :class:`~genreg.errors.UsageError` when ``path`` is a file a run wrote or derived (a name of
    ``RunFolder.OUTPUTS`` or ``eval*.json`` in a folder that holds a run), or any model file that exists
    (``.safetensors``): a command's output never replaces them."""
    path = Path(path)
    folder = RunFolder(path.parent)
    ours = path.name in RunFolder.OUTPUTS or fnmatch.fnmatch(path.name, RunFolder.DERIVED)
    if ours and (folder.present() or folder.derived()):
        what = f"a file of the run in {path.parent}"
    elif path.suffix.lower() == ".safetensors" and path.exists():
        what = "a model file"
    else:
        return
    raise UsageError(
        f"{option} {path}: {what}, and a command's output never replaces a run's own files; give a new file, "
        "e.g. compare.png for -o, compare.md for --markdown."
    )


def mixed_iwae_samples(results: dict[str, dict]) -> str | None:
    """What to say when the runs' IWAE estimates used different numbers of draws K, or None."""
    draws = {name: result["iw_samples"] for name, result in results.items() if "iw_samples" in result}
    if len(set(draws.values())) <= 1:
        return None
    listed = ", ".join(f"{name} K={k}" for name, k in draws.items())
    return (
        f"the NLL, IWAE row mixes estimates with different numbers of draws per image ({listed}); the bound "
        "tightens as K grows, so a lower NLL may only mean a larger K. Measure every run with the same K "
        "(genreg eval RUN --iw-samples K) before comparing them."
    )
