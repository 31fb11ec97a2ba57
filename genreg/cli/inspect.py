"""``genreg list``, ``plugins`` and ``schema``: what is installed and what a spec may say."""

from __future__ import annotations

import json

import click

from genreg.plugin.registry import KIND_ALIASES, KINDS


@click.command(name="list")
@click.argument("kind", required=False, type=click.Choice([*KINDS, *KIND_ALIASES]))
@click.argument("pattern", required=False, default="*")
def list_(kind: str | None, pattern: str) -> None:
    """Registered components, optionally of one KIND and matching PATTERN (e.g. '*vae*')."""
    from genreg.plugin.manager import get_registry

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


@click.command()
def plugins() -> None:
    """Installed plugins with their versions and components."""
    from genreg.plugin.manager import plugin_infos

    for info in plugin_infos():
        count = len(info.components)
        status = f"FAILED: {info.error}" if info.error else f"{count} component{'s' if count != 1 else ''}"
        click.echo(f"{info.name}  ({info.distribution} {info.version})  {status}")
        if info.components:
            click.echo("    " + ", ".join(info.components))


@click.command()
def schema() -> None:
    """Print the JSON Schema of a spec, including every installed plugin's types."""
    from genreg.spec.validate import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


COMMANDS = (list_, plugins, schema)
