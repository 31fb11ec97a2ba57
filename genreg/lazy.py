"""Exports of a package that are imported on first use, so that importing the package costs nothing.

``genreg`` and ``genreg.data`` name their public objects here rather than importing
them: ``genreg --help`` then answers without importing torch (PEP 562 module
``__getattr__``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for the names ``where`` maps to their modules; any
    other name that is a module of the package (``genreg.data``) is imported when first asked for."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's own name
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        if importlib.util.find_spec(f"{package}.{name}") is not None:  # a subpackage or module: genreg.data, ...
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(where)

    return __getattr__, __dir__
