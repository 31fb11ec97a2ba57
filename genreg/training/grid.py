"""A sweep's grid: the ``--grid KEY=V1,V2,...`` options parsed into axes, and the folder name of each point.

Each run folder of a sweep is named by its settings (``lr=1e-3,latent_dim=2``), short enough for any file
system and safe on all of them; the keys a grid varies must name fields of the spec.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from genreg.errors import SweepError
from genreg.plugin.registry import closest
from genreg.spec.builder import builder_for
from genreg.spec.overrides import one_item

_UNSAFE = re.compile(r"[^A-Za-z0-9._+\-\[\],]+")  # what a folder name may not hold on some file system
_MAX_NAME = 200  # bytes: file systems refuse names over 255


@dataclass(frozen=True)
class Axis:
    """One ``--grid KEY=V1,V2,...``: a spec key and its values, as given on the command line."""

    key: str
    values: tuple[str, ...]


def parse_grid(items: Sequence[str]) -> list[Axis]:
    """The ``--grid`` options as axes; a missing value, a repeated value or a repeated key is refused."""
    axes: list[Axis] = []
    for item in items:
        key, sep, text = item.partition("=")
        example = "e.g. --grid train.lr=1e-3,3e-4"
        if not sep or not key or not text.strip():
            raise SweepError(f"--grid {item!r}: expected KEY=VALUE1,VALUE2,... with at least one value, {example}.")
        values = split_values(text)
        if any(not value.strip() for value in values):
            raise SweepError(f"--grid {item!r}: an empty value between commas; {example}.")
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise SweepError(f"--grid {key}: the value {repeated[0]} is listed twice; give each value once.")
        if any(axis.key == key for axis in axes):
            raise SweepError(f"--grid {key} is given twice; list all its values in one --grid {key}=V1,V2,...")
        axes.append(Axis(key, tuple(values)))
    return axes


def split_values(text: str) -> list[str]:
    """``1e-3,[64,32],"a,b"`` -> ``1e-3``, ``[64,32]``, ``"a,b"``: commas inside brackets or quotes stay."""
    values, start, depth, quoted, escaped = [], 0, 0, False, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            escaped, quoted = char == "\\", char != '"'
        elif char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i])
            start = i + 1
    return [*values, text[start:]]


def labels(keys: Sequence[str]) -> list[str]:
    """Each key's shortest dotted tail that no other key ends with (``lr``; ``encoder.hidden`` beside
    ``decoder.hidden``), taking a word, not only a list index."""
    out = []
    for key in keys:
        parts = key.split(".")
        for size in range(1, len(parts) + 1):
            tail = parts[-size:]
            label = ".".join(tail)
            clash = any(other != key and (other == label or other.endswith("." + label)) for other in keys)
            if not all(part.isdecimal() for part in tail) and not clash:
                break
        out.append(label)
    return out


def folder_name(pairs: Sequence[tuple[str, str]]) -> str:
    """``lr=1e-3,latent_dim=2``: a value with characters a file system may refuse (``/``, quotes, spaces)
    keeps its safe ones plus a short hash of it, so that names stay unique."""
    parts = []
    for label, value in pairs:
        if _UNSAFE.search(value):
            value = _UNSAFE.sub("_", value).strip("_") + "-" + _digest(value)
        parts.append(f"{label}={value}")
    name = ",".join(parts)
    return name if len(name.encode()) <= _MAX_NAME else name[: _MAX_NAME - 9] + "-" + _digest(name)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def check_keys(axes: Sequence[Axis], spec: Any) -> None:
    """Every grid key must name a field the (validated) spec has, addressed as ``--set`` addresses it."""
    dump, keys = spec.model_dump(mode="json"), builder_for().one_or_more_keys
    for axis in axes:
        node, parts = dump, axis.key.split(".")
        for i, part in enumerate(parts):
            node = one_item(node, parts, i, keys)
            where = ".".join(parts[:i]) or "the spec"
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdecimal() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SweepError(f"--grid {axis.key}: {where} has no field '{part}'; {_fields(node, where, part)}")


def _fields(node: Any, where: str, part: str) -> str:
    """What can be addressed at ``where``, for the unknown-key message."""
    if isinstance(node, dict):
        hint = closest(part, list(node))
        return f"its fields are {', '.join(node)} (a --grid key is a spec field, as for --set).{hint}"
    if isinstance(node, list):
        return f"it is a list of {len(node)}: use an index below {len(node)}."
    return f"it is {json.dumps(node)}, not an object; set it with --set first, or vary {where} itself."
