"""Job backends: where attempts run. The service talks only to :class:`JobBackend`.

:class:`RayJobBackend` runs them on a Ray cluster through the detached dispatcher actor.
Another backend (a fake in unit tests, a batch system) implements the same five calls; the
``job_backend`` setting picks one by its entry point name (:func:`job_backend_class`).
"""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import entry_points
from typing import Any

from loopml import sandbox
from loopml.errors import InvalidInput, Unavailable
from loopml.executor.attempts import AttemptOptions, AttemptSpec, Updates
from loopml.settings import JOB_BACKEND_ENTRY_POINTS, Settings, unknown_job_backend

log = logging.getLogger(__name__)


class JobBackend:
    """Runs attempts and reports what happens to them.

    :meth:`updates` answers :class:`~loopml.executor.attempts.Updates`: the
    :class:`~loopml.executor.attempts.AttemptRecord` of each attempt changed since ``since``
    (``log`` and ``output`` left ``None`` when they did not change). Records of finished
    attempts come back until :meth:`ack` is called with their keys (``job_id:attempt``,
    :func:`~loopml.executor.attempts.key`).

    A backend is chosen by the ``job_backend`` setting: the name of an entry point of the
    ``loopml.job_backends`` group, built with :meth:`from_settings`.
    """

    @classmethod
    def from_settings(cls, settings: Settings) -> JobBackend:
        """The backend the platform ``settings`` describe (a backend without options needs not override this)."""
        return cls()

    async def start(self) -> None:
        """Connect; called once before any other call."""

    async def submit(self, spec: AttemptSpec, options: AttemptOptions, timeout_s: float | None) -> None:
        """Start the attempt ``spec`` (idempotent for the same key); ``timeout_s`` limits its run time."""
        raise NotImplementedError

    async def updates(self, since: int, wait_s: float) -> Updates:
        """Records changed after sequence number ``since``; waits up to ``wait_s`` for one."""
        raise NotImplementedError

    async def cancel(self, job_id: str, attempt: int) -> bool:
        """Stop the attempt; False when it does not run (any more)."""
        raise NotImplementedError

    async def ack(self, keys: list[str]) -> None:
        """The platform stored these finished attempts: the backend may forget them."""
        raise NotImplementedError

    async def known(self) -> list[str]:
        """Keys (``job_id:attempt``) of every attempt the backend still holds."""
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        return {"ok": True}


def job_backend_class(name: str) -> type[JobBackend]:
    """The job backend class the entry point ``name`` of ``loopml.job_backends`` names.

    Raises :class:`InvalidInput` (``field="job_backend"``) listing the known names when none
    is called ``name``, or when it does not load to a :class:`JobBackend` subclass.
    """
    found = {point.name: point for point in entry_points(group=JOB_BACKEND_ENTRY_POINTS)}
    if name not in found:
        raise InvalidInput(unknown_job_backend(name), field="job_backend")
    try:
        cls = found[name].load()
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"job backend {name!r} ({found[name].value}) cannot be imported: {exc}",
                           field="job_backend") from None
    if not (isinstance(cls, type) and issubclass(cls, JobBackend)):
        raise InvalidInput(f"job backend {name!r} ({found[name].value}) is not a JobBackend class",
                           field="job_backend")
    return cls


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

    @classmethod
    def from_settings(cls, settings: Settings) -> RayJobBackend:
        """The Ray cluster ``ray_address`` (or the local head), with the job settings."""
        return cls(settings.ray_address, settings.dashboard_url, kernel_name=settings.kernel_name,
                   warm_kernels=settings.warm_kernels, isolation=settings.job_isolation,
                   hide=tuple(sandbox.hidden_paths(settings.home)))

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

    async def submit(self, spec: AttemptSpec, options: AttemptOptions, timeout_s: float | None) -> None:
        await self.dispatcher.submit.remote(spec, options, timeout_s)

    async def updates(self, since: int, wait_s: float) -> Updates:
        return await self.dispatcher.updates.remote(since, wait_s)

    async def cancel(self, job_id: str, attempt: int) -> bool:
        return await self.dispatcher.cancel.remote(job_id, attempt)

    async def ack(self, keys: list[str]) -> None:
        if keys:
            await self.dispatcher.ack.remote(keys)

    async def known(self) -> list[str]:
        return await self.dispatcher.known.remote()

    def status(self) -> dict[str, Any]:
        import ray

        try:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            return {"ok": True, "address": self.address, "nodes": len(nodes),
                    "resources": ray.cluster_resources(), "available": ray.available_resources()}
        except Exception as exc:
            return {"ok": False, "address": self.address, "error": str(exc)}
