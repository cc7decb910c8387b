"""One error hierarchy for the whole platform.

Every error a user can cause derives from :class:`LoopMLError`, carries a readable
``message`` (what was wrong and how to fix it) and a machine ``reason``, and maps to
exactly one HTTP status in :data:`HTTP_STATUS`. Errors are plain picklable objects so
they survive the trip out of a Ray worker.
"""

from __future__ import annotations

from typing import Any


class LoopMLError(Exception):
    """Root of every loopml error.

    ``message`` is shown to the user as is; ``reason`` is a stable machine-readable
    word; ``details`` holds structured fields (the offending parameter, a cell index…).
    """

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.details = details

    def __reduce__(self):  # keep the keyword-only fields through pickling
        return (_rebuild, (type(self), self.message, self.reason, self.details))

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "reason": self.reason, **self.details}


def _rebuild(cls, message, reason, details):
    return cls(message, reason=reason, **details)


class InvalidInput(LoopMLError):
    """The request is well formed but a value in it is wrong."""

    reason = "invalid"


class Unauthorized(LoopMLError):
    """No credentials, or credentials nobody issued."""

    reason = "unauthorized"


class Forbidden(LoopMLError):
    """The caller is known but may not touch this resource."""

    reason = "forbidden"


class NotFound(LoopMLError):
    reason = "not_found"


class Conflict(LoopMLError):
    """The resource exists already or is in a state that forbids the action."""

    reason = "conflict"


class TooMany(LoopMLError):
    """A quota of the caller's project is full (queued jobs…): wait or cancel, then retry."""

    reason = "too_many"


class Unavailable(LoopMLError):
    """A backing service (Ray, MLflow, the platform) cannot be reached right now."""

    reason = "unavailable"


HTTP_STATUS: dict[type[LoopMLError], int] = {
    InvalidInput: 422,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooMany: 429,
    Unavailable: 503,
    LoopMLError: 400,
}


def http_status(error: LoopMLError) -> int:
    """The HTTP status of ``error``: its own 4xx ``status`` detail if it carries one (request
    errors of endpoints distinguish 400/413/415/422), else the entry of its nearest class in
    :data:`HTTP_STATUS`."""
    own = error.details.get("status")
    if isinstance(own, int) and 400 <= own < 500:
        return own
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 400
