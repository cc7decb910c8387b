"""Admission control in Ray Serve's HTTP proxy: a bounded number of requests per endpoint.

Serve's own bound (``max_queued_requests`` of the deployment) is checked only after the
proxy has done most of its work for a request, and on a small machine the proxy, not the
replica, is what saturates first: under overload, requests then wait seconds in the
proxy's event loop before Serve refuses them. :class:`AdmissionGate` runs first in the
proxy (Serve calls :func:`middlewares` at start through
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``, which the launcher sets on every Ray node it
starts): beyond ``limit`` requests in flight to one endpoint (``/<project>/<endpoint>``), a
request is answered at once with ``503``, ``Retry-After`` and a JSON ``message``, at a
fraction of the cost of forwarding it. It also turns Serve's own plain-text refusals (its
backpressure and unavailable answers) into the same JSON shape.

The module imports nothing of Serve: it is loaded into the proxy process.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

from starlette.middleware import Middleware

LIMIT_ENV = "LOOPML_SERVE_MAX_INFLIGHT"
DEFAULT_LIMIT = 8
RETRY_AFTER_S = 1
CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "loopml.serving.admission.middlewares"


def middlewares() -> list[Middleware]:
    """The proxy's middlewares: one :class:`AdmissionGate`, its limit from ``LOOPML_SERVE_MAX_INFLIGHT``."""
    return [Middleware(AdmissionGate, limit=int(os.environ.get(LIMIT_ENV, DEFAULT_LIMIT)))]


def endpoint_key(path: str) -> str | None:
    """``/<project>/<endpoint>`` of a request path; ``None`` for Serve's own routes (``/-/…``)."""
    parts = path.split("/", 3)
    if len(parts) < 3 or not parts[1] or not parts[2] or parts[1] == "-":
        return None
    return f"/{parts[1]}/{parts[2]}"


class AdmissionGate:
    """Pure ASGI middleware: at most ``limit`` requests in flight per endpoint key.

    The count lives in the proxy's one event loop, so it needs no lock.
    """

    def __init__(self, app, limit: int = DEFAULT_LIMIT, retry_after_s: int = RETRY_AFTER_S) -> None:
        if limit < 1:
            raise ValueError(f"{LIMIT_ENV} must be at least 1, not {limit}")
        self.app, self.limit, self.retry_after_s = app, limit, retry_after_s
        self.inflight: defaultdict[str, int] = defaultdict(int)

    async def __call__(self, scope, receive, send) -> None:
        key = endpoint_key(scope.get("path", "")) if scope["type"] == "http" else None
        if key is None:
            await self.app(scope, receive, send)
            return
        if self.inflight[key] >= self.limit:
            await refuse(send, f"endpoint {key} is at its limit of {self.limit} requests in flight: "
                               f"retry after {self.retry_after_s} s", self.retry_after_s)
            return
        self.inflight[key] += 1
        try:
            await self.app(scope, receive, JsonRefusals(send, self.retry_after_s))
        finally:
            self.inflight[key] -= 1
            if not self.inflight[key]:
                del self.inflight[key]


async def refuse(send, message: str, retry_after_s: int, status: int = 503) -> None:
    """Answer ``status`` with ``Retry-After`` and ``{"message", "reason": "overloaded"}``."""
    body = json.dumps({"message": message, "reason": "overloaded"}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(retry_after_s).encode())]})
    await send({"type": "http.response.body", "body": body})


class JsonRefusals:
    """An ASGI ``send`` that rewrites Serve's plain-text 503/429 answers as JSON refusals
    (with ``Retry-After``); every other message passes through unchanged."""

    def __init__(self, send, retry_after_s: int) -> None:
        self.send, self.retry_after_s = send, retry_after_s
        self.held: dict[str, Any] | None = None
        self.text = b""

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] in (429, 503) and _is_text(message):
            self.held = message
            return
        if self.held is None:
            await self.send(message)
            return
        self.text += message.get("body", b"")
        if not message.get("more_body", False):
            retry = _header(self.held, b"retry-after") or str(self.retry_after_s).encode()
            await refuse(self.send, self.text.decode(errors="replace").strip() or "the endpoint is unavailable",
                         int(retry) if retry.isdigit() else self.retry_after_s, self.held["status"])


def _header(message: dict[str, Any], name: bytes) -> bytes | None:
    return next((value for key, value in message.get("headers", []) if key.lower() == name), None)


def _is_text(message: dict[str, Any]) -> bool:
    return (_header(message, b"content-type") or b"").startswith(b"text/plain")
