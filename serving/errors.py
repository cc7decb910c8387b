"""Errors of model endpoints, under the platform's one hierarchy (:mod:`loopml.errors`)."""

from __future__ import annotations

from loopml.errors import InvalidInput


class RequestError(InvalidInput):
    """A scoring request the endpoint refuses before the model sees it.

    Unlike the rest of the hierarchy, whose HTTP status is fixed per class, a request can
    be refused for reasons that need different statuses (400 malformed, 413 too large,
    415 not JSON, 422 does not match the model's signature). ``status`` carries it; it is
    kept in ``details`` so it appears in :meth:`to_json` and survives pickling.
    ``reason`` is a stable word per case (``missing_column``, ``too_large``…).
    """

    def __init__(self, message: str, *, status: int = 422, reason: str | None = None, **details) -> None:
        super().__init__(message, reason=reason, status=status, **details)

    @property
    def status(self) -> int:
        return self.details["status"]
