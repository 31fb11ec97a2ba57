"""The spec: pydantic models built from the registry, validated whole before any work.

A component slot in a config class is declared with :func:`Part`::

    class MyRecipeConfig(BaseModel):
        encoder: Part("encoder") = {"type": "mlp"}

When a spec is validated, every slot becomes a discriminated union over the
registered components of that kind (each config class gets a ``type`` literal),
so one validation pass checks every field of every part, reports each problem
with its path (``model.encoder.hidden[1]``) and ``genreg schema`` prints a JSON
Schema that includes every installed plugin's types. A spec only ever names
registered components; it never imports Python.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    create_model,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from genreg.data import LABEL
from genreg.errors import GenregError, SpecError
from genreg.losses import warn_long_warmups
from genreg.registry import Registry, closest, plural


@dataclass(frozen=True)
class PartOf:
    """Annotation metadata: this field holds a component of ``kind``."""

    kind: str


def Part(kind: str) -> Any:  # noqa: N802 - used like a type
    """The annotation for a config field that holds a registered component of ``kind``."""
    return Annotated[Any, PartOf(kind)]


class StrictModel(BaseModel):
    """A config model that refuses unknown fields."""

    model_config = ConfigDict(extra="forbid")


def _folder_name(name: str) -> str:
    """A run name becomes a folder name, which the file system refuses with control characters in it."""
    if any(ord(char) < 32 for char in name):
        raise ValueError("must not contain control characters such as NUL or newline (it names the run folder)")
    return name


RunName = Annotated[str, AfterValidator(_folder_name)]


def _column_name(name: str) -> str:
    if not name or not name.isprintable():
        raise ValueError("must name a data column (a non-empty printable name, e.g. 'label' or 'ink')")
    return name


ColumnName = Annotated[str, AfterValidator(_column_name)]


class TrainConfig(StrictModel):
    """How to train: the same settings for every recipe."""

    epochs: int = Field(10, ge=1, description="passes over the training split")
    batch_size: int = Field(128, ge=1, description="images per optimiser step")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="learning rate")
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    grad_clip: float | None = Field(None, gt=0, allow_inf_nan=False, description="clip the gradient norm to this value")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="'auto': bf16 autocast on CUDA when supported, fp32 on CPU"
    )
    compile: Literal["auto"] | StrictBool = Field(
        "auto", description="torch.compile the loss and Adam (fused kernels); 'auto': on CUDA, off on CPU"
    )
    cuda_graph: Literal["auto"] | StrictBool = Field(
        "auto",
        description="replay training steps as CUDA graphs; 'auto': on CUDA in a single process, falling back "
        "to eager steps if a part cannot be captured",
    )
    lr_schedule: Part("lr_schedule") | None = Field(
        None, description="how the learning rate changes over the run (a factor of lr per step); null: constant"
    )
    callbacks: list[Part("callback")] = Field(
        default_factory=list, description="what watches the run (trackers, early stopping, best checkpoint), in order"
    )


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
        return Annotated[inner, PartOf(kind), BeforeValidator(self._type_checker(kind, default_type))]

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
        """The entry's config class plus a ``type: Literal[name]`` field, slots resolved."""
        key = (kind, name)
        if key not in self._tagged:
            entry = next(e for e in self.registry.entries(kind) if e.name == name)
            base = entry.config
            annotations: dict[str, Any] = {"type": Literal[name]}
            namespace: dict[str, Any] = {
                "__module__": base.__module__,
                "__doc__": base.__doc__,
                "__qualname__": base.__qualname__,
                "model_config": ConfigDict(extra="forbid", validate_default=True),
                "type": Field(name, description=f"registered {kind} name"),
                "_type_first": model_serializer(mode="wrap")(_type_first),
            }
            if kind == "conditioner":  # a key genreg reads, like `type`: no plugin config class declares it
                annotations["column"] = ColumnName
                namespace["column"] = Field(LABEL, description="the data column this conditioner reads")
            self._tagged[key] = self.resolved(base, annotations, namespace)
        return self._tagged[key]

    def resolved(self, base: type[BaseModel], annotations: dict | None = None, namespace: dict | None = None) -> type:
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
                return self.slot(meta.kind, default_type)
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is Annotated:
            return self._resolve(args[0], list(args[1:]))
        if not args:
            return None
        resolved = [self._resolve(a) for a in args]
        if all(r is None for r in resolved):
            return None
        new_args = tuple(a if r is None else r for a, r in zip(args, resolved, strict=True))
        if origin in (Union, types.UnionType):
            return Union[new_args]  # noqa: UP007
        return origin[new_args if len(new_args) > 1 else new_args[0]]

    def fields_at(self, loc: tuple, raw: Any, root: Any = None) -> list[str]:
        """The fields accepted beside the unknown field at ``loc``; ``root`` defaults to the spec."""
        root_tag = loc[0] if _is_tag(loc, 0, raw) else None
        target: Any = self.spec_model() if root is None else self._concrete(root, [], raw, root_tag)
        for seg, value, tag in list(_walk(loc, raw))[:-1]:
            target = self._child(target, seg, value, tag)
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
        kinds = [m.kind for m in metadata if isinstance(m, PartOf)]
        if kinds:
            names = self.registry.names(kinds[0])
            name = (value.get("type") if isinstance(value, dict) else None) or tag
            return self.tagged(kinds[0], name) if name in names else None
        if typing.get_origin(annotation) in (Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) == 1:
                return self._concrete(options[0], [], value, tag)
            return _member_named(options, (value.get("type") if isinstance(value, dict) else None) or tag)
        return annotation

    def spec_model(self) -> type[BaseModel]:
        """The top-level spec model for this registry (built once)."""
        if self._spec is None:
            self._spec = self._build_spec_model()
        return self._spec

    def _build_spec_model(self) -> type[BaseModel]:
        train = self.resolved(TrainConfig)
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


def _member_named(options: list[Any], name: str | None) -> Any:
    """The member of a union of models whose ``type`` defaults to ``name`` (e.g. a loss weight's schedule)."""
    for option in options:
        model = typing.get_args(option)[0] if typing.get_origin(option) is Annotated else option
        field = model.model_fields.get("type") if _is_model(model) else None
        if field is not None and field.default == name:
            return model
    return None


def _is_model(target: Any) -> bool:
    return isinstance(target, type) and issubclass(target, BaseModel)


def _is_tag(loc: tuple, i: int, node: Any) -> bool:
    """Whether ``loc[i]`` is a union tag pydantic inserted (a component name).

    It ends the path when a component's config class as a whole refused the value
    (a tracker whose package is missing); then the component must name itself.
    """
    if i >= len(loc) or not isinstance(node, dict) or not isinstance(loc[i], str) or loc[i] in node:
        return False
    if i == len(loc) - 1:
        return node.get("type") == loc[i]
    return node.get("type", loc[i]) == loc[i]


ONE_OR_MORE = "conditioner"  # the spec key that takes one object or a list of them


class _SingleItem(int):
    """Index 0 of a list that the spec gave as its one element (e.g. one conditioner object): not printed."""


ONE = _SingleItem(0)


def _walk(loc: tuple, raw: Any):
    """Yield (segment, raw value there, union tag chosen there or None), skipping the tags."""
    node, i = raw, 1 if _is_tag(loc, 0, raw) else 0
    while i < len(loc):
        seg = loc[i]
        if isinstance(seg, int) and isinstance(node, dict) and seg == 0:
            seg = ONE  # a single object where a list is accepted (e.g. one conditioner) stands for a list of one
        elif isinstance(seg, int):
            node = node[seg] if isinstance(node, list) and 0 <= seg < len(node) else None
        else:
            node = node.get(seg) if isinstance(node, dict) else None
        i += 1
        tag = loc[i] if _is_tag(loc, i, node) else None
        i += tag is not None
        yield seg, node, tag


def _type_first(self: BaseModel, handler: Any) -> Any:
    data = handler(self)
    if not (isinstance(data, dict) and "type" in data):
        return data
    first = {"type": data.pop("type")}
    if "column" in data:  # a conditioner: what it is, then what it reads
        first["column"] = data.pop("column")
    return {**first, **data}


def _same_default(info: Any) -> Any:
    """A field with ``info``'s default and description (its constraints go in the annotation)."""
    if info.default_factory is not None:
        return Field(default_factory=info.default_factory, description=info.description)
    return Field(info.default, description=info.description)


_builders: dict[int, SpecBuilder] = {}


def builder_for(registry: Registry | None = None) -> SpecBuilder:
    """The (cached) spec builder for ``registry`` (default: the plugins' registry)."""
    if registry is None:
        from genreg.plugins import get_registry

        registry = get_registry()
    builder = _builders.get(id(registry))
    if builder is None or builder.registry is not registry:
        builder = _builders[id(registry)] = SpecBuilder(registry)
    return builder


def spec_model(registry: Registry | None = None) -> type[BaseModel]:
    """The pydantic model that validates a whole spec."""
    return builder_for(registry).spec_model()


def validate_spec(raw: Any, registry: Registry | None = None, source: str = "spec") -> Any:
    """Validate a whole spec (a dict); raise :class:`SpecError` listing every problem."""
    builder = builder_for(registry)
    try:
        return builder.spec_model().model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, raw, source, builder)) from None


def validate_part(kind: str, raw: dict, registry: Registry | None = None) -> BaseModel:
    """Validate one component config (``{"type": ..., ...}``) of ``kind``."""
    builder = builder_for(registry)
    slot = builder.slot(kind)
    try:
        return TypeAdapter(slot).validate_python(raw)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, raw, f"{kind} spec", builder, root=slot)) from None


def build_part(kind: str, item: BaseModel | dict, registry: Registry | None = None, **context: Any) -> Any:
    """Build the component ``item`` names: its validated config, or a dict ``{"type": ...}`` validated here."""
    registry = builder_for(registry).registry
    if isinstance(item, dict):
        item = validate_part(kind, item, registry)
    return registry.build(kind, item, **context)


def format_errors(
    exc: ValidationError, raw: Any, source: str, builder: SpecBuilder | None = None, root: Any = None
) -> str:
    """One line per problem: ``path: message``."""
    lines = []
    for err in exc.errors(include_url=False):
        path = error_path(err["loc"], raw)
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "extra_forbidden":
            allowed = builder.fields_at(err["loc"], raw, root) if builder else []
            msg = "unknown field" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        lines.append(f"  {path or '(top level)'}: {msg}")
    count = len(lines)
    return f"{source} is invalid ({count} problem{'s' if count > 1 else ''}):\n" + "\n".join(lines)


def error_path(loc: tuple, raw: Any) -> str:
    """Format a pydantic location as ``model.encoder.hidden[1]``, without union tags.

    A key that is empty or holds control characters is quoted, so that the message
    stays one line per problem.
    """
    text = ""
    for seg, _, _ in _walk(loc, raw):
        if seg is ONE:
            continue
        if isinstance(seg, str) and not (seg and seg.isprintable()):
            seg = repr(seg)
        text += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if text else str(seg))
    return text


def read_json(path: str | Path) -> Any:
    """Parse a JSON file, with errors that name the file and the position."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path} is not a text (UTF-8) file; a spec is a JSON document.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    except RecursionError:
        raise SpecError(f"{path} nests lists or objects too deeply to be a spec.") from None


def apply_overrides(raw: Any, overrides: list[str] | tuple[str, ...]) -> Any:
    """Apply ``key.path=value`` overrides (value parsed as JSON, else a string) to a copy."""
    try:
        raw = json.loads(json.dumps(raw))
    except RecursionError:
        raise SpecError("the spec nests lists or objects too deeply to be a spec.") from None
    except (TypeError, ValueError) as exc:  # e.g. a numpy number or a set in a spec built in Python
        raise SpecError(
            f"a spec holds only JSON values (objects, lists, strings, numbers, booleans, null): {exc}."
        ) from None
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=3.")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        _set_path(raw, key, value)
    return raw


def _set_path(raw: Any, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        node = single_item(node, parts, i)
        if isinstance(node, list):
            if not part.isdecimal() or int(part) >= len(node):
                raise SpecError(f"--set {key}: '{where}' needs a list index below {len(node)}.")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise SpecError(f"--set {key}: '{'.'.join(parts[:i])}' is not an object or a list.")


def single_item(node: Any, parts: list[str], i: int) -> Any:
    """Where part ``i`` of a dotted key looks: one conditioner may be given as an object, so it is addressed
    as one (``model.conditioner.dim``) even where the spec holds it as a list of one."""
    if parts[i - 1 : i] == [ONE_OR_MORE] and isinstance(node, list) and len(node) == 1 and not parts[i].isdecimal():
        return node[0]
    return node


def load_spec(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Read (if a path), override and validate a spec."""
    raw = read_json(source) if isinstance(source, str | Path) else source
    name = str(source) if isinstance(source, str | Path) else "spec"
    spec = validate_spec(apply_overrides(raw, overrides), source=name)
    warn_long_warmups(spec)
    return spec


def json_schema(registry: Registry | None = None) -> dict:
    """JSON Schema of the spec, including every installed plugin's components."""
    return spec_model(registry).model_json_schema()


__all__ = [
    "Part",
    "PartOf",
    "StrictModel",
    "TrainConfig",
    "apply_overrides",
    "build_part",
    "closest",
    "json_schema",
    "load_spec",
    "validate_part",
    "validate_spec",
]
