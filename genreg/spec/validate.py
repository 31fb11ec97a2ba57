"""Validating a spec whole, and building the components it names.

Every problem of a spec is reported at once, one line each (``path: message``),
in a :class:`~genreg.errors.SpecError`, before any data is loaded or any model built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from genreg.errors import SpecError
from genreg.plugin.registry import Registry
from genreg.spec.builder import SpecBuilder, builder_for, spec_model
from genreg.spec.overrides import apply_overrides, read_json
from genreg.spec.paths import error_path

MAX_PROBLEMS = 50  # listed in one error; a spec with more is summed up after these


def validate_spec(raw: Any, registry: Registry | None = None, source: str = "spec") -> Any:
    """Validate a whole spec (a dict); raise :class:`SpecError` listing every problem, named by ``source``."""
    builder = builder_for(registry)
    try:
        return builder.spec_model().model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, raw, source, builder)) from None


def validate_part(kind: str, raw: dict, registry: Registry | None = None) -> BaseModel:
    """Validate one component config (``{"type": ..., ...}``) of ``kind``; raises :class:`SpecError`."""
    builder = builder_for(registry)
    slot = builder.slot(kind)
    try:
        return TypeAdapter(slot).validate_python(raw)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, raw, f"{kind} spec", builder, root=slot)) from None


def build_part(kind: str, item: BaseModel | dict, registry: Registry | None = None, **context: Any) -> Any:
    """Build the component ``item`` names: its validated config, or a dict ``{"type": ...}`` validated here.

    ``context`` is what the kind's factory takes (see :mod:`genreg.plugin.protocols`).
    """
    registry = builder_for(registry).registry
    if isinstance(item, dict):
        item = validate_part(kind, item, registry)
    return registry.build(kind, item, **context)


def format_errors(
    exc: ValidationError, raw: Any, source: str, builder: SpecBuilder | None = None, root: Any = None
) -> str:
    """One line per problem: ``path: message``; an unknown field lists the fields allowed there."""
    lines = []
    errors = exc.errors(include_url=False)
    for err in errors[:MAX_PROBLEMS]:
        path = error_path(err["loc"], raw)
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "extra_forbidden":
            allowed = builder.fields_at(err["loc"], raw, root) if builder else []
            msg = "unknown field" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        lines.append(f"  {path or '(top level)'}: {msg}")
    count = len(errors)
    if count > MAX_PROBLEMS:
        lines.append(f"  ... and {count - MAX_PROBLEMS} more problems")
    return f"{source} is invalid ({count} problem{'s' if count > 1 else ''}):\n" + "\n".join(lines)


def load_spec(source: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Read (if a path), override and validate a spec; warn about loss-weight warm-ups longer than the run.

    Raises :class:`SpecError` for a file that is not JSON, a bad override or an invalid spec.
    """
    from genreg.model.losses import warn_long_warmups

    raw = read_json(source) if isinstance(source, str | Path) else source
    name = str(source) if isinstance(source, str | Path) else "spec"
    spec = validate_spec(apply_overrides(raw, overrides, builder_for().one_or_more_keys), source=name)
    warn_long_warmups(spec)
    return spec


def json_schema(registry: Registry | None = None) -> dict:
    """JSON Schema of the spec, including every installed plugin's components."""
    return spec_model(registry).model_json_schema()
