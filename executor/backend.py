"""Job backends: where attempts run. The service talks only to :class:`JobBackend`.

:class:`RayJobBackend` runs them on a Ray cluster through the detached dispatcher actor.
Another backend (a fake in unit tests, a batch system) implements the same five calls.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from loopml.errors import Unavailable

log = logging.getLogger(__name__)


class JobBackend:
    """Runs attempts and reports what happens to them.

    ``updates`` returns ``{"seq": int, "records": [record]}`` where a record is a dict with
    ``job_id, attempt, state (pending|running|succeeded|failed|cancelled|timeout|lost),
    message, progress, log, output, error, pid, node, started_at, finished_at``. Records of
    finished attempts come back until :meth:`ack` is called with their keys.
    """

    async def start(self) -> None:
        """Connect; called once before any other call."""

    async def submit(self, spec: dict[str, Any], options: dict[str, Any], timeout_s: float | None) -> None:
        raise NotImplementedError

    async def updates(self, since: int, wait_s: float) -> dict[str, Any]:
        raise NotImplementedError

    async def cancel(self, job_id: str, attempt: int) -> bool:
        raise NotImplementedError

    async def ack(self, keys: list[str]) -> None:
        raise NotImplementedError

    async def known(self) -> list[str]:
        """Keys (``job_id:attempt``) of every attempt the backend still holds."""
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        return {"ok": True}


class RayJobBackend(JobBackend):
    """Attempts as Ray tasks owned by the detached :class:`~loopml.executor.dispatcher.Dispatcher`."""

    def __init__(self, address: str | None, dashboard_url: str, *, kernel_name: str, warm_kernels: bool,
                 isolation: str = "bwrap", hide: tuple[str, ...] = ()) -> None:
        self.address = address
        self.dashboard_url = dashboard_url
        self.kernel_name = kernel_name
        self.warm_kernels = warm_kernels
        self.isolation = isolation  # job_isolation: how the dispatcher's warm kernels start
        self.hide = hide
        self.dispatcher = None

    async def start(self) -> None:
        await asyncio.to_thread(self._connect)

    def _connect(self) -> None:
        import ray

        from loopml.executor.dispatcher import ensure_dispatcher

        if not ray.is_initialized():
            try:
                ray.init(address=self.address or "auto", namespace="loopml", log_to_driver=False,
                         configure_logging=False)
            except Exception as exc:
                raise Unavailable(f"cannot connect to the Ray cluster at {self.address}: {exc}", component="ray") from None
        try:
            self.dispatcher = ensure_dispatcher(self.dashboard_url, kernel_name=self.kernel_name,
                                                prewarm=self.warm_kernels, isolation=self.isolation, hide=self.hide)
        except Exception as exc:
            raise Unavailable(f"cannot start the job dispatcher on the Ray cluster: {exc}", component="ray") from None

    async def reconnect(self) -> None:
        """Find (or recreate) the dispatcher after it died with the cluster."""
        await asyncio.to_thread(self._connect)

    async def submit(self, spec, options, timeout_s):
        await self.dispatcher.submit.remote(spec, options, timeout_s)

    async def updates(self, since, wait_s):
        return await self.dispatcher.updates.remote(since, wait_s)

    async def cancel(self, job_id, attempt):
        return await self.dispatcher.cancel.remote(job_id, attempt)

    async def ack(self, keys):
        if keys:
            await self.dispatcher.ack.remote(keys)

    async def known(self):
        return await self.dispatcher.known.remote()

    def status(self) -> dict[str, Any]:
        import ray

        try:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            return {"ok": True, "address": self.address, "nodes": len(nodes),
                    "resources": ray.cluster_resources(), "available": ray.available_resources()}
        except Exception as exc:
            return {"ok": False, "address": self.address, "error": str(exc)}
