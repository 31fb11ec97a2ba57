"""Spec files and ``--set`` overrides: JSON read with errors that name the file, dotted keys into a spec.

A dotted key addresses objects by field and lists by index
(``model.losses.1.weight``); a field that takes one object or a list (see
:func:`~genreg.spec.parts.OneOrMore`) may also be addressed as its one object
when it holds a list of one (``model.conditioner.num_classes``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from genreg.errors import GenregError, SpecError, file_kind

MAX_DEPTH = 100  # levels of lists and objects in any JSON genreg reads (a spec needs about 6)
MAX_JSON_CHARS = 8_000_000  # a spec file, or one record of a model file's metadata (a few kB in practice)
MAX_INT = 2**63 - 1  # every integer genreg reads fits in int64, as torch needs


class _RefusedError(ValueError):
    """JSON that parses but that genreg will not read (a key given twice); its message names the problem."""


class _HugeInt(str):
    """An integer literal beyond :data:`MAX_INT`, kept as its text until the walk that names its key."""


def parse_json(text: str, where: str, error: type[GenregError] = SpecError) -> Any:
    """Parse JSON ``text`` read from ``where`` (a file, a ``--set`` key, a model file's record) within bounds.

    Raises ``error`` naming ``where`` for text over :data:`MAX_JSON_CHARS` characters, lists
    or objects nested over :data:`MAX_DEPTH` levels, an integer beyond int64 (naming its key), or
    a key given twice in one object; :class:`json.JSONDecodeError` for text that is not JSON.
    """
    if len(text) > MAX_JSON_CHARS:
        raise error(f"{where} holds {len(text):,} characters of JSON; genreg reads at most {MAX_JSON_CHARS:,}.")
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_bounded_int)
    except RecursionError:
        problem = f"nests lists or objects too deeply (more than {MAX_DEPTH} levels)"
    except _RefusedError as exc:
        problem = str(exc)
    else:
        problem = _out_of_bounds(value)
        if not problem:
            return value
    raise error(f"{where}: {problem}.")


def _bounded_int(text: str) -> int | _HugeInt:
    """An integer literal as an int, or as a :class:`_HugeInt` beyond int64 (never over Python's digit limit)."""
    digits = text.lstrip("-")
    return _HugeInt(text) if len(digits) > 19 or int(digits) > MAX_INT else int(text)


def _out_of_bounds(value: Any) -> str:
    """What is wrong with a parsed value (nesting over :data:`MAX_DEPTH`, an integer beyond int64), or ``""``.

    Walks with a stack rather than recursion, so no value is too deep to be checked.
    """
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        node, at = stack.pop()
        if len(at) >= MAX_DEPTH:  # the top level is level 1
            return f"nests lists or objects too deeply (more than {MAX_DEPTH} levels)"
        if isinstance(node, _HugeInt):
            which = f"'{'.'.join(at)}' is an integer of" if at else "the integer has"
            return f"{which} {len(node.lstrip('-'))} digits; genreg reads integers up to 2**63 - 1 (19 digits)"
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend((item, (*at, str(key))) for key, item in items)
    return ""


def read_json(path: str | Path) -> Any:
    """Parse a JSON spec file, with errors that name the file and the position (:class:`SpecError`).

    The file is read within :func:`parse_json`'s bounds (size, depth, integers), so no file
    ends in a RecursionError, a MemoryError or an integer-conversion error; a path that is not a regular
    file (a directory, a FIFO, a device) is refused by its kind before it is opened.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind not in (None, "a regular file"):  # checked before opening: reading a FIFO or /dev/zero never ends
        raise SpecError(f"the spec file {path} is {kind}, not a regular file; give a JSON file such as spec.json.")
    try:
        with path.open(encoding="utf-8") as handle:
            text = handle.read(MAX_JSON_CHARS + 1)
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path} is not a text (UTF-8) file; a spec is a JSON document.") from None
    try:
        return parse_json(text, str(path))
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (JSON would silently keep the last)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _RefusedError(
                f"the key {key!r} is given twice in one object; JSON keeps only the last, so give it once"
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
        if key.count(".") >= MAX_DEPTH:
            raise SpecError(f"--set {key[:200]}...: a key has at most {MAX_DEPTH} parts.")
        try:
            value = parse_json(text, f"--set {key}")
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
