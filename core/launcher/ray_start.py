"""``ray start`` for the nodes ``up`` starts: ``python -m loopml.launcher.ray_start <ray start arguments>``.

A worker node that joins a loopback-only head. :mod:`loopml.launcher` runs every Ray node
it starts with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` so that Ray keeps ``127.0.0.1`` as
the node's address instead of replacing it with the machine's network address. That one
constant (``ray._private.ray_constants.ENABLE_RAY_CLUSTER``) also makes ``ray start
--address`` refuse to start a worker node ("Multi-node Ray clusters are not supported on
Windows and OSX"). Here ``ray start``'s own module sees a copy of the constants with
clusters enabled, so that check passes, while Ray's address resolution
(``ray._private.services``) and every process the node starts still read the environment
and keep the loopback address. ``tests/unit/test_launcher.py`` checks that Ray still reads
the constant the way this assumes.

The head (``--head``), without what the platform does not use (``bench/footprint.py``
measured both; ``ray start`` has no flag for either):

- no Ray client server (``ray://``; ~67 MiB): nothing of loopml connects through it;
- of the dashboard's module processes only those the platform and Ray's own clients call
  (:data:`DASHBOARD_MODULES`: the Jobs API, the state API, Serve's REST API and events);
  node, metrics, training, data, task-timeline and report modules are left out.

With ``--block`` (every node ``up`` starts), this process does not run ``ray start --block``
itself: that parent imports all of Ray only to wait on its children (~170 MiB PSS). It marks
itself a child subreaper, runs ``ray start`` without ``--block`` in a child (which starts the
node's processes and exits; they are re-parented to this process), and supervises them as
``--block`` would: SIGTERM stops the raylet first (it stops its workers), then the GCS, then
the others, each SIGKILLed after :data:`STOP_GRACE_S`; when one of them dies unexpectedly it
stops the rest and exits 1. ``--loopml-dispatcher=<json>`` (the head ``up`` starts) also makes it the
driver of the job runner's :class:`~loopml.executor.dispatcher.Dispatcher`: the Ray job whose
workers keep warm kernels lives as long as the head, without a Ray Jobs supervisor and a
driver process of its own (~200 MiB; ``bench/footprint.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import psutil

from loopml.launcher.ray_local import DISPATCHER_OPTION

# The dashboard modules the head loads: every head module (in the dashboard's own process)
# and the subprocess modules loopml's calls reach: JobSubmissionClient, /api/v0/* (nodes,
# actors), /api/serve/applications/ (`down`), and the event feed the dashboard agent posts
# to (/report_events). Not NodeHead (~29 MiB): its /nodes and /logical/actors serve the
# dashboard's web UI and TrainHead only; the state API reads nodes from the GCS.
DASHBOARD_MODULES = ("UsageStatsHead", "PlatformEventsHead", "JobHead", "StateHead", "ServeHead", "EventHead")


STOPPED = "loopml: the node stopped"  # the last line of a node's log after a clean stop
STOP_GRACE_S = 1.0  # per process, as Ray's own kill_all_processes
_PR_SET_CHILD_SUBREAPER = 36


def main() -> None:
    """Supervise a node (``--block``), or run ``ray start`` with the arguments given: a lean
    head, or a worker node whose cluster check passes."""
    args = sys.argv[1:]
    if "--block" in args:
        sys.exit(_supervise(args))
    from ray.scripts import scripts

    if "--head" in args:
        _lean_head(scripts)
    else:
        constants = types.ModuleType(scripts.ray_constants.__name__)
        constants.__dict__.update(vars(scripts.ray_constants))
        constants.ENABLE_RAY_CLUSTER = True
        scripts.ray_constants = constants
    sys.argv = ["ray", "start", *args]
    scripts.main()


def _supervise(args: list[str]) -> int:
    """Start the node in a child, adopt its processes and watch them; the exit code."""
    dispatcher = next((json.loads(a.removeprefix(DISPATCHER_OPTION)) for a in args if a.startswith(DISPATCHER_OPTION)),
                      None)
    start_args = [a for a in args if a != "--block" and not a.startswith(DISPATCHER_OPTION)]
    stopping: list[int] = []

    def on_signal() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, _frame: stopping.append(signum))

    on_signal()
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    code = subprocess.call([sys.executable, "-m", __spec__.name, *start_args])
    node = _children()
    if code != 0 or stopping:
        _stop(node)
        return code or 0
    print(f"loopml: supervising the node's processes {sorted(node)}", flush=True)
    if dispatcher is not None:
        _drive_dispatcher(dispatcher)
        on_signal()  # ray.init installs Ray's own SIGTERM handler, which dumps a trace and dies
    while not stopping:
        time.sleep(0.5)
        died = [pid for pid in _reap() if pid in node]
        if died:
            print(f"loopml: the node's {', '.join(node.pop(pid) for pid in died)} exited unexpectedly; "
                  "stopping the rest", flush=True)
            _stop(node)
            return 1
    _stop(node)
    print(STOPPED, flush=True)
    return 0


def _drive_dispatcher(options: dict) -> None:
    """Connect to the head as the driver of the job runner's Ray job and create its dispatcher."""
    import ray

    from loopml.executor.dispatcher import start_dispatcher

    os.chdir(options.pop("cwd"))  # Ray puts a driver's working directory on its workers' sys.path
    ray.init(address=options.pop("address"), namespace="loopml", log_to_driver=False, configure_logging=False)
    start_dispatcher(**options)
    print("loopml: the job dispatcher runs", flush=True)


def _children() -> dict[int, str]:
    """This process's children (the node's processes, once ``ray start`` exited): PID -> name."""
    found = {}
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            found[child.pid] = _name(child.cmdline())
    return found


def _name(words: list[str]) -> str:
    program = Path(words[0]).name if words else "?"
    script = next((Path(w).name for w in words[1:] if w.endswith(".py")), None)
    return f"{program} {script}" if script and program.startswith("python") else program


def _reap() -> list[int]:
    """PIDs of the children that exited since the last call."""
    ended = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append(pid)


def _stop(node: dict[int, str]) -> None:
    """Stop the node's processes the way ``ray start --block`` does (Ray's
    ``kill_all_processes``): the raylet first (it stops its workers), then the GCS, then the
    others; each gets SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`."""
    if "ray" in sys.modules:  # this process drives the dispatcher: disconnect before the raylet goes
        with contextlib.suppress(Exception):
            sys.modules["ray"].shutdown()
    rank = {"raylet": 0, "gcs_server": 1}
    for wave in ([p for p in node if rank.get(node[p]) == 0], [p for p in node if rank.get(node[p]) == 1],
                 [p for p in node if node[p] not in rank], list(_children())):
        for pid in wave:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while wave and time.monotonic() < deadline:
            time.sleep(0.02)
            _reap()
            wave = [p for p in wave if _alive(p)]
        for pid in wave:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    time.sleep(0.05)
    _reap()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _lean_head(scripts: types.ModuleType) -> None:
    from ray._private import ray_constants, services

    scripts.get_ray_client_dependency_error = lambda: "loopml starts no Ray client server"
    start_ray_process = services.start_ray_process

    def started(command, process_type, *args, **kwargs):
        if process_type == ray_constants.PROCESS_TYPE_DASHBOARD and not any(
                arg.startswith("--modules-to-load") for arg in command):
            command = [*command, f"--modules-to-load={','.join(DASHBOARD_MODULES)}"]
        return start_ray_process(command, process_type, *args, **kwargs)

    services.start_ray_process = started


if __name__ == "__main__":
    main()
