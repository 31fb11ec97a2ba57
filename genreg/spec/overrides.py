"""Spec files and ``--set`` overrides: JSON read with errors that name the file, dotted keys into a spec.

A dotted key addresses objects by field and lists by index
(``model.losses.1.weight``); a field that takes one object or a list (see
:func:`~genreg.spec.parts.OneOrMore`) may also be addressed as its one object
when it holds a list of one (``model.conditioner.num_classes``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from genreg.errors import SpecError


def read_json(path: str | Path) -> Any:
    """Parse a JSON file, with errors that name the file and the position (:class:`SpecError`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path} is not a text (UTF-8) file; a spec is a JSON document.") from None
    try:
        return json.loads(text, object_pairs_hook=functools.partial(_unique_keys, path))
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    except RecursionError:
        raise SpecError(f"{path} nests lists or objects too deeply to be a spec.") from None


def _unique_keys(path: Path, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (JSON would silently keep the last)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise SpecError(
                f"{path}: the key {key!r} is given twice in one object; JSON keeps only the last, so give it once."
            )
        seen[key] = value
    return seen


def apply_overrides(raw: Any, overrides: Sequence[str], one_or_more: Collection[str] = ()) -> Any:
    """Apply ``key.path=value`` overrides (value parsed as JSON, else a string) to a copy of ``raw``.

    ``one_or_more`` names the fields whose list of one may be addressed as its item
    (the spec builder's ``one_or_more_keys``). Raises :class:`SpecError` for an
    override that is not ``KEY=VALUE`` or whose key does not lead through objects
    and lists, and for a spec that is not JSON.
    """
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
        _set_path(raw, key, value, one_or_more)
    return raw


def _set_path(raw: Any, key: str, value: Any, one_or_more: Collection[str]) -> None:
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        node = one_item(node, parts, i, one_or_more)
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


def one_item(node: Any, parts: Sequence[str], i: int, one_or_more: Collection[str]) -> Any:
    """Where part ``i`` of a dotted key looks in ``node``: the one item of a list of one under a ``one_or_more``
    field, when the part names a field rather than an index."""
    named = i > 0 and parts[i - 1] in one_or_more and not parts[i].isdecimal()
    return node[0] if named and isinstance(node, list) and len(node) == 1 else node


def dotted(value: Any, prefix: str = "", lists: bool = True) -> dict[str, Any]:
    """A spec as ``{dotted key: value}``: objects by field and lists by index (``model.losses.0.type``), or,
    with ``lists=False``, each list as one value (``model.losses``).

    An empty object or list is a value of its own, so two specs that differ only
    there still differ.
    """
    if (isinstance(value, dict) or (lists and isinstance(value, list))) and value:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        flat: dict[str, Any] = {}
        for key, item in items:
            flat.update(dotted(item, f"{prefix}.{key}" if prefix else str(key), lists))
        return flat
    return {prefix: value} if prefix else {}
