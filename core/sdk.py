"""The notebook SDK: what a notebook imports from ``loopml`` (light to import)."""

from __future__ import annotations

from typing import Any


def current_job():
    """The job this kernel runs (:class:`loopml.registry.JobContext`), or ``None``."""
    from loopml.registry import current_job as _current_job

    return _current_job()


def log_model(model, name: str, X_train, y_train=None, metrics: dict[str, float] | None = None, *,
              alias: str | None = None, **flavor_kwargs: Any):
    """Log, register and alias a model in one call; see :func:`loopml.registry.sdk.log_model`."""
    from loopml.registry import log_model as _log_model

    return _log_model(model, name, X_train, y_train, metrics, alias=alias, **flavor_kwargs)


def set_output(name: str, value: Any) -> None:
    """Publish a JSON ``value`` as the job's output ``name``; see :func:`loopml.executor.set_output`."""
    from loopml.executor import set_output as _set_output

    _set_output(name, value)


def outputs() -> dict[str, Any]:
    """The outputs this kernel has set with :func:`set_output`."""
    from loopml.executor import outputs as _outputs

    return _outputs()
