"""Background processes for :mod:`loopml.launcher`: start one in a session of its own with its
output in a log, wait for it to answer over HTTP, find it again by PID, stop it and all it
started. Nothing here knows about Ray, MLflow or the platform service."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
from pydantic import BaseModel, Field

from loopml.errors import Conflict, InvalidInput, Unavailable
from loopml.instance import MARKER, make_private_dir

logger = logging.getLogger(__name__)


class ProcessRecord(BaseModel):
    """One process started by ``up``: enough to find it again and to be sure it is the same."""

    name: str = Field(description="Component: ray, mlflow, platform or ray-worker-<port>.")
    pid: int
    pgid: int
    cmdline: list[str] = Field(description="Its argv; a restart of the component runs it again.")
    create_time: float = Field(description="psutil's create_time; guards against PID reuse.")
    log: str = Field(description="Log file of its stdout and stderr.")


# -- private files -------------------------------------------------------------------------


def log_tail(path: Path, lines: int = 20) -> list[str]:
    """The last non-empty ``lines`` of a log file (empty if it cannot be read)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 16384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


# -- starting and waiting ------------------------------------------------------------------


def spawn(home: Path, name: str, argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, ProcessRecord]:
    """Start ``argv`` in a new session, output to ``<home>/logs/<name>.log`` (the previous
    run's log is kept as ``<name>.log.1``)."""
    log = make_private_dir(home / "logs") / f"{name}.log"
    if log.exists():
        log.replace(log.with_name(log.name + ".1"))
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=home, start_new_session=True)
    logger.info("started %s (pid %d): %s", name, proc.pid, " ".join(argv))
    record = ProcessRecord(name=name, pid=proc.pid, pgid=os.getpgid(proc.pid), cmdline=argv,
                           create_time=psutil.Process(proc.pid).create_time(), log=str(log))
    return proc, record


def wait_http(
    url: str,
    timeout: float,
    *,
    proc: subprocess.Popen | None = None,
    headers: dict[str, str] | None = None,
    ready: Callable[[httpx.Response], bool] | None = None,
) -> httpx.Response:
    """Poll ``GET url`` until it answers 200 (and ``ready(response)`` holds, when given).

    Returns that response. Raises :class:`Unavailable` when ``timeout`` seconds pass first
    or when ``proc`` (the process meant to answer) exits.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(headers=headers, timeout=5.0) as client:
        while True:
            if proc is not None and proc.poll() is not None:
                raise Unavailable(f"exited with code {proc.returncode} before {url} answered")
            try:
                response = client.get(url)
                if response.status_code == 200 and (ready is None or ready(response)):
                    return response
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if time.monotonic() >= deadline:
                raise Unavailable(f"did not answer {url} within {timeout:.0f} s (last: {last})")
            time.sleep(0.25)


@contextlib.contextmanager
def component_errors(label: str, record: ProcessRecord) -> Iterator[None]:
    """Turn a failed wait into one line naming the component, its last log line and the log."""
    try:
        yield
    except Unavailable as exc:
        tail = log_tail(Path(record.log))
        # The last line naming an error says more than a closing "startup failed".
        telling = [line for line in tail if "Error" in line or "Exception" in line] or tail
        last = f"; log: {telling[-1].strip()!r}" if telling else ""
        raise Unavailable(f"{label} {exc.message}{last}; see {record.log}", component=record.name,
                          log=record.log, log_tail=tail) from None


# -- finding and stopping ------------------------------------------------------------------


def live_process(record: ProcessRecord) -> psutil.Process | None:
    """The recorded process if it still runs and is the same one (not a reused PID)."""
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return proc


def stop_record(record: ProcessRecord, timeout: float) -> bool:
    """Stop a recorded process and its descendants (or its session's orphans); True if it ran."""
    proc = live_process(record)
    if proc is not None:
        logger.info("stopping %s (pid %d)", record.name, record.pid)
        _stop_tree(proc, timeout)
        return True
    for orphan in _session_orphans(record):
        logger.warning("stopping %s's orphan pid %d", record.name, orphan.pid)
        _stop_tree(orphan, timeout)
    return False


def _stop_tree(proc: psutil.Process, timeout: float) -> None:
    """SIGTERM ``proc``, give it ``timeout`` s to stop its own children, then end what is left.

    Descendants are collected before signalling: once ``proc`` is gone they are re-parented
    and can no longer be found (Ray workers and Jupyter kernels run in sessions of their own).
    Survivors get SIGTERM once ``proc`` has exited, SIGKILL when the time is up.
    """
    try:
        descendants = proc.children(recursive=True)
    except psutil.NoSuchProcess:  # e.g. an orphan that ended with the one stopped before it
        return
    deadline = time.monotonic() + timeout
    _signal([proc], signal.SIGTERM)
    psutil.wait_procs([proc], timeout=timeout)
    survivors = [p for p in [proc, *descendants] if p.is_running()]
    _signal(survivors, signal.SIGTERM)
    _, survivors = psutil.wait_procs(survivors, timeout=max(1.0, deadline - time.monotonic()))
    if survivors:
        logger.warning("killing %s, still running after %.0f s", [p.pid for p in survivors], timeout)
        _signal(survivors, signal.SIGKILL)
        psutil.wait_procs(survivors, timeout=5)


def _signal(procs: list[psutil.Process], signum: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signum)  # psutil checks the PID still is this process


def _session_orphans(record: ProcessRecord) -> list[psutil.Process]:
    """Processes left in the session of a recorded process that died (e.g. killed -9).

    Only when the session leader's PID is free, so the session id cannot belong to another.
    """
    if psutil.pid_exists(record.pid):
        return []
    orphans = []
    for proc in psutil.process_iter(["create_time"]):
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(proc.pid) == record.pid and proc.info["create_time"] >= record.create_time:
                orphans.append(proc)
    return orphans




def stop_marked(value: str, timeout: float) -> list[int]:
    """Stop every process (and its descendants) whose environment has ``MARKER=value``: the
    hub's proxy, service, workspaces and kernels, found even when the hub died before
    stopping them (they are re-parented and may run in sessions of their own). Returns their
    PIDs."""
    marked = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.pid != os.getpid() and proc.environ().get(MARKER) == value:
                marked.append(proc)
    roots = [p for p in marked if not any(_is_ancestor(other, p) for other in marked if other is not p)]
    for proc in roots:
        logger.warning("stopping pid %d, left by the hub of %s", proc.pid, value)
        _stop_tree(proc, timeout)
    return [p.pid for p in marked]


def _is_ancestor(candidate: psutil.Process, proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return any(parent.pid == candidate.pid for parent in proc.parents())
    return False


# -- ports ---------------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive free ports (to give a second instance its own ports).

    Chosen below the kernel's ephemeral range: ports handed out by the OS meanwhile (Ray's
    workers take theirs that way) can then never land on a port we picked for later.
    """
    low = 20000
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    high = max(low + size + 1, ephemeral_low - size)
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(low, high)
        if not any(port_in_use(base + i) for i in range(size)):
            return base
    raise Unavailable(f"found no {size} consecutive free ports")


def check_ports(ports: dict[str, int]) -> None:
    """Refuse clashing or busy ports up front, naming them: Ray's own error is buried in its logs."""
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            raise InvalidInput(f"{name} and {seen[port]} would both use port {port}; change one of them")
        seen[port] = name
    busy = [f"{port} ({name})" for name, port in ports.items() if port_in_use(port)]
    if busy:
        raise Conflict(f"port(s) already in use: {', '.join(busy)}; stop what uses them or choose other ports")
