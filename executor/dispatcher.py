"""The dispatcher: a detached Ray actor that owns every running attempt.

Why an actor: Ray tasks die with their owner. Owned by this detached actor, attempts
keep running while the platform service restarts; the actor keeps what it learnt about
each attempt (state, progress, log, output) until the platform has stored it and
acknowledged it, so nothing is lost in between. The platform reads changes with the
long-poll :meth:`Dispatcher.updates`.

Only the runner that owns an attempt may report on it: :meth:`Dispatcher.submit` makes a
secret per attempt and hands it to that runner alone (its kernel, sandboxed, never sees it);
a report without it is ignored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
import secrets
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import TaskCancelledError

from loopml.executor.attempts import AttemptOptions, AttemptRecord, AttemptReport, AttemptSpec, Updates, key

log = logging.getLogger(__name__)

NAME = "loopml-dispatcher"
NAMESPACE = "loopml"
FORCE_CANCEL_AFTER_S = 2.0
TICK_S = 0.5
MAX_LOG_CHARS = 2_000_000


def _runner():
    """:mod:`loopml.executor.runner` (papermill, kernels: ~45 MiB), imported in the actor when it
    first needs it, not in the driver that creates the actor (the head's node supervisor)."""
    from loopml.executor import runner

    return runner


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _amount(name: str, value: float) -> str:
    return f"{value / 2**20:.0f} MiB" if name == "memory" else f"{value:g}"


def describe_wait(request: dict[str, float], nodes: list[dict[str, Any]], available: dict[str, float]) -> str:
    """Why a task asking for ``request`` (Ray resource names) has not started yet."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    wanted = ", ".join(f"{k} {_amount(k, v)}" for k, v in sorted(request.items()) if v)
    if not any(all(res.get(k, 0) >= v for k, v in request.items()) for res in alive):
        biggest = ", ".join(
            f"{k} {_amount(k, max((r.get(k, 0) for r in alive), default=0))}" for k in sorted(request) if request[k]
        )
        return (
            f"no node of the Ray cluster offers {wanted} (largest offer: {biggest}); "
            "the job waits until such a node joins: lower the request or cancel the job"
        )
    free = ", ".join(f"{k} {_amount(k, available.get(k, 0))}" for k in sorted(request) if request[k])
    return f"waiting for free resources: needs {wanted}, free now {free}"


def changes_since(record: AttemptRecord, since: int) -> AttemptRecord:
    """``record`` without its (large) log and output when they did not change after ``since``."""
    unchanged = {}
    if record.log_seq <= since:
        unchanged["log"] = None
    if record.output_seq <= since:
        unchanged["output"] = None
    return record.model_copy(update=unchanged)


@dataclass
class _Attempt:
    """The dispatcher's state of one attempt: its record, and what never leaves the actor."""

    record: AttemptRecord
    secret: str = field(repr=False)  # the runner's proof that it owns the attempt
    request: dict[str, float]  # by Ray resource name, to explain why it waits
    timeout_s: float | None = None
    ref: ray.ObjectRef | None = None  # the runner's task, until it ends
    intent: str | None = None  # "cancelled" | "timeout" once the dispatcher stops it


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1000)
class Dispatcher:
    """Runs attempts as Ray tasks and records what happens to them."""

    def __init__(self, kernel_name: str, prewarm: bool, isolation: str = "bwrap",
                 hide: tuple[str, ...] = ()) -> None:
        self.attempts: dict[str, _Attempt] = {}
        self.seq = 0
        self.changed = asyncio.Event()
        self.me = ray.get_runtime_context().current_actor
        self._ticker = asyncio.get_event_loop().create_task(self._tick())
        if prewarm:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            for _ in range(max(1, min(cpus, 4))):
                _runner().warm_up.remote(kernel_name, isolation, hide)

    def _touch(self, attempt: _Attempt, **changes: Any) -> None:
        """Apply ``changes`` (record fields, and ``log_append``) under a new sequence number."""
        self.seq += 1
        record = attempt.record
        log_append = changes.pop("log_append", None)
        if log_append:
            record.log = (record.log + log_append)[-MAX_LOG_CHARS:]
            record.log_seq = self.seq
        if changes.get("output"):
            record.output_seq = self.seq
        for name, value in changes.items():
            setattr(record, name, value)
        record.seq = self.seq
        self.changed.set()

    async def submit(self, spec: AttemptSpec, options: AttemptOptions, timeout_s: float | None) -> None:
        """Start one attempt (idempotent for the same job id and attempt)."""
        name = spec.key
        if name in self.attempts:
            return
        attempt = _Attempt(AttemptRecord(job_id=spec.job_id, attempt=spec.attempt), secrets.token_hex(16),
                           options.request(), timeout_s)
        self.attempts[name] = attempt
        attempt.ref = _runner().run_attempt.options(name=f"loopml-job:{name}", **options.ray_options()).remote(
            spec, self.me, attempt.secret)
        self._touch(attempt)
        asyncio.get_event_loop().create_task(self._watch(attempt, attempt.ref))

    def report(self, job_id: str, attempt: int, report: AttemptReport, secret: str | None = None) -> None:
        """Called by the runner while it works; ignored unless ``secret`` is the attempt's."""
        name = key(job_id, attempt)
        held = self.attempts.get(name)
        if held is None or not isinstance(secret, str) or not hmac.compare_digest(secret.encode(), held.secret.encode()):
            log.warning("ignored a report on attempt %s that did not come from its runner", name)
            return
        if not isinstance(report, AttemptReport):
            log.warning("ignored a report on attempt %s that is not an AttemptReport", name)
            return
        if held.record.finished:
            return
        changes = report.changes()
        if report.state == "running":
            changes.update(started_at=_now(), message=None)
        self._touch(held, **changes)

    async def _watch(self, attempt: _Attempt, ref: ray.ObjectRef) -> None:
        try:
            changes = (await ref).changes()
        except TaskCancelledError:
            changes = {"state": attempt.intent or "cancelled"}
        except Exception as exc:  # the runner or its worker/node died, or the runner itself broke
            changes = {"state": attempt.intent or "lost", "message": _describe_crash(exc)}
        if attempt.intent is not None and changes.get("state") != "succeeded":
            changes["state"] = attempt.intent
        changes.setdefault("message", None)
        attempt.ref = None
        self._touch(attempt, finished_at=_now(), **changes)

    async def cancel(self, job_id: str, attempt: int, reason: str = "cancelled") -> bool:
        """Stop an attempt; ``reason`` is ``cancelled`` or ``timeout``. False if nothing runs."""
        held = self.attempts.get(key(job_id, attempt))
        if held is None or held.ref is None:
            return False
        held.intent = reason
        ray.cancel(held.ref, force=False)
        asyncio.get_event_loop().create_task(self._force_cancel(held, held.ref))
        return True

    async def _force_cancel(self, attempt: _Attempt, ref: ray.ObjectRef) -> None:
        await asyncio.sleep(FORCE_CANCEL_AFTER_S)
        if attempt.ref is not None:
            log.warning("attempt %s ignored the interrupt; killing its worker", attempt.record.key)
            ray.cancel(ref, force=True)

    async def updates(self, since: int, wait_s: float = 5.0) -> Updates:
        """Records changed after sequence number ``since``; waits up to ``wait_s`` for one."""
        if self.seq <= since:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), wait_s)
            except asyncio.TimeoutError:
                pass
        changed = [changes_since(a.record, since) for a in self.attempts.values() if a.record.seq > since]
        return Updates(seq=self.seq, records=changed)

    def known(self) -> list[str]:
        """Keys of every attempt this dispatcher holds."""
        return list(self.attempts)

    def ack(self, keys: list[str]) -> None:
        """The platform stored these finished attempts: forget them."""
        for name in keys:
            held = self.attempts.get(name)
            if held is not None and held.record.finished:
                del self.attempts[name]

    async def _tick(self) -> None:
        """Enforce timeouts and explain why pending attempts wait."""
        last_explained = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            try:
                now = time.time()
                for attempt in list(self.attempts.values()):
                    record, limit = attempt.record, attempt.timeout_s
                    if record.state == "running" and limit and attempt.intent is None:
                        if now - record.started_at.timestamp() > limit:
                            await self.cancel(record.job_id, record.attempt, "timeout")
                pending = [a for a in self.attempts.values() if a.record.state == "pending"]
                if pending and now - last_explained > 2.0:
                    last_explained = now
                    nodes, available = ray.nodes(), ray.available_resources()
                    for attempt in pending:
                        message = describe_wait(attempt.request, nodes, available)
                        if attempt.record.message != message:
                            self._touch(attempt, message=message)
            except Exception:
                log.exception("dispatcher tick failed")


def _describe_crash(exc: Exception) -> str:
    name = type(exc).__name__
    if name in ("WorkerCrashedError", "NodeDiedError", "OwnerDiedError", "ActorDiedError", "LocalRayletDiedError"):
        return f"the runner's worker or node died ({name})"
    cause = getattr(exc, "cause", None)
    return f"the runner failed: {type(cause).__name__ if cause else name}: {cause or exc}"[:2000]


def find_dispatcher():
    """The running dispatcher's handle, or ``None``."""
    try:
        return ray.get_actor(NAME, namespace=NAMESPACE)
    except ValueError:
        return None


def ensure_dispatcher(dashboard_url: str, *, kernel_name: str = "python3", prewarm: bool = True,
                      isolation: str = "bwrap", hide: tuple[str, ...] = (), timeout_s: float = 90.0):
    """The running dispatcher, started as a long-lived Ray job if the cluster has none yet
    (a head that ``loopml up`` starts has one from the start: :mod:`loopml.launcher.ray_start`).

    Why a Ray job rather than an actor created from the platform: tasks reuse worker
    processes (and their warm kernels) only while the job that created the dispatcher is
    alive. A Ray job outlives any platform restart; the platform process does not.
    """
    handle = find_dispatcher()
    if handle is not None:
        return handle
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(dashboard_url)
    args = [sys.executable, "-m", "loopml.executor.dispatcher", "--kernel-name", kernel_name,
            "--isolation", isolation, *(arg for path in hide for arg in ("--hide", path))]
    if not prewarm:
        args.append("--no-prewarm")
    submission_id = f"loopml-dispatcher-{int(time.time())}"
    client.submit_job(entrypoint=shlex.join(args), submission_id=submission_id, entrypoint_num_cpus=0)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        handle = find_dispatcher()
        if handle is not None:
            return handle
        status = client.get_job_status(submission_id)
        if status.is_terminal():
            logs = client.get_job_logs(submission_id)[-2000:]
            raise RuntimeError(f"the dispatcher job {submission_id} ended ({status}): {logs}")
        time.sleep(0.2)
    raise TimeoutError(f"the dispatcher job {submission_id} did not start within {timeout_s:g} s")


def start_dispatcher(kernel_name: str = "python3", prewarm: bool = True, isolation: str = "bwrap",
                     hide: tuple[str, ...] | list[str] = ()):
    """Create the dispatcher (detached, named) from this driver, or find it; once it answers,
    its handle. Its attempts' workers live as long as this driver's Ray job."""
    handle = Dispatcher.options(name=NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote(
        kernel_name, prewarm, isolation, tuple(hide))
    ray.get(handle.known.remote())
    return handle


def main(argv: list[str] | None = None) -> None:
    """Entry point of the dispatcher's Ray job: create the actor, then keep the job alive."""
    import argparse

    parser = argparse.ArgumentParser(description="loopml job dispatcher (run as a Ray job)")
    parser.add_argument("--kernel-name", default="python3")
    parser.add_argument("--no-prewarm", action="store_true")
    parser.add_argument("--isolation", choices=("bwrap", "off"), default="bwrap")
    parser.add_argument("--hide", action="append", default=[], help="a path job kernels must not see")
    options = parser.parse_args(argv)
    ray.init(namespace=NAMESPACE, log_to_driver=False)
    start_dispatcher(options.kernel_name, not options.no_prewarm, options.isolation, options.hide)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
