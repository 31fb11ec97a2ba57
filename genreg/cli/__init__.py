"""The ``genreg`` command. Every user error exits with code 2 and one paragraph, no traceback.

The commands live by what they do: :mod:`~genreg.cli.training` (run, validate, sweep, extend),
:mod:`~genreg.cli.inspect` (list, plugins, schema), :mod:`~genreg.cli.pictures` (sample, transfer,
latent), :mod:`~genreg.cli.measure` (eval, compare) and :mod:`~genreg.cli.apply` (encode, reconstruct: a model
on new data); :mod:`~genreg.cli.arguments` reads condition
values given on the command line. These modules import only click at the top and the rest of genreg
(torch included) inside each command, so ``genreg --help`` answers at once.
"""

from __future__ import annotations

import sys
import warnings

import click

from genreg.errors import GenregError


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


def main() -> None:
    """Entry point of the ``genreg`` console script."""
    warnings.formatwarning = one_line_warning
    cli()


def one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> str:
    """``warning: ...`` on stderr, like genreg's other messages, without the source line Python adds."""
    return f"warning: {message}\n"


def _add_commands() -> None:
    from genreg.cli import apply, inspect, measure, pictures, training

    for module in (training, inspect, pictures, measure, apply):
        for command in module.COMMANDS:
            cli.add_command(command)


_add_commands()
