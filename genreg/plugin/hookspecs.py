"""The hook a genreg plugin implements.

One hook is enough: a plugin receives a ``register`` callable and calls it once
per component it provides::

    @genreg.hookimpl
    def register_components(register):
        register("conditioner", "thermometer", Thermometer, ThermometerConfig)
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("genreg")
hookimpl = pluggy.HookimplMarker("genreg")


@hookspec
def register_components(register):  # pragma: no cover - a specification, not code
    """Register components: ``register(kind, name, factory, config_class)``.

    ``kind`` is one of :data:`genreg.plugin.registry.KINDS`; ``factory`` builds the
    component from an instance of ``config_class`` (a pydantic model) plus the
    keyword arguments that kind's protocol names (see :mod:`genreg.plugin.protocols`).
    """
