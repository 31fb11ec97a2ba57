"""``genreg sample``, ``transfer`` and ``latent``: pictures of a trained model, written as PNG files."""

from __future__ import annotations

import click

from genreg.cli.options import seed_option, split_option
from genreg.data.columns import LABEL
from genreg.errors import UsageError


@click.command()
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
@seed_option("random seed")
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

    from genreg.cli.arguments import parse_condition
    from genreg.data.loading import recorded_data
    from genreg.files.model_files import load_model
    from genreg.viz.explore import interpolation_figure, manifold_figure
    from genreg.viz.figures import check_picture_path, save_figure
    from genreg.viz.samples import samples_figure

    if grid and interpolate:
        raise UsageError("--grid and --interpolate draw different pictures; choose one.")
    check_picture_path(output)
    model = load_model(model_path)
    fixed = parse_condition(model, conditions, label)
    torch.manual_seed(seed)
    if grid:
        figure = manifold_figure(model, n=n or 15, fixed=fixed)
    elif interpolate:
        figure = interpolation_figure(model, recorded_data(model_path)[1].test, *interpolate, n or 10, fixed)
    else:
        figure = samples_figure(model, n=n or 8, fixed=fixed)
    save_figure(figure, output)
    click.echo(f"wrote {output}")


@click.command()
@click.argument("model_path", type=click.Path())
@split_option
@click.option("-n", default=8, show_default=True, type=click.IntRange(1), help="images (rows)")
@click.option(
    "--to",
    default="all",
    show_default=True,
    help="targets: 'all' classes, one class K, or COLUMN=v1,v2,... (e.g. ink=0.05,0.2)",
)
@seed_option("which images are drawn")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
def transfer(model_path: str, split_name: str, n: int, to: str, seed: int, output: str) -> None:
    """Counterfactual decoding: real images of MODEL_PATH's data re-decoded under other conditions.

    Each row is one image (first column) and its latent code decoded under each target: the
    writing style stays, the class (or the column --to names) changes; other columns keep the
    image's own values.
    """
    from genreg.cli.arguments import transfer_targets
    from genreg.data.loading import recorded_data
    from genreg.files.model_files import load_model
    from genreg.viz.explore import transfer_figure
    from genreg.viz.figures import check_picture_path, save_figure

    check_picture_path(output)
    model = load_model(model_path)
    targets, headers = transfer_targets(model, to)  # a bad --to is refused before the data is loaded
    split = getattr(recorded_data(model_path)[1], split_name)
    save_figure(transfer_figure(model, split, targets, headers, n=n, seed=seed), output)
    click.echo(f"wrote {output}")


@click.command()
@click.argument("model_path", type=click.Path())
@split_option
@click.option("--color-by", default=LABEL, show_default=True, help="the data column that colours the points")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
def latent(model_path: str, split_name: str, color_by: str, output: str) -> None:
    """Scatter of MODEL_PATH's latent means over its data, coloured by a column.

    A class column (the label) gets a colour per class, a continuous one (e.g. ink) a colormap.
    """
    from genreg.data.loading import recorded_data
    from genreg.files.model_files import load_model
    from genreg.viz.figures import check_picture_path, save_figure
    from genreg.viz.latent import latent_scatter_figure

    check_picture_path(output)
    model = load_model(model_path)
    split = getattr(recorded_data(model_path)[1], split_name)
    what = "class" if color_by == LABEL else color_by
    title = f"{split_name}-set latent means by {what}"
    save_figure(latent_scatter_figure(model, split, title=title, color_by=color_by), output)
    click.echo(f"wrote {output}")


COMMANDS = (sample, transfer, latent)
