"""A second Ray node on this machine, joined to the head ``loopml up`` started (tests, demos).

Public through :mod:`loopml.launcher`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loopml.errors import Unavailable
from loopml.instance import write_private
from loopml.launcher.processes import ProcessRecord, component_errors, live_process, spawn, stop_record
from loopml.launcher.ray_local import AUTH_TOKEN_PATH, short_temp_dir, start_env, wait_ray, worker_command
from loopml.launcher.run_state import put_record, ray_headers, read_state, remove_ray_temp_dir, write_state
from loopml.settings import load_settings

JOIN_TIMEOUT = 90.0  # seconds a node may take to join


@dataclass
class RayWorkerNode:
    """A Ray worker node started by :func:`start_ray_worker_node`; ``stop()`` ends it by PID.

    ``node_id`` is Ray's hex node id, the one ``ray.get_runtime_context().get_node_id()``
    gives inside a task on that node.
    """

    pid: int
    node_name: str
    node_id: str
    log: Path
    _record: ProcessRecord = field(repr=False)

    def stop(self, timeout: float = 30) -> None:
        """Stop the node and its descendants and remove its temp dir, like :func:`down`. Idempotent."""
        stop_record(self._record, timeout)
        remove_ray_temp_dir(self._record)

    def __enter__(self) -> RayWorkerNode:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_ray_worker_node(
    home: Path,
    *,
    base_port: int,
    num_cpus: int = 1,
    resources: Mapping[str, float] | None = None,
    memory_mb: int = 1024,
    object_store_mb: int = 256,
    node_ip: str = "127.0.0.1",
    run_under: Sequence[str] = (),
    timeout: float = JOIN_TIMEOUT,
) -> RayWorkerNode:
    """Join a worker node, on this machine, to the Ray head ``up`` started from data dir ``home``.

    The node has address ``node_ip`` (any of 127.0.0.0/8 is this machine's loopback), where its
    HAProxy and replicas listen too; ``run_under`` is a command line it runs under (the tests
    give it a mount namespace of its own, so that it works like another host: see
    ``tests/scaleout/isolated_node.py``). It gets the head's driver environment (the instance's Ray token), ports
    ``base_port+1`` .. ``base_port+6`` (keep them clear of the head's ``ray_port`` ..
    ``ray_port+6``), a temp dir of its own (Ray allows one per node) and the log
    ``<home>/logs/ray-worker-<base_port>.log``; it is recorded in the state file, so ``down``
    stops it too. Memory and object store are given explicitly, or each node would count
    the machine's whole memory. Returns once the head's dashboard lists the node as alive,
    with its Ray node id. Raises :class:`Unavailable` when no Ray head of ``up`` runs from
    ``home``, or (after stopping the node) when it exits or does not join within ``timeout``
    seconds.
    """
    home = Path(home).expanduser().resolve()
    state = read_state(home)
    head = next((r for r in state.processes if r.name == "ray"), None) if state else None
    if state is None or head is None or live_process(head) is None:
        raise Unavailable(f"no Ray head started by `loopml up` runs from {home}")
    name = f"ray-worker-{base_port}"
    temp_dir = short_temp_dir(f"{home}:{base_port}")
    argv = worker_command(state.urls["ray_address"], name, base_port, num_cpus=num_cpus,
                          resources=dict(resources or {}), memory_mb=memory_mb, object_store_mb=object_store_mb,
                          temp_dir=temp_dir, node_ip=node_ip)
    env = own_token(start_env(state.ray_env, load_settings(data_dir=home), temp_dir, worker_ip=node_ip), temp_dir)
    proc, record = spawn(home, name, [*run_under, *argv], env)
    put_record(state, record)
    write_state(home, state)
    try:
        with component_errors(f"Ray worker node {name}", record):
            node = wait_ray(state.urls["ray"], timeout, proc=proc, headers=ray_headers(state), node_name=name)
    except BaseException:
        stop_record(record, timeout=30)
        raise
    return RayWorkerNode(pid=proc.pid, node_name=name, node_id=node["node_id"], log=Path(record.log), _record=record)


def own_token(env: dict[str, str], temp_dir: str) -> dict[str, str]:
    """``env`` reading the Ray token from a copy in the node's own private dir (the ``0700``
    parent of ``temp_dir``), not from the instance's data dir: another host has no data dir.
    No user code sees that dir (sandboxes get an empty ``/tmp``)."""
    source = env.get(AUTH_TOKEN_PATH)
    if not source or not os.path.isfile(source):
        return env
    copy = Path(temp_dir).parent / "auth_token"
    write_private(copy, Path(source).read_text())
    return {**env, AUTH_TOKEN_PATH: str(copy)}
