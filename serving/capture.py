"""Replica-side capture: every request becomes a record, sent to the platform in batches.

:class:`CaptureBuffer` never slows the request path: :meth:`add` appends to a bounded
in-memory queue (sampling first), and a background task posts batches every
``interval_s`` or ``batch`` records. When the platform is slow or down, records wait in the
queue; when the queue is full, the oldest records are dropped and counted, and the count
travels with the next batch. A 401 is a token the platform no longer takes (it was
restarted with a new one, which :meth:`configure` brings): the records wait like for a
down platform. Any other 4xx refuses them for good. :meth:`close` sends what is left
(graceful shutdown).

Where the platform is. The replica's configuration names the capture URL of the platform
that deployed it, but the platform may move (restarted on another address or port) while
the replicas run on. The platform publishes its capture URL in Ray's KV store
(:func:`publish_sink`); when a send fails for want of a platform, the buffer reads the
published URL (:func:`published_sink`, at most every :data:`RESOLVE_S` seconds, in a thread)
and sends there from then on: captures keep arriving without a redeploy.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

from loopml.capture_wire import MAX_BATCH
from loopml.serving.admission import KV_NAMESPACE
from loopml.serving.responses import dumps_json

log = logging.getLogger(__name__)

SINK_KV_KEY = b"capture-url"
RESOLVE_S = 2.0


def publish_sink(url: str) -> None:
    """Store the platform's capture URL in Ray's KV store; the caller is a connected Ray driver."""
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(SINK_KV_KEY, url.encode(), overwrite=True, namespace=KV_NAMESPACE)


def published_sink() -> str | None:
    """The capture URL :func:`publish_sink` stored (``None`` when none); blocking, for a thread."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(SINK_KV_KEY, namespace=KV_NAMESPACE)
    return None if raw is None else raw.decode()


class CaptureBuffer:
    """Bounded, sampled, batched capture to ``url`` with ``token`` (``POST /internal/capture``).

    Records are :class:`~loopml.capture_wire.CaptureRecord`'s JSON (``capture_record`` in
    :mod:`loopml.serving.deployment` writes them); a batch is never larger than the platform
    takes (:data:`~loopml.capture_wire.MAX_BATCH`).
    """

    def __init__(self, url: str, token: str, *, sample: float = 1.0, max_records: int = 10_000,
                 batch: int = 500, interval_s: float = 1.0, timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 resolve: Callable[[], str | None] | None = None, resolve_s: float = RESOLVE_S) -> None:
        """``resolve`` (blocking) says where the platform is now, asked after a failed send
        (see the module docstring); ``None``: ``url`` only."""
        self.url, self.sample, self.batch, self.interval_s = url, sample, min(batch, MAX_BATCH), interval_s
        self.queue: deque[dict[str, Any]] = deque()
        self.max_records = max_records
        self.dropped = 0  # dropped since the last batch the platform accepted
        self.dropped_total = 0
        self.sent_total = 0
        self._headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
        self._timeout = timeout_s
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._resolve, self._resolve_s = resolve, resolve_s
        self._resolved_at = float("-inf")

    def add(self, record: dict[str, Any]) -> None:
        """Queue ``record`` (subject to sampling); cheap and never blocking."""
        if self.sample < 1.0 and random.random() >= self.sample:
            return
        if len(self.queue) >= self.max_records:
            self.queue.popleft()
            self.dropped += 1
            self.dropped_total += 1
        self.queue.append(record)
        if self._task is None:
            self._start()
        elif len(self.queue) >= self.batch and self._wake is not None:
            self._wake.set()

    def _start(self) -> None:
        self._wake = asyncio.Event()
        self._http = httpx.AsyncClient(timeout=self._timeout, transport=self._transport)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loopml-capture")

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            while self.queue and await self._send_one():
                pass

    async def _send_one(self) -> bool:
        """Post up to ``batch`` records; on failure put them back (front) and return False."""
        records = [self.queue.popleft() for _ in range(min(self.batch, len(self.queue)))]
        body = dumps_json({"records": records, "dropped": self.dropped})
        try:
            answer = await self._http.post(self.url, content=body, headers=self._headers)
        except asyncio.CancelledError:  # shutting down mid-send: the records stay queued for close()
            self.queue.extendleft(reversed(records))
            raise
        except httpx.HTTPError as exc:
            log.info("capture sink unavailable (%s); %d records wait", type(exc).__name__, len(self.queue) + len(records))
            answer = None
        if answer is None or answer.status_code in (404, 502, 503):  # no platform there (any more)
            await self._find_sink()
        if answer is not None and answer.status_code == 202:
            self.sent_total += len(records)
            self.dropped = 0
            return True
        if answer is not None and 400 <= answer.status_code < 500 and answer.status_code != 401:  # never retried
            log.warning("capture refused (%s): %s", answer.status_code, answer.text[:200])
            self.dropped_total += len(records)
            return True
        room = self.max_records - len(self.queue)
        keep = records[-room:] if room > 0 else []
        lost = len(records) - len(keep)
        self.dropped += lost
        self.dropped_total += lost
        self.queue.extendleft(reversed(keep))
        return False

    async def _find_sink(self) -> None:
        """Take the published capture URL, when it moved (at most every ``resolve_s`` seconds)."""
        loop = asyncio.get_running_loop()
        if self._resolve is None or loop.time() - self._resolved_at < self._resolve_s:
            return
        self._resolved_at = loop.time()
        try:
            found = await asyncio.to_thread(self._resolve)
        except Exception as exc:  # noqa: BLE001 - keep the sink we have
            log.info("capture: could not read the platform's published address (%s)", exc)
            return
        if found and found != self.url:
            log.info("capture: the platform moved to %s", found)
            self.url = found

    def configure(self, url: str, token: str, sample: float) -> None:
        """Take a new sink or sampling rate (the endpoint was reconfigured)."""
        self.url, self.sample = url, sample
        self._headers["Authorization"] = f"Bearer {token}"

    async def close(self, deadline_s: float = 5.0) -> None:
        """Stop the background task and send what is queued, trying for ``deadline_s``."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._http is None:
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while self.queue and loop.time() < end:
            if not await self._send_one():
                await asyncio.sleep(0.2)
        if self.queue:
            log.warning("capture: %d records could not be sent before shutdown", len(self.queue))
        await self._http.aclose()
