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
  (:data:`DASHBOARD_MODULES`: the Jobs API, the state API, Serve's REST API, nodes and
  events); metrics, training, data, task-timeline and report modules are left out.
"""

from __future__ import annotations

import sys
import types

# The dashboard modules the head loads: every head module (in the dashboard's own process)
# and the subprocess modules loopml's calls reach: JobSubmissionClient, /api/v0/* (nodes,
# actors), /api/serve/applications/ (`down`), and the node and event feeds they read.
DASHBOARD_MODULES = ("UsageStatsHead", "PlatformEventsHead", "JobHead", "StateHead", "ServeHead", "NodeHead",
                     "EventHead")


def main() -> None:
    """Run ``ray start`` with the arguments given: a lean head, or a worker node whose
    cluster check passes."""
    from ray.scripts import scripts

    args = sys.argv[1:]
    if "--head" in args:
        _lean_head(scripts)
    else:
        constants = types.ModuleType(scripts.ray_constants.__name__)
        constants.__dict__.update(vars(scripts.ray_constants))
        constants.ENABLE_RAY_CLUSTER = True
        scripts.ray_constants = constants
    sys.argv = ["ray", "start", *args]
    scripts.main()


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
