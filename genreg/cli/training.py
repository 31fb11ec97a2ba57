"""``genreg run``, ``validate``, ``sweep`` and ``extend``: the commands that check specs and train."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from genreg.cli.options import iw_samples_option, out_option, overrides
from genreg.data.columns import LABEL
from genreg.errors import ExtensionError

if TYPE_CHECKING:
    from genreg.files.run_folder import RunFolder

_EXAMPLE = '\'{"type": "npz", "path": "new.npz"}\''


@click.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@overrides
@out_option("run folder [default: runs/<spec name>]")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--overwrite", is_flag=True, help="replace a run already in --out")
@click.option("--quiet", is_flag=True, help="no progress bar")
def run(spec_file: str, sets: tuple[str, ...], out: str | None, resume: bool, overwrite: bool, quiet: bool) -> None:
    """Validate SPEC_FILE, train, and write the run folder."""
    from genreg.training import signals

    with signals.raised():  # from the start: a signal while genreg loads says what was kept too
        try:
            from genreg.files.run_folder import RunFolder
            from genreg.model.losses import metric_units
            from genreg.spec.validate import load_spec
            from genreg.training import distributed
            from genreg.training.runner import run as run_spec

            spec = load_spec(spec_file, sets)
            folder = Path(out or Path("runs") / (spec.name or Path(spec_file).stem))
            try:
                result = run_spec(spec, folder, resume=resume, overwrite=overwrite, progress=not quiet)
            finally:
                distributed.leave()
        except signals.Stopped as stop:  # before the runner took over
            raise signals.stopped(stop.signum, None) from None
    if not distributed.world().main:
        return
    if result.history:
        last = result.history[-1]
        units = metric_units(result.model.losses, result.model.data_info.singular)
        click.echo(f"epoch {last['epoch']}: " + metrics_line(last, units))
    if result.stopped:
        when = f"after epoch {result.history[-1]['epoch']}" if result.history else "before training any epoch"
        click.echo(f"stopped {when} of {spec.train.epochs}: {result.stopped}")
    shown = [name for name in RunFolder.OUTPUTS if name != RunFolder.CHECKPOINT]
    click.echo(f"run folder: {folder}  ({', '.join(shown)})")


def metrics_line(record: dict, units: dict[str, str]) -> str:
    """``train loss=99.42 nats/image  test loss=111.81, bce=97.88, kld=13.93, neg_elbo=111.81 nats/image``."""
    from genreg.model.losses import with_units

    return f"train {with_units(record['train'], units)}  test {with_units(record['test'], units)}"


@click.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@overrides
@click.option("--print", "show", is_flag=True, help="print the spec with every default filled in")
def validate(spec_file: str, sets: tuple[str, ...], show: bool) -> None:
    """Check SPEC_FILE whole — fields, data and model assembly — without training."""
    from genreg.spec.validate import load_spec
    from genreg.training.runner import prepare

    ready = prepare(load_spec(spec_file, sets))
    if show:
        click.echo(json.dumps(ready.resolved, indent=2))
        return
    data, model = ready.data, ready.model
    params = sum(p.numel() for p in model.parameters())
    click.echo(
        f"{spec_file}: valid. {ready.resolved['model']['type']} with {params:,} parameters on "
        f"{ready.resolved['data']['type']}: {len(data.train):,} train / {len(data.test):,} test "
        f"{data.info.samples}, {data.num_classes} classes; {ready.resolved['train']['epochs']} epochs."
    )


@click.command(name="sweep")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option(
    "--grid",
    "grids",
    multiple=True,
    required=True,
    metavar="KEY=V1,V2,...",
    help="a spec field and its values, e.g. train.lr=1e-3,3e-4 (repeatable; every combination is run)",
)
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a spec field in every run (repeatable)"
)
@out_option("sweep folder [default: runs/<spec name>-sweep]")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1), help="runs at once, in subprocesses")
@iw_samples_option("IWAE samples per image when evaluating each run for the table  [default: 100]", default=None)
@click.option("--quiet", is_flag=True, help="no progress bars")
def sweep(
    spec_file: str,
    grids: tuple[str, ...],
    sets: tuple[str, ...],
    out: str | None,
    jobs: int,
    iw_samples: int | None,
    quiet: bool,
) -> None:
    """Train SPEC_FILE at every combination of the --grid values, one run folder each, and compare them.

    Folders are named by their settings (OUT/lr=1e-3,latent_dim=2). Running the
    same command again skips finished runs and resumes interrupted ones. The
    table is printed and written to OUT/compare.md, the picture to OUT/compare.png.
    """
    from genreg.training import signals

    with signals.raised():  # from the start: a signal while genreg loads says what was kept too
        try:
            from genreg.training.sweep import IW_SAMPLES
            from genreg.training.sweep import sweep as sweep_grid

            sweep_grid(spec_file, grids, sets, out, jobs, iw_samples or IW_SAMPLES, not quiet, click.echo)
        except signals.Stopped as stop:  # before the sweep took over
            raise signals.stopped(stop.signum, None) from None


@click.command("extend")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--column", default=LABEL, show_default=True, help="the condition column to add classes to")
@click.option("--add", "count", type=int, required=True, help="how many classes to add, numbered after the known ones")
@click.option(
    "--data",
    "data_spec",
    metavar="SPEC",
    help=f"fine-tune the new classes on this dataset: a spec as JSON (e.g. {_EXAMPLE}) or a .json file holding one",
)
@click.option("--epochs", type=click.IntRange(min=1), help="fine-tuning epochs, with --data  [default: 10]")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="the new model file")
@click.option("--overwrite", is_flag=True, help="replace a file at -o, or a run folder's model file")
def extend(
    model_path: str,
    column: str,
    count: int,
    data_spec: str | None,
    epochs: int | None,
    quiet: bool,
    output: str,
    overwrite: bool,
) -> None:
    """Add classes to MODEL's embedding conditioner for a column and write the result to a new model file.

    The new classes start at the mean of the known ones; with --data only their
    vectors are then trained, so the model is unchanged for the known classes.
    """
    from genreg.files.model_files import model_file

    source, target = model_file(model_path), Path(output)
    if target.exists() and source.exists() and target.samefile(source):
        raise ExtensionError(f"-o {output} is the model being extended; write the extended model to a new file.")
    folder = _extension_target(target, overwrite)
    data = _dataset_spec(data_spec) if data_spec is not None else None
    if epochs is not None and data is None:
        raise ExtensionError("--epochs sets how long to fine-tune on --data; give --data too, or leave --epochs out.")
    with folder.locked() if folder else contextlib.nullcontext():  # a run folder: no run writes it meanwhile
        _extend_into(source, target, column, count, data, epochs, quiet)


def _extend_into(
    source: Path, target: Path, column: str, count: int, data: dict | None, epochs: int | None, quiet: bool
) -> None:
    """``genreg extend``'s work, once every option has been checked: extend, fine-tune, write ``target``."""
    from genreg.files.model_files import load_model
    from genreg.model.extend import EPOCHS, extend_classes, extension_of, fine_tune_classes, save_extended
    from genreg.model.losses import metric_units, with_units

    model = extend_classes(load_model(source), column, count)
    extension = extension_of(model)
    message = (
        f"column '{column}' has {extension.classes_after} classes: {extension.classes_before} known and {count} new, "
        "starting at the mean of the known ones"
    )
    if data is not None:
        history = fine_tune_classes(model, data, column=column, epochs=epochs or EPOCHS, progress=not quiet)
        epochs_trained = f"{len(history)} epoch{'s' if len(history) != 1 else ''}"
        test = with_units(history[-1]["test"], metric_units(model.losses, model.data_info.singular))
        message += f", then fine-tuned for {epochs_trained} (test {test})"
    save_extended(model, target)
    click.echo(f"wrote {target} ({message})")


def _extension_target(target: Path, overwrite: bool) -> RunFolder | None:
    """Check ``extend -o``: a writable place, not an existing file and not inside another run's folder, unless
    ``overwrite``; returns that run folder (whose lock the command then holds), or None."""
    from genreg.files.atomic import check_writable
    from genreg.files.run_folder import RunFolder

    if target.suffix != ".safetensors":
        raise ExtensionError(f"-o {str(target)!r}: a model file is a .safetensors file, e.g. extended.safetensors.")
    if target.name == RunFolder.CHECKPOINT:
        raise ExtensionError(f"-o {target}: a run folder's checkpoint, never a model file; choose another name.")
    check_writable(target, "-o")
    folder = RunFolder(target.parent)
    run_files = folder.present() if folder.spec_path.exists() else []  # a run's folder: its spec says what it is
    if overwrite:
        return folder if run_files else None
    if run_files:
        raise ExtensionError(
            f"-o {target}: {folder.path} is the folder of a run ({', '.join(run_files)}), whose files describe its "
            "own model; an extended model written there would contradict them. Write it to a file outside run "
            "folders, or pass --overwrite to replace that run's model file."
        )
    if target.exists():
        raise ExtensionError(f"-o {target} exists already; choose a new file, or pass --overwrite to replace it.")
    return None


def _dataset_spec(text: str) -> dict:
    """``--data``'s dataset spec, inline JSON or a JSON file, validated before any model or data is loaded."""
    from genreg.spec.overrides import parse_json
    from genreg.spec.validate import validate_part

    where = "--data"
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ExtensionError(
                f"--data {text}: neither a JSON object nor an existing file; give a dataset spec such as "
                f"{_EXAMPLE}, or a .json file holding one."
            )
        where, text = str(path), path.read_text(errors="replace")
    try:
        raw = parse_json(text, where, ExtensionError)
    except ValueError as exc:
        raise ExtensionError(f"{where}: not valid JSON ({exc}); give a dataset spec such as {_EXAMPLE}.") from None
    if not isinstance(raw, dict):
        raise ExtensionError(f"{where}: a dataset spec is a JSON object such as {_EXAMPLE}.")
    validate_part("dataset", raw)
    return raw


COMMANDS = (run, validate, sweep, extend)
