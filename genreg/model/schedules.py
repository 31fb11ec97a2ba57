"""Schedules: the registered ``schedule`` a spec names, built and checked, for a loss weight or the learning rate.

A schedule gives a factor after ``progress`` epochs (fractional within an epoch;
``inf`` asks for its value at the end of training, as evaluations do). A
learning-rate schedule is built with the run's ``epochs``; a loss weight's with
``epochs=None``, since the model outlives any one run.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from genreg.errors import GenregError, SpecError
from genreg.spec.validate import build_part


def build_schedule(config: BaseModel | dict, epochs: int | None, where: str, default_type: str | None = None) -> Any:
    """The schedule ``config`` names, built with ``epochs``; an object without ``type`` is ``default_type``.

    Raises :class:`SpecError` naming ``where`` (e.g. ``train.lr_schedule``) when the
    schedule cannot be built (a run-length schedule for a loss weight, a plugin's
    factory that fails) or has no ``factor(progress)``.
    """
    item = config if isinstance(config, BaseModel) or default_type is None else {"type": default_type, **config}
    try:
        schedule = build_part("schedule", item, epochs=epochs)
    except GenregError as exc:
        raise SpecError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a plugin schedule's factory failing (on epochs=None, say)
        raise SpecError(f"{where} cannot be built with epochs={epochs} ({type(exc).__name__}: {exc}).") from exc
    if not callable(getattr(schedule, "factor", None)):
        raise SpecError(
            f"{where}: schedule '{item['type'] if isinstance(item, dict) else item.type}' built "
            f"{type(schedule).__name__}, which has no factor(progress) method."
        )
    return schedule
