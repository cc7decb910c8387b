"""Imports every slice's ORM module so ``Base.metadata`` knows the whole schema."""

from __future__ import annotations


def load_all_tables() -> None:
    import loopml.executor.orm  # noqa: F401
    import loopml.executor.pipelines.orm  # noqa: F401
    import loopml.monitor.orm  # noqa: F401
    import loopml.projects  # noqa: F401
    import loopml.registry.orm  # noqa: F401
    import loopml.serving.orm  # noqa: F401
