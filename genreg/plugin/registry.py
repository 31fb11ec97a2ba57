"""One place to ask "what exists": every named component, its kind and its config.

Plugins fill a :class:`Registry` through the ``register_components`` hook; the spec
validator, model assembly and the CLI read from it. Lookups fail with errors that
say what was asked for, what exists and the closest match.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from genreg.errors import AssemblyError, PluginError, UnknownComponentError

KINDS: tuple[str, ...] = (
    "conditioner",
    "encoder",
    "latent",
    "decoder",
    "loss",
    "dataset",
    "model",
    "schedule",
    "callback",
)
#: The kinds whose factories return a ``torch.nn.Module`` (sized before they are built).
PARTS = ("conditioner", "encoder", "latent", "decoder", "loss")
#: Earlier names of kinds, still accepted wherever a kind is named (``register``, ``genreg list``).
KIND_ALIASES = {"lr_schedule": "schedule"}


@dataclass(frozen=True)
class Entry:
    """A registered component: ``factory(config, **context)`` builds it from an instance of ``config_class``."""

    kind: str
    name: str
    factory: Callable[..., Any]
    config_class: type[BaseModel]
    plugin: str

    @property
    def summary(self) -> str:
        """First line of the config class's docstring, for listings."""
        doc = (self.config_class.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


def plural(kind: str) -> str:
    """``encoders``, ``loss terms``: the kind's name in listings."""
    return {"loss": "loss terms"}.get(kind, f"{kind}s")


def closest(name: str, choices: list[str]) -> str:
    """A ``did you mean`` clause for an unknown ``name``, or an empty string."""
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


class Registry:
    """Named components by kind, with the plugin that registered each."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}
        self.conflicts: dict[tuple[str, str], list[str]] = {}
        self.failures: dict[str, str] = {}

    def register(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any],
        config: type[BaseModel],
        *,
        plugin: str = "__main__",
    ) -> None:
        """Add ``name`` under ``kind``; a name two plugins claim becomes unusable."""
        kind = canonical_kind(kind)
        _check_registration(kind, name, config, plugin)
        key = (kind, name)
        if key in self._entries and self._entries[key].plugin != plugin:
            owners = self.conflicts.setdefault(key, [self._entries[key].plugin])
            owners.append(plugin)
            return
        self._entries[key] = Entry(kind, name, factory, config, plugin)

    def register_all(self, items: list[tuple[str, str, Callable[..., Any], type[BaseModel]]], *, plugin: str) -> None:
        """Register a plugin's components together: one invalid registration rejects them all."""
        for kind, name, _, config in items:
            _check_registration(canonical_kind(kind), name, config, plugin)
        for kind, name, factory, config in items:
            self.register(kind, name, factory, config, plugin=plugin)

    def owners(self, kind: str, name: str) -> list[str]:
        """The plugins that registered ``name`` (more than one means it is unusable)."""
        kind = canonical_kind(kind)
        return self.conflicts.get((kind, name), [self._entries[(kind, name)].plugin])

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Sorted names of ``kind`` matching the shell-style ``pattern``."""
        kind = canonical_kind(kind)
        return sorted(n for k, n in self._entries if k == kind and fnmatch.fnmatch(n, pattern))

    def entries(self, kind: str | None = None, pattern: str = "*") -> list[Entry]:
        """Entries of one kind (or all), sorted by kind order then name."""
        kinds = [canonical_kind(kind)] if kind else list(KINDS)
        return [self._entries[(k, n)] for k in kinds for n in self.names(k, pattern)]

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name``; raises with the registered names and a suggestion."""
        kind = canonical_kind(kind)
        if (kind, name) in self.conflicts:
            owners = " and ".join(f"'{p}'" for p in self.conflicts[(kind, name)])
            raise PluginError(
                f"{kind} '{name}' is registered by both plugins {owners}; uninstall one of them "
                "or choose which plugins load with GENREG_PLUGINS."
            )
        if (kind, name) not in self._entries:
            raise UnknownComponentError(self.unknown_message(kind, name))
        return self._entries[(kind, name)]

    def unknown_message(self, kind: str, name: str) -> str:
        """The explanation for an unknown ``name`` of ``kind``."""
        known = self.names(kind)
        listing = ", ".join(known) if known else "none (is any plugin installed?)"
        failed = "".join(f" Plugin '{p}' failed to load: {e}." for p, e in self.failures.items())
        suggestion = closest(name, known)
        hint = "" if failed or suggestion else f" If a plugin provides '{name}', install it (see `genreg plugins`)."
        return f"unknown {kind} '{name}'.{suggestion} Registered {plural(kind)}: {listing}.{failed}{hint}"

    def build(self, kind: str, config: BaseModel, **context: Any) -> Any:
        """Build the component a validated config names (its ``type``) with ``context``.

        A part (one of :data:`PARTS`) is first built on PyTorch's ``meta`` device, which
        allocates nothing, to count its bytes: one that does not fit in the memory this
        process can still allocate is an :class:`AssemblyError` naming the part and the limit.
        """
        entry = self.get(kind, config.type)  # type: ignore[attr-defined]
        if kind in PARTS:
            _check_size(entry, config, context)
        try:
            component = entry.factory(config, **context)
        except MemoryError:
            raise AssemblyError(
                f"{kind} '{entry.name}' (plugin '{entry.plugin}') ran out of memory while it was built; make it "
                "smaller (e.g. latent_dim, hidden sizes, channels)."
            ) from None
        with contextlib.suppress(AttributeError):  # what built it, for describe() and saved files; not all take it
            component.genreg_entry = entry
        return component

    def lookup(self, kind: str, name: str) -> Entry | None:
        """The entry for ``name`` of ``kind``, or None where none is registered (no error, unlike :meth:`get`)."""
        return self._entries.get((canonical_kind(kind), name))

    def find(self, component: Any) -> Entry | None:
        """The entry whose factory is ``component``'s class (for parts built by hand)."""
        entry = getattr(component, "genreg_entry", None)
        if entry is not None:
            return entry
        return next((e for e in self._entries.values() if e.factory is type(component)), None)


def _check_size(entry: Entry, config: BaseModel, context: dict[str, Any]) -> None:
    """Refuse a part whose parameters and buffers would not fit in memory, measured on the ``meta`` device."""
    import torch

    from genreg.limits import check_memory

    if torch.get_default_device().type == "meta":  # the build itself allocates nothing (e.g. load_model's trial)
        return
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the real build below warns, once
            part = entry.factory(config, **context)
        tensors = [*part.parameters(), *part.buffers()]
    except Exception:  # noqa: BLE001 - a factory that cannot build on `meta` is measured by building it for real
        return
    needed = sum(t.numel() * t.element_size() for t in tensors)
    what = f"{entry.kind} '{entry.name}' (plugin '{entry.plugin}')"
    check_memory(needed, what, "make it smaller (e.g. latent_dim, hidden sizes, channels).", AssemblyError)


def canonical_kind(kind: str) -> str:
    """``kind`` itself, or the kind an earlier name of it stands for; an unknown kind is an error listing them."""
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise UnknownComponentError(
            f"unknown component kind '{kind}'.{closest(kind, list(KINDS))} Kinds: {', '.join(KINDS)}."
        )
    return kind


def _check_registration(kind: str, name: str, config: Any, plugin: str) -> None:
    from genreg.data.splits import DatasetConfig
    from genreg.model.losses import LossTermConfig

    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin '{plugin}' registered a {kind} with an invalid name {name!r}.")
    if not (isinstance(config, type) and issubclass(config, BaseModel)):
        raise PluginError(
            f"plugin '{plugin}': {kind} '{name}' needs a pydantic BaseModel config class, got {config!r}."
        )
    if "type" in config.model_fields:
        raise PluginError(f"plugin '{plugin}': {kind} '{name}' config must not define 'type'; genreg adds it.")
    base = {"loss": LossTermConfig, "dataset": DatasetConfig}.get(kind)
    if base is not None and not issubclass(config, base):
        raise PluginError(f"plugin '{plugin}': {kind} '{name}' config must subclass genreg.{base.__name__}.")
