"""The plugin manager: entry-point group ``genreg``, one hook, one registry.

Built-in components are a plugin like any other (entry point ``builtin``). Set
``GENREG_PLUGINS`` to a comma-separated list of entry-point names to load only
those (an empty value loads none). A plugin that fails to import or to register
is recorded by name in :attr:`Registry.failures`; the others keep working.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
from dataclasses import dataclass, field
from typing import Any

import pluggy

from genreg.plugin import hookspecs
from genreg.plugin.registry import Registry, canonical_kind

ENTRY_POINT_GROUP = "genreg"
ENV_VAR = "GENREG_PLUGINS"


@dataclass
class PluginInfo:
    """What ``genreg plugins`` shows about one installed plugin."""

    name: str
    distribution: str
    version: str
    error: str | None = None
    components: list[str] = field(default_factory=list)


_manager: pluggy.PluginManager | None = None
_registry: Registry | None = None
_infos: dict[str, PluginInfo] = {}


def _selected() -> set[str] | None:
    value = os.environ.get(ENV_VAR)
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def _load_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    selected = _selected()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if selected is not None and ep.name not in selected:
            continue
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        info = _infos[ep.name] = PluginInfo(ep.name, dist, version)
        try:
            manager.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not take genreg down
            info.error = _describe(exc)
    return manager


def _describe(exc: Exception) -> str:
    """``ImportError: needs libfoo`` (no trailing period: messages append their own)."""
    return f"{type(exc).__name__}: {str(exc).rstrip('.')}"


def manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (entry points are loaded on first use)."""
    global _manager
    if _manager is None:
        _manager = _load_manager()
    return _manager


def get_registry() -> Registry:
    """The registry filled by every loaded plugin's ``register_components``."""
    global _registry
    if _registry is None:
        _registry = _fill(Registry(), manager())
    return _registry


def _fill(registry: Registry, pm: pluggy.PluginManager) -> Registry:
    for name, info in _infos.items():
        if info.error:
            registry.failures[name] = info.error
    for impl in pm.hook.register_components.get_hookimpls():
        plugin = impl.plugin_name
        info = _infos.setdefault(plugin, PluginInfo(plugin, "(registered in Python)", "-"))
        items: list[tuple[str, str, Any, Any]] = []

        def register(kind: str, name: str, factory: Any, config: Any, _items: list = items) -> None:
            """Collect one component; the plugin's components are added together or not at all."""
            _items.append((kind, name, factory, config))

        try:
            impl.function(register=register)
            registry.register_all(items, plugin=plugin)
        except Exception as exc:  # a broken plugin must not take genreg down
            info.error = registry.failures[plugin] = _describe(exc)
        else:
            info.components.extend(f"{canonical_kind(kind)}:{name}" for kind, name, _, _ in items)
    return registry


def register_plugin(plugin: object, name: str) -> None:
    """Add a plugin object from Python (no entry point), e.g. in a notebook or test."""
    manager().register(plugin, name=name)
    reset_registry()


def unregister_plugin(name: str) -> None:
    """Remove a plugin added with :func:`register_plugin`."""
    manager().unregister(name=name)
    _infos.pop(name, None)
    reset_registry()


def reset_registry() -> None:
    """Forget the registry so the next lookup asks the plugins again."""
    global _registry
    _registry = None
    for info in _infos.values():
        info.components.clear()


def plugin_infos() -> list[PluginInfo]:
    """Every plugin genreg tried to load, sorted by name."""
    get_registry()
    return sorted(_infos.values(), key=lambda i: i.name)


def list_components(kind: str | None = None, pattern: str = "*") -> list[str]:
    """Sorted ``kind:name`` of registered components, filtered by a shell-style pattern."""
    return [f"{e.kind}:{e.name}" for e in get_registry().entries(kind, pattern)]
