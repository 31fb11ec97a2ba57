"""Options several commands share."""

from __future__ import annotations

import click

overrides = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a spec field, e.g. train.epochs=3 (repeatable)"
)
split_option = click.option(
    "--split", "split_name", type=click.Choice(["test", "train"]), default="test", show_default=True
)
