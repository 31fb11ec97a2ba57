"""Where in a spec a problem is: pydantic's error locations turned into paths such as ``model.encoder.hidden[1]``.

pydantic's locations hold the tags of the unions it chose (a component's name)
and index a list even where the spec gave one object for a list of one; a path
a user reads has neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple


class Step(NamedTuple):
    """One segment of a location: the key or index, the raw value there, and the union tag chosen there (or None).

    ``shown`` is False for index 0 of a list that the spec gave as its one object.
    """

    segment: str | int
    value: Any
    tag: str | None
    shown: bool


def is_tag(loc: tuple, i: int, node: Any) -> bool:
    """Whether ``loc[i]`` is a union tag pydantic inserted (a component name).

    It ends the path when a component's config class as a whole refused the value
    (a tracker whose package is missing); then the component must name itself.
    """
    if i >= len(loc) or not isinstance(node, dict) or not isinstance(loc[i], str) or loc[i] in node:
        return False
    if i == len(loc) - 1:
        return node.get("type") == loc[i]
    return node.get("type", loc[i]) == loc[i]


def walk(loc: tuple, raw: Any) -> Iterator[Step]:
    """The steps of ``loc`` through the raw spec ``raw``, skipping the union tags."""
    node, i = raw, 1 if is_tag(loc, 0, raw) else 0
    while i < len(loc):
        seg, shown = loc[i], True
        if isinstance(seg, int) and isinstance(node, dict) and seg == 0:
            shown = False  # one object where a list is accepted stands for a list of one
        elif isinstance(seg, int):
            node = node[seg] if isinstance(node, list) and 0 <= seg < len(node) else None
        else:
            node = node.get(seg) if isinstance(node, dict) else None
        i += 1
        tag = loc[i] if is_tag(loc, i, node) else None
        i += tag is not None
        yield Step(seg, node, tag, shown)


def error_path(loc: tuple, raw: Any) -> str:
    """Format a pydantic location as ``model.encoder.hidden[1]``, without union tags.

    A key that is empty or holds control characters is quoted, so that the message
    stays one line per problem.
    """
    text = ""
    for step in walk(loc, raw):
        seg = step.segment
        if not step.shown:
            continue
        if isinstance(seg, str) and not (seg and seg.isprintable()):
            seg = repr(seg)
        text += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if text else str(seg))
    return text
