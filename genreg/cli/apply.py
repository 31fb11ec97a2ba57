"""``genreg encode`` and ``genreg reconstruct``: a trained model on new data, its numbers written as ``.npz``.

DATA is a file of the kind the model was trained on (read with the run's recorded dataset settings, every row in
file order), or a dataset spec (a ``.json``); see :mod:`genreg.data.new_data`. Beside the model's output, each file
holds every condition column of the data in its own values (text as unicode strings: genreg never pickles),
``row`` (the row in DATA) and, for an ``.h5ad``, ``obs_names``; for a dataset spec, ``split`` ("train"/"test")
and ``row`` within it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from genreg.errors import UsageError

BATCH_HELP = "samples through the model at a time"
DEVICE_HELP = "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'"


def _arguments(command: Callable[..., Any]) -> Callable[..., Any]:
    """MODEL_PATH, DATA, ``-o``, ``--device`` and ``--batch-size``, which both commands take."""
    for option in reversed(
        [
            click.argument("model_path", type=click.Path()),
            click.argument("data", type=click.Path()),
            click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="the .npz to write"),
            click.option("--device", default="auto", show_default=True, help=DEVICE_HELP),
            click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1), help=BATCH_HELP),
        ]
    ):
        command = option(command)
    return command


@click.command()
@_arguments
def encode(model_path: str, data: str, output: str, device: str, batch_size: int) -> None:
    """The posterior of each sample of DATA under MODEL_PATH (a run folder or .safetensors file), as a .npz.

    DATA is a file of the kind the model was trained on (.npz, .csv/.tsv/.parquet or .h5ad, read with the run's
    dataset settings, every row in file order) or a dataset spec (.json; both splits, train then test). Writes
    mu (N, latent_dim), the posterior means, and var (N, latent_dim), the posterior variances (for a latent that
    gives them), beside each condition column in the data's values, row and, for an .h5ad, obs_names.
    """
    from genreg.data.new_data import posterior_of

    model, new = _model_and_data(model_path, data, output, device)
    mu, var = posterior_of(model, new.samples, new.condition, batch_size=batch_size)
    arrays = {"mu": mu.cpu().numpy(), **({} if var is None else {"var": var.cpu().numpy()})}
    _write(output, {**arrays, **new.columns, **new.extras}, len(new))
    if var is None:
        click.echo(f"the latent of {model_path} gives no variances (a deterministic code): {output} holds mu only")


@click.command()
@_arguments
def reconstruct(model_path: str, data: str, output: str, device: str, batch_size: int) -> None:
    """Each sample of DATA decoded from its posterior mean under MODEL_PATH, in the data's units, as a .npz.

    DATA as for `genreg encode`. Writes x (N, F) for vectors, in the data's units (the model's transform
    inverted), with features (F,) naming its columns when the data names them, or images (N, C, H, W) in [0, 1],
    beside each condition column in the data's values, row and, for an .h5ad, obs_names.
    """
    import numpy as np
    import torch

    model, new = _model_and_data(model_path, data, output, device)
    parts = []
    for start in range(0, len(new), batch_size):
        stop = start + batch_size
        condition = None if new.condition is None else {c: v[start:stop] for c, v in new.condition.items()}
        parts.append(model.reconstruct(new.samples[start:stop], condition).cpu())
    key = "x" if model.data_info.is_vectors else "images"
    features = model.data_info.features
    names = {} if features is None else {"features": np.array(features)}  # the columns of x, in order
    _write(output, {key: torch.cat(parts).numpy(), **names, **new.columns, **new.extras}, len(new))


def _model_and_data(model_path: str, data: str, output: str, device: str) -> tuple[Any, Any]:
    """The model on ``device`` and DATA read for it, once ``-o`` has been checked (a .npz whose folder can be
    written)."""
    from pathlib import Path

    from genreg.data.new_data import read_new_data
    from genreg.files.atomic import check_writable
    from genreg.files.model_files import load_model

    if Path(output).suffix.lower() != ".npz":
        raise UsageError(f"-o {output}: genreg writes the arrays as a .npz; e.g. {Path(output).with_suffix('.npz')}.")
    check_writable(output, "-o")
    model = load_model(model_path, device=_device(device))
    return model, read_new_data(model_path, data, model)


def _device(name: str) -> Any:
    """The torch device ``--device`` names; raises :class:`UsageError` for one that is not, or not here."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name}: not a device; give {DEVICE_HELP}.") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise UsageError(f"--device {name}: this machine has no such CUDA device; use 'auto' or 'cpu'.")
    return device


def _write(output: str, arrays: dict[str, Any], rows: int) -> None:
    """Write ``arrays`` atomically as the .npz ``output`` (no Python objects: nothing to unpickle), and say what was
    written in one line."""
    import numpy as np

    from genreg.files.atomic import atomic_write

    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in arrays.items():
        if value.dtype.kind == "O":
            arrays[name] = value.astype(str)  # a column of Python objects is written as text, never pickled
    atomic_write(output, lambda tmp: np.savez(tmp, **arrays))  # the temporary file ends in .npz: none is added
    shapes = ", ".join(f"{name} {value.shape}" for name, value in arrays.items())
    click.echo(f"wrote {output}: {rows:,} rows; {shapes}")


COMMANDS = (encode, reconstruct)
