"""``genreg sample``, ``transfer`` and ``latent``: pictures of a trained model, written as PNG files (or any
format matplotlib writes), or their numbers as ``.npz``/``.npy`` (see :mod:`genreg.viz.arrays`).

A model of vectors (a table's rows) draws its samples as a heatmap, a row per sample and a column per
feature, above each class's mean profile (see :mod:`genreg.viz.heatmaps`), in the data's units. Classes are
given and shown as the data names them (``--label "CD14+ Monocyte"``; see :mod:`genreg.cli.arguments`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from genreg.cli.options import seed_option, split_option
from genreg.data.columns import LABEL
from genreg.errors import GenregError, UsageError

if TYPE_CHECKING:
    from genreg.data.splits import DataInfo
    from genreg.model.generative import GenerativeModel

OUTPUT_HELP = "picture file (.png, .pdf, .svg, ...), or .npz/.npy for the arrays themselves"


def parse_classes(text: str | None, info: DataInfo | None = None) -> list[int] | None:
    """``--classes 0,3,7`` as [0, 3, 7] (None when not given); for a label with a vocabulary in ``info`` (the
    model's data), its values: ``--classes "B,CD14+ Monocyte"`` as their classes. Raises :class:`UsageError`
    for anything else, listing the values a vocabulary holds."""
    from genreg.cli.arguments import class_value, split_values

    if text is None:
        return None
    if info is not None and LABEL in info.vocabularies:
        names = info.class_names(LABEL)
        source = f"--classes {text}"
        try:
            return [class_value(info, LABEL, item, len(names), source) for item in split_values(text, names)]
        except GenregError as exc:
            raise UsageError(str(exc)) from None
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise UsageError(f"--classes {text}: give class indices separated by commas, e.g. --classes 0,3,7.") from None


classes_option = click.option(
    "--classes", "classes", metavar="K1,K2,...", help="which classes get a row (default: at most --rows, spread evenly)"
)


@click.command()
@click.argument("model_path", type=click.Path())
@click.option("-n", "n", type=click.IntRange(1), help="per row: samples [8], grid side [15], steps [10]")
@click.option("--label", help="only this class, as the data names it (short for --condition label=K)")
@click.option(
    "--condition",
    "conditions",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="hold a condition column at a value, e.g. ink=0.15 or label=3 (repeatable)",
)
@click.option("--grid", is_flag=True, help="decode a grid over the prior's quantiles (2-D latents)")
@click.option("--interpolate", nargs=2, type=int, metavar="A B", help="decode the line between test samples A and B")
@classes_option
@click.option("--rows", type=click.IntRange(1), default=10, show_default=True, help="at most this many classes")
@seed_option("random seed")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help=OUTPUT_HELP)
def sample(
    model_path: str,
    n: int | None,
    label: str | None,
    conditions: tuple[str, ...],
    grid: bool,
    interpolate: tuple[int, int] | None,
    classes: str | None,
    rows: int,
    seed: int,
    output: str,
) -> None:
    """Draw samples from MODEL_PATH (a .safetensors file or a run folder) into a picture, or their numbers.

    By default: samples from the prior; for a conditional model a row per class (at most --rows
    classes, spread evenly, or those --classes names) and, when it reads a continuous column
    (e.g. ink) that --condition does not set, a column per value of it.
    --grid: the latent manifold. --interpolate A B: test sample A to test sample B.
    Vectors are drawn as heatmap rows (a block per class, above each block's mean profile).
    -o FILE.npz writes the samples and each one's condition columns: images (N, C, H, W) in [0, 1],
    or for vectors x (N, F) in the data's units.
    """
    import torch

    from genreg.cli.arguments import parse_condition
    from genreg.data.loading import recorded_data
    from genreg.files.model_files import load_model
    from genreg.viz import arrays, explore, samples
    from genreg.viz.figures import check_picture_path, is_arrays_path, save_arrays, save_figure

    if grid and interpolate:
        raise UsageError("--grid and --interpolate draw different pictures; choose one.")
    if classes is not None and (grid or interpolate or label is not None):
        raise UsageError(
            "--classes chooses the rows of a sample grid; leave it out with --label, --grid or --interpolate."
        )
    check_picture_path(output, arrays=True)
    numbers = is_arrays_path(output)
    model = load_model(model_path)
    fixed = parse_condition(model, conditions, label)
    chosen = parse_classes(classes, model.data_info)
    torch.manual_seed(seed)
    if grid:
        made = (arrays.manifold_arrays if numbers else explore.manifold_figure)(model, n or 15, fixed)
    elif interpolate:
        test = recorded_data(model_path)[1].test
        draw = arrays.interpolation_arrays if numbers else explore.interpolation_figure
        made = draw(model, test, *interpolate, n or 10, fixed)
    else:
        made = (arrays.samples_arrays if numbers else samples.samples_figure)(model, n or 8, fixed, chosen, rows)
    (save_arrays if numbers else save_figure)(made, output)
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
@classes_option
@click.option("--columns", type=click.IntRange(1), default=10, show_default=True, help="--to all: at most this many")
@seed_option("which images are drawn")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help=OUTPUT_HELP)
def transfer(
    model_path: str, split_name: str, n: int, to: str, classes: str | None, columns: int, seed: int, output: str
) -> None:
    """Counterfactual decoding: real images of MODEL_PATH's data re-decoded under other conditions.

    Each row is one image (first column) and its latent code decoded under each target: the
    writing style stays, the class (or the column --to names) changes; other columns keep the
    image's own values. --to all: a column per class, at most --columns spread evenly, or those
    --classes names. Vectors are drawn as heatmap rows, a block per target after the samples themselves.
    -o FILE.npz writes the decodings and their conditions: images (N, C, H, W) in [0, 1], or for vectors
    x (N, F) in the data's units.
    """
    from genreg.cli.arguments import transfer_targets
    from genreg.data.loading import recorded_data
    from genreg.files.model_files import load_model
    from genreg.viz.arrays import transfer_arrays
    from genreg.viz.explore import transfer_figure
    from genreg.viz.figures import check_picture_path, is_arrays_path, save_arrays, save_figure

    if classes is not None and to != "all":
        raise UsageError(f"--classes chooses among --to all; leave it out with --to {to}.")
    check_picture_path(output, arrays=True)
    model = load_model(model_path)
    targets, headers = transfer_targets(model, to)  # a bad --to is refused before the data is loaded
    if to == "all":
        targets, headers = class_targets(model, parse_classes(classes, model.data_info), columns)
    split = getattr(recorded_data(model_path)[1], split_name)
    if n > len(split):
        noun = model.data_info.noun
        raise UsageError(f"-n {n:,}: the {split_name} split of {model_path} has {len(split):,} {noun}; ask for fewer.")
    if is_arrays_path(output):
        save_arrays(transfer_arrays(model, split, targets, headers, n=n, seed=seed), output)
    else:
        save_figure(transfer_figure(model, split, targets, headers, n=n, seed=seed), output)
    click.echo(f"wrote {output}")


def class_targets(model: GenerativeModel, classes: list[int] | None, most: int) -> tuple[dict, list[str]]:
    """``--to all``'s targets: the ``classes`` given, else at most ``most`` of the model's classes of the label
    spread evenly; each header names its class as the data does."""
    import torch

    from genreg.viz.samples import shown_classes, value_label

    shown = shown_classes(model.conditioner.num_classes, classes, most)
    return {LABEL: torch.tensor(shown)}, [value_label(LABEL, k, model.data_info) for k in shown]


@click.command()
@click.argument("model_path", type=click.Path())
@split_option
@click.option("--color-by", default=LABEL, show_default=True, help="the data column that colours the points")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help=OUTPUT_HELP)
def latent(model_path: str, split_name: str, color_by: str, output: str) -> None:
    """Scatter of MODEL_PATH's latent means over its data, coloured by a column.

    A class column (the label) gets a colour per class (a colormap past 20 classes), a continuous
    one (e.g. ink) a colormap. -o FILE.npz writes the means ``mu`` (N, latent_dim) and every column.
    """
    from genreg.data.loading import recorded_data
    from genreg.files.model_files import load_model
    from genreg.viz.arrays import latent_arrays
    from genreg.viz.figures import check_picture_path, is_arrays_path, save_arrays, save_figure
    from genreg.viz.latent import latent_scatter_figure

    check_picture_path(output, arrays=True)
    model = load_model(model_path)
    split = getattr(recorded_data(model_path)[1], split_name)
    if is_arrays_path(output):
        save_arrays(latent_arrays(model, split), output)
        click.echo(f"wrote {output}")
        return
    what = "class" if color_by == LABEL else color_by
    title = f"{split_name}-set latent means by {what}"  # the figure leaves "by class" out for data without labels
    save_figure(latent_scatter_figure(model, split, title=title, color_by=color_by), output)
    click.echo(f"wrote {output}")


COMMANDS = (sample, transfer, latent)
