"""The building blocks of config classes: component slots (:func:`Part`), strict models and checked names.

A config field that holds another registered component is declared with
:func:`Part`; the spec builder (:mod:`genreg.spec.builder`) turns every such slot
into a union of the registered components of that kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict


@dataclass(frozen=True)
class PartOf:
    """Annotation metadata: this field holds a component of ``kind``.

    With ``default_type``, an object without ``type`` is that component (a loss
    weight's ``schedule`` without a type is ``linear``).
    """

    kind: str
    default_type: str | None = None


def Part(kind: str, default_type: str | None = None) -> Any:  # noqa: N802 - used like a type
    """The annotation for a config field that holds a registered component of ``kind``.

    ``class C(BaseModel): encoder: Part("encoder") = {"type": "mlp"}``: when a spec
    is validated the field accepts any registered encoder, validated in the same
    pass. ``default_type`` names the component an object without ``type`` stands for.
    """
    return Annotated[Any, PartOf(kind, default_type)]


@dataclass(frozen=True)
class OneOrMoreOf:
    """Annotation metadata: the field takes one item or a list of them (a model's ``conditioner``).

    A spec may give one object where the list is; a dotted key (``--set``) may then
    address the list of one as that object (``model.conditioner.num_classes``).
    """


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


def OneOrMore(item: Any) -> Any:  # noqa: N802 - used like a type
    """The annotation for a config field that takes one ``item`` or a list of them, always held as a list."""
    return Annotated[list[item], BeforeValidator(_listed), OneOrMoreOf()]


class StrictModel(BaseModel):
    """A config model that refuses unknown fields."""

    model_config = ConfigDict(extra="forbid")


def _folder_name(name: str) -> str:
    """A run name becomes the name of one folder under ``runs/``: never a path that leads elsewhere."""
    if any(ord(char) < 32 for char in name):
        raise ValueError("must not contain control characters such as NUL or newline (it names the run folder)")
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise ValueError(
            "must be a plain name: no '/' or '\\', and not empty, '.' or '..' (it names the folder runs/<name>; "
            "choose another place with --out)"
        )
    if len(name.encode()) > 200:
        raise ValueError("must be at most 200 bytes long (it names the run folder, and file systems allow 255)")
    return name


RunName = Annotated[str, AfterValidator(_folder_name)]


def _column_name(name: str) -> str:
    if not name or not name.isprintable():
        raise ValueError("must name a data column (a non-empty printable name, e.g. 'label' or 'ink')")
    return name


ColumnName = Annotated[str, AfterValidator(_column_name)]
