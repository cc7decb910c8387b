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

Keys before counts. A request to a keyed endpoint without its key (or with a wrong one) is
refused by the gate (401, the replica's own answer, :mod:`loopml.serving.keys`) before it
is counted, so whoever reaches the Serve port without the key cannot hold the endpoint's
slots. The gate knows only the key's hash. A refusal is decided on a table read after the
request arrived (a key just rotated passes at once): the gate re-reads it, at most every
:data:`RECHECK_S` seconds, one read shared by all waiting requests. An endpoint the gate has
no entry for (created in the last seconds) is left to its replicas, which check the key too.

Limits per endpoint. ``LOOPML_SERVE_MAX_INFLIGHT`` (the ``serve_max_inflight`` setting) is
the limit of an endpoint with one replica. The platform publishes each endpoint's own limit,
which grows with its replicas, and its key hash in Ray's KV store (:func:`publish_limits`); the gate reads
them every :data:`REFRESH_S` seconds, off the event loop, and keeps the last ones it read
when that fails. An endpoint it has no limit for gets the default.

The module imports nothing of Serve: it is loaded into the proxy process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, NamedTuple

from starlette.middleware import Middleware

from loopml.serving.keys import HEALTH_ROUTES, KEY_MESSAGE, KEY_REASON, key_matches

LIMIT_ENV = "LOOPML_SERVE_MAX_INFLIGHT"
DEFAULT_LIMIT = 8
RETRY_AFTER_S = 1
CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "loopml.serving.admission.middlewares"
KV_NAMESPACE = "loopml"
KV_KEY = b"admission-limits"
REFRESH_S = 2.0
RECHECK_S = 0.2
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # as the replica's (deployment.py)

# A child of Serve's logger: in the proxy its records go to Serve's proxy log, beside the refusals.
log = logging.getLogger(f"ray.serve.{__name__}")


def middlewares() -> list[Middleware]:
    """The proxy's middlewares: one :class:`AdmissionGate`, its default limit from
    ``LOOPML_SERVE_MAX_INFLIGHT``, the endpoints' own from Ray's KV store."""
    return [Middleware(AdmissionGate, limit=int(os.environ.get(LIMIT_ENV, DEFAULT_LIMIT)), limits=published_limits)]


class Admission(NamedTuple):
    """What the gate knows of one endpoint: its limit, and its key's hash (``None``: public)."""

    limit: int
    key_hash: str | None = None


def publish_limits(limits: dict[str, Admission]) -> None:
    """Store every endpoint's admission (``{"/<project>/<endpoint>": Admission}``) in Ray's KV
    store, for the gates of all proxies; the caller is a connected Ray driver."""
    from ray.experimental.internal_kv import _internal_kv_put

    table = {key: {"limit": value.limit, "key_hash": value.key_hash} for key, value in limits.items()}
    _internal_kv_put(KV_KEY, json.dumps(table, sort_keys=True), overwrite=True, namespace=KV_NAMESPACE)


def published_limits() -> dict[str, Admission]:
    """The table :func:`publish_limits` stored (``{}`` when none); blocking, for a thread."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(KV_KEY, namespace=KV_NAMESPACE)
    return {} if raw is None else {str(key): _admission(value) for key, value in json.loads(raw).items()}


def _admission(value: Any) -> Admission:
    if isinstance(value, int):  # published by a platform before key hashes: a limit only
        return Admission(value)
    return Admission(int(value["limit"]), value.get("key_hash") or None)


def endpoint_key(path: str) -> str | None:
    """``/<project>/<endpoint>`` of a request path; ``None`` for Serve's own routes (``/-/…``)."""
    parts = path.split("/", 3)
    if len(parts) < 3 or not parts[1] or not parts[2] or parts[1] == "-":
        return None
    return f"/{parts[1]}/{parts[2]}"


class AdmissionGate:
    """Pure ASGI middleware: at most ``limit`` requests in flight per endpoint key, none of
    them without the endpoint's key.

    ``limit`` applies to endpoints ``limits`` (a blocking call, run in a thread at most every
    ``refresh_s`` seconds, or every ``recheck_s`` for a request about to be refused its key)
    names no limit for. The counts live in the proxy's one event loop, so they need no lock.
    """

    def __init__(self, app, limit: int = DEFAULT_LIMIT, retry_after_s: int = RETRY_AFTER_S,
                 limits: Callable[[], dict[str, Admission]] | None = None, refresh_s: float = REFRESH_S,
                 recheck_s: float = RECHECK_S) -> None:
        if limit < 1:
            raise ValueError(f"{LIMIT_ENV} must be at least 1, not {limit}")
        self.app, self.limit, self.retry_after_s = app, limit, retry_after_s
        self.inflight: defaultdict[str, int] = defaultdict(int)
        self.limits: dict[str, Admission] = {}
        self._source, self._refresh_s, self._recheck_s = limits, refresh_s, recheck_s
        self._next_refresh = 0.0
        self._reading: asyncio.Future | None = None  # the read in flight
        self._read_at = float("-inf")  # when the read that gave ``limits`` began
        self._last_start = float("-inf")  # when the last read began

    async def __call__(self, scope, receive, send) -> None:
        key = endpoint_key(scope.get("path", "")) if scope["type"] == "http" else None
        if key is None:
            await self.app(scope, receive, send)
            return
        arrived = time.monotonic()
        self._refresh()
        if not self._keyed(scope, key) and not await self._keyed_after(scope, key, arrived):
            await refuse(send, KEY_MESSAGE, None, 401, KEY_REASON, request_id=_request_id(scope))
            return
        found = self.limits.get(key)
        limit = self.limit if found is None else found.limit
        if self.inflight[key] >= limit:
            await refuse(send, f"endpoint {key} is at its limit of {limit} requests in flight: "
                               f"retry after {self.retry_after_s} s", self.retry_after_s)
            return
        self.inflight[key] += 1
        try:
            await self.app(scope, receive, JsonRefusals(send, self.retry_after_s))
        finally:
            self.inflight[key] -= 1
            if not self.inflight[key]:
                del self.inflight[key]

    def _keyed(self, scope, key: str) -> bool:
        """Whether the request may reach the endpoint as far as its key goes (per ``limits``)."""
        found = self.limits.get(key)
        if found is None or found.key_hash is None or scope.get("path", "")[len(key):] in HEALTH_ROUTES:
            return True
        authorization = next((value for name, value in scope.get("headers", []) if name.lower() == b"authorization"),
                             b"")
        return key_matches(authorization.decode("latin-1"), found.key_hash)  # Starlette's decoding, as the replica

    async def _keyed_after(self, scope, key: str, arrived: float) -> bool:
        """:meth:`_keyed` on a table read that began after ``arrived`` (the last table read
        stays in force when reading fails)."""
        while self._source is not None and self._read_at < arrived:
            if self._reading is None:
                wait = self._last_start + self._recheck_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                self._read()
            try:
                await asyncio.shield(self._reading)
            except Exception:  # noqa: BLE001 - logged by _refreshed
                break
        return self._keyed(scope, key)

    def _refresh(self) -> None:
        """Read the table again in a thread when it is older than ``refresh_s``."""
        if self._source is not None and self._reading is None and time.monotonic() >= self._next_refresh:
            self._read()

    def _read(self) -> None:
        began = self._last_start = time.monotonic()
        self._reading = asyncio.get_running_loop().run_in_executor(None, self._source)
        self._reading.add_done_callback(lambda done: self._refreshed(began, done))

    def _refreshed(self, began: float, future: asyncio.Future | Future) -> None:
        self._reading = None
        self._next_refresh = time.monotonic() + self._refresh_s
        try:
            limits = future.result()
        except Exception as exc:  # noqa: BLE001 - the last table read stays in force
            log.warning("admission limits not refreshed: %s", exc)
            return
        if {k: v.limit for k, v in limits.items()} != {k: v.limit for k, v in self.limits.items()}:
            log.info("admission limits: %s", ", ".join(f"{k} {v.limit}" for k, v in sorted(limits.items())) or "none")
        self.limits, self._read_at = limits, began


async def refuse(send, message: str, retry_after_s: int | None, status: int = 503, reason: str = "overloaded", *,
                 request_id: str | None = None) -> None:
    """Answer ``status`` with ``{"message", "reason"}`` (and ``Retry-After``, ``x-request-id``
    unless ``None``)."""
    body = json.dumps({"message": message, "reason": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
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


def _request_id(scope) -> str:
    """The caller's ``x-request-id`` when the capture table could hold it, else a new one: what
    Serve's proxy puts on the answers it forwards, for the gate's own."""
    given = (_header(scope, b"x-request-id") or b"").decode("latin-1")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _header(message: dict[str, Any], name: bytes) -> bytes | None:
    return next((value for key, value in message.get("headers", []) if key.lower() == name), None)


def _is_text(message: dict[str, Any]) -> bool:
    return (_header(message, b"content-type") or b"").startswith(b"text/plain")
