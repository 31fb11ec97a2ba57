"""The spec's pydantic models, built from the registry: every component slot becomes a discriminated union.

When a spec is validated, every :func:`~genreg.spec.parts.Part` slot of every
config class becomes a union over the registered components of that kind (each
config class gets a ``type`` literal), so one validation pass checks every field
of every part, reports each problem with its path (``model.encoder.hidden[1]``)
and ``genreg schema`` prints a JSON Schema that includes every installed plugin's
types. A spec only ever names registered components; it never imports Python.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_serializer
from pydantic_core import PydanticCustomError

from genreg.data.columns import LABEL
from genreg.errors import GenregError
from genreg.plugin.manager import get_registry
from genreg.plugin.registry import Registry, plural
from genreg.spec.parts import ColumnName, OneOrMoreOf, PartOf, RunName, StrictModel
from genreg.spec.paths import is_tag, walk
from genreg.spec.train import TrainConfig

#: Keys genreg itself reads from a component's spec object beside ``type``, by kind; no plugin's config
#: class declares them, and a resolved spec lists them right after ``type``. A conditioner names the data
#: column it reads.
OWN_KEYS: dict[str, dict[str, tuple[Any, Any]]] = {
    "conditioner": {"column": (ColumnName, Field(LABEL, description="the data column this conditioner reads"))},
}


class SpecBuilder:
    """Turns the registry into pydantic models (one per registry snapshot)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._tagged: dict[tuple[str, str], type[BaseModel]] = {}
        self._spec: type[BaseModel] | None = None

    def slot(self, kind: str, default_type: str | None = None) -> Any:
        """The annotation accepting any registered component of ``kind``.

        With ``default_type``, an object without ``type`` is that component, so
        ``--set model.encoder.hidden=[64]`` tunes a recipe's default encoder.
        """
        members = [self.tagged(kind, name) for name in self.registry.names(kind)]
        if not members:
            inner: Any = dict
        elif len(members) == 1:
            inner = members[0]
        else:
            inner = Annotated[Union[tuple(members)], Field(discriminator="type")]  # noqa: UP007
        return Annotated[inner, PartOf(kind, default_type), BeforeValidator(self._type_checker(kind, default_type))]

    def _type_checker(self, kind: str, default_type: str | None):
        registry = self.registry

        def check(value: Any) -> Any:
            if isinstance(value, BaseModel) and hasattr(value, "type"):
                value = value.model_dump()
            names = ", ".join(registry.names(kind)) or "none"
            if not isinstance(value, dict):
                raise PydanticCustomError(
                    "component",
                    'expected an object like {"type": NAME}; registered {kinds}: {names}',
                    {"kinds": plural(kind), "names": names},
                )
            if "type" not in value and default_type is not None:
                value = {"type": default_type, **value}
            if "type" not in value:
                raise PydanticCustomError(
                    "component", "missing 'type'; registered {kinds}: {names}", {"kinds": plural(kind), "names": names}
                )
            if not (isinstance(value["type"], str) and value["type"].isprintable()):
                raise PydanticCustomError(
                    "component",
                    "'type' must be the name of one of the registered {kinds}: {names}",
                    {"kinds": plural(kind), "names": names},
                )
            try:
                registry.get(kind, value["type"])
            except GenregError as exc:
                raise PydanticCustomError("component", "{message}", {"message": str(exc)}) from None
            return value

        return check

    def tagged(self, kind: str, name: str) -> type[BaseModel]:
        """The entry's config class plus ``type: Literal[name]`` and the kind's own keys, slots resolved."""
        key = (kind, name)
        if key not in self._tagged:
            base = next(e for e in self.registry.entries(kind) if e.name == name).config_class
            own = OWN_KEYS.get(kind, {})
            annotations: dict[str, Any] = {"type": Literal[name], **{k: a for k, (a, _) in own.items()}}
            namespace: dict[str, Any] = {
                "__module__": base.__module__,
                "__doc__": base.__doc__,
                "__qualname__": base.__qualname__,
                "model_config": ConfigDict(extra="forbid", validate_default=True),
                "type": Field(name, description=f"registered {kind} name"),
                **{k: field for k, (_, field) in own.items()},
                "_type_first": model_serializer(mode="wrap")(_leading(("type", *own))),
            }
            self._tagged[key] = self.resolved_class(base, annotations, namespace)
        return self._tagged[key]

    def resolved_class(
        self, base: type[BaseModel], annotations: dict | None = None, namespace: dict | None = None
    ) -> type:
        """A subclass of ``base`` whose ``Part`` fields are slots of this registry's components."""
        annotations, namespace = dict(annotations or {}), dict(namespace or {})
        namespace.setdefault("model_config", ConfigDict(extra="forbid"))
        namespace.setdefault("__module__", base.__module__)
        namespace.setdefault("__doc__", base.__doc__)
        for field_name, info in base.model_fields.items():
            default = info.default if isinstance(info.default, dict) else {}
            annotation = self._resolve(info.annotation, info.metadata, default.get("type"))
            if annotation is not None:
                constraints = [m for m in info.metadata if not isinstance(m, PartOf)]
                annotations[field_name] = Annotated[(annotation, *constraints)] if constraints else annotation
                namespace[field_name] = _same_default(info)
        namespace["__annotations__"] = annotations
        return type(base.__name__, (base,), namespace)

    def _resolve(self, annotation: Any, metadata: list[Any] = (), default_type: str | None = None) -> Any:
        """``annotation`` with every ``Part(kind)`` replaced by its slot, or None if it has none."""
        for meta in metadata:
            if isinstance(meta, PartOf):
                return self.slot(meta.kind, default_type or meta.default_type)
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is Annotated:  # e.g. a OneOrMore field: keep its validator and marker around the resolved list
            inner = self._resolve(args[0], list(args[1:]))
            extra = [m for m in args[1:] if not isinstance(m, PartOf)]
            return Annotated[(inner, *extra)] if inner is not None and extra else inner
        if not args:
            return None
        resolved = [self._resolve(a) for a in args]
        if all(r is None for r in resolved):
            return None
        new_args = tuple(a if r is None else r for a, r in zip(args, resolved, strict=True))
        if origin in (Union, types.UnionType):
            return Union[new_args]  # noqa: UP007
        return origin[new_args if len(new_args) > 1 else new_args[0]]

    @functools.cached_property
    def one_or_more_keys(self) -> frozenset[str]:
        """The names of the fields, in any registered config class, that take one item or a list (OneOrMore)."""
        return frozenset(
            name
            for entry in self.registry.entries()
            for name, info in entry.config_class.model_fields.items()
            if _marked(info.annotation, info.metadata)
        )

    def fields_at(self, loc: tuple, raw: Any, root: Any = None) -> list[str]:
        """The fields accepted beside the unknown field at ``loc``; ``root`` defaults to the spec."""
        root_tag = loc[0] if is_tag(loc, 0, raw) else None
        target: Any = self.spec_model() if root is None else self._concrete(root, [], raw, root_tag)
        for step in list(walk(loc, raw))[:-1]:
            target = self._child(target, step.segment, step.value, step.tag)
        return sorted(target.model_fields) if _is_model(target) else []

    def _child(self, target: Any, seg: str | int, value: Any, tag: str | None) -> Any:
        """What validates ``value`` at ``seg`` inside ``target`` (a model class or a list annotation)."""
        if _is_model(target):
            info = target.model_fields.get(seg) if isinstance(seg, str) else None
            return self._concrete(info.annotation, info.metadata, value, tag) if info else None
        if typing.get_origin(target) is list and isinstance(seg, int):
            return self._concrete(typing.get_args(target)[0], [], value, tag)
        return None

    def _concrete(self, annotation: Any, metadata: list[Any], value: Any, tag: str | None = None) -> Any:
        """Unwrap Annotated/Optional; a component slot becomes the tagged class ``value`` names."""
        while typing.get_origin(annotation) is Annotated:
            annotation, *extra = typing.get_args(annotation)
            metadata = [*metadata, *extra]
        slots = [m for m in metadata if isinstance(m, PartOf)]
        if slots:
            name = (value.get("type") if isinstance(value, dict) else None) or tag or slots[0].default_type
            return self.tagged(slots[0].kind, name) if name in self.registry.names(slots[0].kind) else None
        if typing.get_origin(annotation) in (Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            return self._concrete(options[0], [], value, tag) if len(options) == 1 else None
        return annotation

    def spec_model(self) -> type[BaseModel]:
        """The top-level spec model for this registry (built once)."""
        if self._spec is None:
            self._spec = self._build_spec_model()
        return self._spec

    def _build_spec_model(self) -> type[BaseModel]:
        train = self.resolved_class(TrainConfig)
        return create_model(
            "Spec",
            __base__=StrictModel,
            __doc__="A genreg spec: what to train, on what, and how.",
            name=(RunName | None, Field(None, description="a name for the run; its default folder is runs/<name>")),
            seed=(int, Field(0, ge=0, le=2**32 - 1, description="seeds weights, shuffling and sampling")),
            model=(self.slot("model"), Field(description="a model recipe and its parts")),
            data=(self.slot("dataset"), Field(description="the dataset")),
            train=(train, Field(default_factory=train)),
        )


def _marked(annotation: Any, metadata: list[Any] = ()) -> bool:
    """Whether a OneOrMoreOf marker annotates ``annotation`` (or an option of it)."""
    if any(isinstance(m, OneOrMoreOf) for m in metadata):
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Annotated:
        return _marked(args[0], list(args[1:]))
    return typing.get_origin(annotation) in (Union, types.UnionType) and any(_marked(a) for a in args)


def _is_model(target: Any) -> bool:
    return isinstance(target, type) and issubclass(target, BaseModel)


def _leading(keys: tuple[str, ...]):
    """A wrap serializer that puts ``keys`` (those present) first: what a component is, then what it reads."""

    def serialize(self: BaseModel, handler: Any) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        return {**{key: data.pop(key) for key in keys if key in data}, **data}

    return serialize


def _same_default(info: Any) -> Any:
    """A field with ``info``'s default and description (its constraints go in the annotation)."""
    if info.default_factory is not None:
        return Field(default_factory=info.default_factory, description=info.description)
    return Field(info.default, description=info.description)


_builders: dict[int, SpecBuilder] = {}


def builder_for(registry: Registry | None = None) -> SpecBuilder:
    """The (cached) spec builder for ``registry`` (default: the plugins' registry)."""
    if registry is None:
        registry = get_registry()
    builder = _builders.get(id(registry))
    if builder is None or builder.registry is not registry:
        builder = _builders[id(registry)] = SpecBuilder(registry)
    return builder


def spec_model(registry: Registry | None = None) -> type[BaseModel]:
    """The pydantic model that validates a whole spec."""
    return builder_for(registry).spec_model()
