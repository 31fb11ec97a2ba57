"""The ``genreg`` command. Every user error exits with code 2 and one paragraph, no traceback."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from genreg.errors import GenregError
from genreg.extend import extend_command
from genreg.registry import KINDS
from genreg.sweep import sweep_command


class Group(click.Group):
    """Turns :class:`GenregError` into ``Error: ...`` on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GenregError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(getattr(exc, "exit_code", 2))


@click.group(cls=Group)
@click.version_option(package_name="genreg")
def cli() -> None:
    """Train and compare autoencoders, VAEs and conditional VAEs."""


overrides = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a spec field, e.g. train.epochs=3 (repeatable)"
)


@cli.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@overrides
@click.option("--out", type=click.Path(file_okay=False), help="run folder [default: runs/<spec name>]")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--overwrite", is_flag=True, help="replace a run already in --out")
@click.option("--quiet", is_flag=True, help="no progress bar")
def run(spec_file: str, sets: tuple[str, ...], out: str | None, resume: bool, overwrite: bool, quiet: bool) -> None:
    """Validate SPEC_FILE, train, and write the run folder."""
    from genreg import distributed
    from genreg.run import run as run_spec
    from genreg.spec import load_spec

    spec = load_spec(spec_file, sets)
    folder = Path(out or Path("runs") / (spec.name or Path(spec_file).stem))
    try:
        result = run_spec(spec, folder, resume=resume, overwrite=overwrite, progress=not quiet)
    finally:
        distributed.leave()
    if not distributed.world().main:
        return
    if result.history:
        last = result.history[-1]
        click.echo(f"epoch {last['epoch']}: " + metrics_line(last))
    if result.stopped:
        when = f"after epoch {result.history[-1]['epoch']}" if result.history else "before training any epoch"
        click.echo(f"stopped {when} of {spec.train.epochs}: {result.stopped}")
    click.echo(f"run folder: {folder}  (spec.json, model.safetensors, metrics.jsonl, samples.png, latent.png)")


def metrics_line(record: dict) -> str:
    """``train loss 123.4  test loss 125.0 (bce 110.2, kld 14.8)``."""
    test = record["test"]
    terms = ", ".join(f"{k} {v:.2f}" for k, v in test.items() if k != "loss")
    return f"train loss {record['train']['loss']:.2f}  test loss {test['loss']:.2f} ({terms}) per image"


@cli.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@overrides
@click.option("--print", "show", is_flag=True, help="print the spec with every default filled in")
def validate(spec_file: str, sets: tuple[str, ...], show: bool) -> None:
    """Check SPEC_FILE whole — fields, data and model assembly — without training."""
    from genreg.run import prepare
    from genreg.spec import load_spec

    ready = prepare(load_spec(spec_file, sets))
    if show:
        click.echo(json.dumps(ready.resolved, indent=2))
        return
    data, model = ready.data, ready.model
    shape = "x".join(map(str, data.info.image_shape))
    params = sum(p.numel() for p in model.parameters())
    click.echo(
        f"{spec_file}: valid. {ready.resolved['model']['type']} with {params:,} parameters on "
        f"{ready.resolved['data']['type']}: {len(data.train):,} train / {len(data.test):,} test images of "
        f"{shape}, {data.num_classes} classes; {ready.resolved['train']['epochs']} epochs."
    )


@cli.command(name="list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@click.argument("pattern", required=False, default="*")
def list_(kind: str | None, pattern: str) -> None:
    """Registered components, optionally of one KIND and matching PATTERN (e.g. '*vae*')."""
    from genreg.plugins import get_registry

    registry = get_registry()
    entries = registry.entries(kind, pattern)
    width = max((len(f"{e.kind} {e.name}") for e in entries), default=0)
    for e in entries:
        owners = registry.owners(e.kind, e.name)
        plugin = e.plugin if len(owners) == 1 else f"CONFLICT: {', '.join(owners)}"
        click.echo(f"{f'{e.kind} {e.name}':<{width}}  [{plugin}]  {e.summary}")
    if not entries:
        click.echo(f"no {kind or 'component'} matches '{pattern}'.")
    for (k, n), owners in sorted(registry.conflicts.items()):
        click.echo(f"warning: {k} '{n}' is registered by {' and '.join(owners)}; it cannot be used.", err=True)
    for name, error in sorted(registry.failures.items()):
        click.echo(f"warning: plugin '{name}' failed to load: {error}", err=True)


@cli.command()
def plugins() -> None:
    """Installed plugins with their versions and components."""
    from genreg.plugins import plugin_infos

    for info in plugin_infos():
        count = len(info.components)
        status = f"FAILED: {info.error}" if info.error else f"{count} component{'s' if count != 1 else ''}"
        click.echo(f"{info.name}  ({info.distribution} {info.version})  {status}")
        if info.components:
            click.echo("    " + ", ".join(info.components))


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a spec, including every installed plugin's types."""
    from genreg.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@cli.command()
@click.argument("model_path", type=click.Path())
@click.option("-n", "n", type=click.IntRange(1), help="per row: samples [8], grid side [15], steps [10]")
@click.option("--label", type=int, help="only this class (short for --condition label=K)")
@click.option(
    "--condition",
    "conditions",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="hold a condition column at a value, e.g. ink=0.15 or label=3 (repeatable)",
)
@click.option("--grid", is_flag=True, help="decode a grid over the prior's quantiles (2-D latents)")
@click.option("--interpolate", nargs=2, type=int, metavar="A B", help="decode the line between test images A and B")
@click.option("--seed", default=0, show_default=True, help="random seed")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
def sample(
    model_path: str,
    n: int | None,
    label: int | None,
    conditions: tuple[str, ...],
    grid: bool,
    interpolate: tuple[int, int] | None,
    seed: int,
    output: str,
) -> None:
    """Draw samples from MODEL_PATH (a .safetensors file or a run folder) into a PNG.

    By default: samples from the prior; for a conditional model a row per class and, when it reads
    a continuous column (e.g. ink) that --condition does not set, a column per value of it.
    --grid: the latent manifold. --interpolate A B: test image A to test image B.
    """
    import torch

    from genreg.checkpoint import load_model
    from genreg.errors import SpecError
    from genreg.pictures import save_samples
    from genreg.run import recorded_data
    from genreg.sampling import parse_condition, save_interpolation, save_manifold

    if grid and interpolate:
        raise SpecError("--grid and --interpolate draw different pictures; choose one.")
    model = load_model(model_path)
    fixed = parse_condition(model, conditions, label)
    torch.manual_seed(seed)
    if grid:
        save_manifold(model, output, n=n or 15, fixed=fixed)
    elif interpolate:
        save_interpolation(model, recorded_data(model_path)[1].test, *interpolate, output, steps=n or 10, fixed=fixed)
    else:
        save_samples(model, output, n=n or 8, fixed=fixed)
    click.echo(f"wrote {output}")


split_option = click.option(
    "--split", "split_name", type=click.Choice(["test", "train"]), default="test", show_default=True
)


@cli.command()
@click.argument("model_path", type=click.Path())
@split_option
@click.option("-n", default=8, show_default=True, type=click.IntRange(1), help="images (rows)")
@click.option(
    "--to",
    default="all",
    show_default=True,
    help="targets: 'all' classes, one class K, or COLUMN=v1,v2,... (e.g. ink=0.05,0.2)",
)
@click.option("--seed", default=0, show_default=True, help="which images are drawn")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
def transfer(model_path: str, split_name: str, n: int, to: str, seed: int, output: str) -> None:
    """Counterfactual decoding: real images of MODEL_PATH's data re-decoded under other conditions.

    Each row is one image (first column) and its latent code decoded under each target: the
    writing style stays, the class (or the column --to names) changes; other columns keep the
    image's own values.
    """
    from genreg.checkpoint import load_model
    from genreg.run import recorded_data
    from genreg.sampling import check_conditional, save_transfer, transfer_targets

    model = load_model(model_path)
    check_conditional(model)
    transfer_targets(model, to)  # a bad --to is refused before the data is loaded
    split = getattr(recorded_data(model_path)[1], split_name)
    save_transfer(model, split, output, n=n, to=to, seed=seed)
    click.echo(f"wrote {output}")


@cli.command()
@click.argument("model_path", type=click.Path())
@split_option
@click.option("--color-by", default="label", show_default=True, help="the data column that colours the points")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
def latent(model_path: str, split_name: str, color_by: str, output: str) -> None:
    """Scatter of MODEL_PATH's latent means over its data, coloured by a column.

    A class column (the label) gets a colour per class, a continuous one (e.g. ink) a colormap.
    """
    from genreg.checkpoint import load_model
    from genreg.pictures import save_latent_scatter
    from genreg.run import recorded_data

    model = load_model(model_path)
    split = getattr(recorded_data(model_path)[1], split_name)
    what = "class" if color_by == "label" else color_by
    save_latent_scatter(model, split, output, title=f"{split_name}-set latent means by {what}", color_by=color_by)
    click.echo(f"wrote {output}")


@cli.command(name="eval")
@click.argument("model_path", type=click.Path())
@split_option
@click.option("--iw-samples", default=1000, show_default=True, type=click.IntRange(1), help="IWAE samples per image")
@click.option("--n-per-class", default=100, show_default=True, type=click.IntRange(1), help="cVAE samples per class")
@click.option("--seed", default=0, show_default=True)
def eval_(model_path: str, split_name: str, iw_samples: int, n_per_class: int, seed: int) -> None:
    """Measure MODEL_PATH (a run folder or .safetensors file) on its dataset; write eval.json."""
    from genreg.evaluation import evaluate_file
    from genreg.report import format_table

    result, out = evaluate_file(model_path, split_name, iw_samples=iw_samples, n_per_class=n_per_class, seed=seed)
    click.echo(format_table({Path(model_path).name: result}))
    if "conditional_accuracy_per_class" in result:
        per_class = ", ".join(f"{k}: {v:.2f}" for k, v in enumerate(result["conditional_accuracy_per_class"]))
        click.echo(f"conditional accuracy per class ({n_per_class} samples each): {per_class}")
    click.echo(f"wrote {out}")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", default="compare.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--markdown", type=click.Path(dir_okay=False), help="also write the table as Markdown")
@click.option(
    "--iw-samples", default=1000, show_default=True, type=click.IntRange(1), help="for runs not yet evaluated"
)
def compare(runs: tuple[str, ...], output: str, markdown: str | None, iw_samples: int) -> None:
    """Metrics of RUNS side by side, and one picture of their latents and samples."""
    from genreg.report import compare_runs

    table, written = compare_runs(runs, output, markdown, iw_samples)
    click.echo(table)
    click.echo("wrote " + ", ".join(map(str, written)))


cli.add_command(extend_command)
cli.add_command(sweep_command)


def main() -> None:
    """Entry point of the ``genreg`` console script."""
    warnings.formatwarning = one_line_warning
    cli()


def one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> str:
    """``warning: ...`` on stderr, like genreg's other messages, without the source line Python adds."""
    return f"warning: {message}\n"
