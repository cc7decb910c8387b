"""Lazy re-exports for the slices' ``__init__``: ``from loopml.executor import Job`` imports
``loopml.executor.models`` only then, and ``import loopml.executor.models`` never pulls in the
slice's service or routes (ray, mlflow, FastAPI). A slice writes::

    _EXPORTS = {"Job": ".models", "JobService": ".service"}
    __all__ = list(_EXPORTS)
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``, which exports each name
    of ``exports`` from the submodule it maps to (relative to ``package``)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
