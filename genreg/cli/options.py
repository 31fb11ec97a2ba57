"""Options several commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

overrides = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a spec field, e.g. train.epochs=3 (repeatable)"
)
split_option = click.option(
    "--split", "split_name", type=click.Choice(["test", "train"]), default="test", show_default=True
)

MAX_SEED = 2**32 - 1  # seeds torch and numpy alike
MAX_IW_SAMPLES = 100_000  # IWAE bounds stop tightening measurably long before (Burda et al. 2016 use 5,000)


def seed_option(help: str) -> Decorator:
    """``--seed``: an integer from 0 to :data:`MAX_SEED` (default 0)."""
    return click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED), help=help)


def iw_samples_option(help: str, default: int | None = 1000) -> Decorator:
    """``--iw-samples``: importance samples per image for the IWAE bound, 1 to :data:`MAX_IW_SAMPLES`."""
    return click.option(
        "--iw-samples",
        default=default,
        show_default=default is not None,
        type=click.IntRange(1, MAX_IW_SAMPLES),
        help=help,
    )


def _named(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An option that names a folder may be left out, but not given empty (``--out ""`` is no folder)."""
    if value is not None and not value.strip():
        raise click.BadParameter("names no folder; give one, or leave the option out for the default.")
    return value


def out_option(help: str) -> Decorator:
    """``--out``: the folder a run or a sweep writes (never empty)."""
    return click.option("--out", type=click.Path(file_okay=False), callback=_named, help=help)
