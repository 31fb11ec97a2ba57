"""``genreg eval`` and ``compare``: a model's numbers, and several runs side by side."""

from __future__ import annotations

from pathlib import Path

import click

from genreg.cli.options import iw_samples_option, seed_option, split_option


@click.command(name="eval")
@click.argument("model_path", type=click.Path())
@split_option
@iw_samples_option("IWAE samples per image")
@click.option("--n-per-class", default=100, show_default=True, type=click.IntRange(1), help="cVAE samples per class")
@seed_option("random seed of the draws")
@click.option(
    "--precision",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "fp32", "bf16"]),
    help="what the decoder's products run in for ELBO and IWAE; auto: bf16 as in training where it moves "
    "neither by more than 0.1 nat, else fp32",
)
def eval_(model_path: str, split_name: str, iw_samples: int, n_per_class: int, seed: int, precision: str) -> None:
    """Measure MODEL_PATH (a run folder or .safetensors file) on its dataset; write eval.json."""
    from genreg.evaluation.evaluate import evaluate_file
    from genreg.evaluation.report import format_table

    result, out = evaluate_file(
        model_path, split_name, iw_samples=iw_samples, n_per_class=n_per_class, seed=seed, precision=precision
    )
    click.echo(format_table({Path(model_path).name: result}))
    if "precision_note" in result:
        click.echo(f"ELBO and IWAE in {result['precision_note']}")
    if "scale" in result:
        click.echo(f"units: {result['scale']}, not of the data's own units")
    if result.get("r2_features"):
        click.echo(r2_summary(result["reconstruction_r2_per_feature"], result.get("feature_names")))
    if result.get("conditional_accuracy_per_class"):
        per_class = result["conditional_accuracy_per_class"]
        names = result.get("classes") or [str(k) for k in range(len(per_class))]
        listed = ", ".join(f"{name}: {value:.2f}" for name, value in zip(names, per_class, strict=True))
        click.echo(f"conditional accuracy per class ({n_per_class} samples each): {listed}")
    for metric, reason in (result.get("skipped") or {}).items():
        click.echo(f"{metric}: not measured: {reason}")
    click.echo(f"wrote {out}")


def r2_summary(per_feature: list[float | None], names: list[str] | None = None) -> str:
    """One line on the spread of the reconstruction R^2 over features (None: a feature that does not vary), the
    features named by ``names`` (one per feature) if given, else by index."""

    def feature(i: int) -> str:
        return f"feature {names[i]!r}" if names and len(names) == len(per_feature) else f"feature {i}"

    ranked = sorted((value, i) for i, value in enumerate(per_feature) if value is not None)
    (low, worst), (high, best) = ranked[0], ranked[-1]
    median = ranked[len(ranked) // 2][0]
    return (
        f"reconstruction R² per feature: lowest {low:.3f} ({feature(worst)}), median {median:.3f}, "
        f"highest {high:.3f} ({feature(best)}); every feature's in reconstruction_r2_per_feature"
    )


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", default="compare.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--markdown", type=click.Path(dir_okay=False), help="also write the table as Markdown (.md, .txt)")
@iw_samples_option("for runs not yet evaluated")
def compare(runs: tuple[str, ...], output: str, markdown: str | None, iw_samples: int) -> None:
    """Metrics of RUNS side by side, and one picture of their latents and samples."""
    from genreg.evaluation.report import compare_runs

    table, written = compare_runs(runs, output, markdown, iw_samples)
    click.echo(table)
    click.echo("wrote " + ", ".join(map(str, written)))


COMMANDS = (eval_, compare)
