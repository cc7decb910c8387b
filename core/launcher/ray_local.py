"""The Ray nodes :mod:`loopml.launcher` starts: their ports, command lines, environment and
auth token, and how to tell that a node is up. Why each setting is what it is: see the
launcher's module docstring."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx

from loopml import sandbox
from loopml.errors import InvalidInput, Unavailable
from loopml.instance import write_private
from loopml.launcher.processes import free_port_block, wait_http
from loopml.serving.admission import CALLBACK, CALLBACK_ENV, DEFAULT_LIMIT, LIMIT_ENV
from loopml.serving.ingress import ingress_env
from loopml.settings import Settings

log = logging.getLogger(__name__)

logger = logging.getLogger(__name__)

AUTH_MODE = "RAY_AUTH_MODE"
AUTH_TOKEN = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"
AUTH_VARS = (AUTH_MODE, AUTH_TOKEN, AUTH_TOKEN_PATH)
# Ray's switch between "local only" (loopback addresses) and "cluster" mode; see the launcher.
ENABLE_CLUSTER = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
TOKEN_FILE = Path("ray") / "auth_token"
# Ray puts unix sockets up to ~68 characters below its temp dir
# (session_<date>_<pid>/sockets/dash_MetricsHead); the kernel's limit is 107.
MAX_RAY_TEMP_DIR = 36
# The head's node supervisor (loopml.launcher.ray_start) creates the job dispatcher with these options.
DISPATCHER_OPTION = "--loopml-dispatcher="
DISPATCHER_NAME = "loopml-dispatcher"  # loopml.executor.dispatcher.NAME, without importing Ray
TEMP_PREFIX, TEMP_LEAF = "loopml-ray-", "r"  # /tmp/loopml-ray-<8 hex>/r: see private_temp_parent


@dataclass(frozen=True)
class RayPorts:
    """The ports of one Ray node besides its GCS and dashboard, derived from one base port.

    Fields are named after their ``ray start`` flags. Worker ports are left to the OS
    (``--min-worker-port=0 --max-worker-port=0``): Ray's default range 10002-19999 overlaps
    the ports other instances (and MLflow) may use.
    """

    SPAN: ClassVar[int] = 10

    dashboard_agent_listen_port: int
    dashboard_agent_grpc_port: int
    runtime_env_agent_port: int
    metrics_export_port: int
    node_manager_port: int
    object_manager_port: int

    @classmethod
    def derive(cls, base: int) -> RayPorts:
        """``base+1`` .. ``base+6`` (no Ray client server: :mod:`loopml.launcher.ray_start`)."""
        if not 1024 <= base <= 65535 - cls.SPAN:
            raise InvalidInput(f"Ray port {base} must be between 1024 and {65535 - cls.SPAN}", field="ray_port")
        return cls(base + 1, base + 2, base + 3, base + 4, base + 5, base + 6)

    def named(self) -> dict[str, int]:
        """The ports by field name."""
        return asdict(self)

    def args(self) -> list[str]:
        """``ray start`` flags for these ports."""
        ports = [f"--{name.replace('_', '-')}={port}" for name, port in self.named().items()]
        return [*ports, "--min-worker-port=0", "--max-worker-port=0"]


def ray_temp_dir(settings: Settings) -> str:
    """Ray's temp dir: ``settings.ray_temp_dir`` or ``/tmp/loopml-ray-<8 hex of the home's sha1>/r``.

    Not under ``$TMPDIR`` or the data dir: either may be long, and Ray's sockets live in it.
    Raises :class:`InvalidInput` when the configured one is too long for them.
    """
    path = settings.ray_temp_dir or short_temp_dir(str(settings.home))
    if len(path) > MAX_RAY_TEMP_DIR:
        raise InvalidInput(
            f"ray_temp_dir {path!r} is {len(path)} characters; Ray's sockets need it at most "
            f"{MAX_RAY_TEMP_DIR}", field="ray_temp_dir")
    return path


def private_temp_parent(path: str | Path) -> None:
    """Create the ``0700`` dir around one of our short Ray temp dirs (:func:`short_temp_dir`)
    before its node starts. Ray makes its temp dir and session dirs world-writable (``0777``,
    for clusters shared by several users) and sets that mode again whenever a driver connects;
    inside a dir only we may enter, its sockets, logs and runtime files are out of other users'
    reach. A ``ray_temp_dir`` of the operator's own is left as it is."""
    path = Path(path)
    if path.name == TEMP_LEAF and path.parent.name.startswith(TEMP_PREFIX):
        path.parent.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path.parent, 0o700)


def short_temp_dir(key: str) -> str:
    return f"/tmp/{TEMP_PREFIX}{hashlib.sha1(key.encode()).hexdigest()[:8]}/{TEMP_LEAF}"


def venv_bin(name: str) -> str:
    """The executable ``name`` of the running interpreter's environment (not resolved: a venv's
    ``python`` is a symlink out of it)."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise Unavailable(f"{name} is not installed next to {sys.executable}; install loopml into that environment")
    return str(path)


# -- authentication and environment --------------------------------------------------------


def auth_token_file(home: Path) -> Path:
    """``<home>/ray/auth_token``: the instance's Ray token, generated on first use, then kept.

    The folder is 0700 and the file 0600 (both made so when they already exist).
    """
    folder = home / TOKEN_FILE.parent
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    path = home / TOKEN_FILE
    if _read_token(path):
        path.chmod(0o600)
    else:
        write_private(path, secrets.token_hex(32))
        logger.info("generated a Ray auth token in %s", path)
    return path


def driver_env(home: Path, environ: Mapping[str, str], *, own_cluster: bool) -> dict[str, str]:
    """The variables a Ray driver (and every node ``up`` starts) sets to reach the cluster.

    For a cluster ``up`` starts (``own_cluster``): ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    and, unless ``environ`` sets ``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN`` or
    ``RAY_AUTH_TOKEN_PATH`` itself, ``RAY_AUTH_MODE=token`` with the token of
    :func:`auth_token_file`. When ``environ`` does set them they are kept (a given token
    implies ``RAY_AUTH_MODE=token``); :class:`InvalidInput` when that mode finds no token.
    For a cluster joined by address: those of the variables ``environ`` sets. The value of
    ``RAY_AUTH_TOKEN`` is never part of the result: it is a secret and the result is
    recorded and shown.
    """
    given = {name: environ[name] for name in (*AUTH_VARS, ENABLE_CLUSTER) if environ.get(name)}
    env = {name: value for name, value in given.items() if name != AUTH_TOKEN}
    if not own_cluster:
        return env
    if not any(name in given for name in AUTH_VARS):
        env.update({AUTH_MODE: "token", AUTH_TOKEN_PATH: str(auth_token_file(home))})
    env.setdefault(AUTH_MODE, "token")
    if env[AUTH_MODE] == "token" and not _ray_token({**environ, **env}):
        raise InvalidInput(f"{AUTH_MODE}=token is set but no Ray token was found ({AUTH_TOKEN}, {AUTH_TOKEN_PATH} "
                           f"or ~/.ray/auth_token); unset {AUTH_MODE} to have loopml keep one in {home / TOKEN_FILE}")
    env[ENABLE_CLUSTER] = "0"
    return env


def node_env(ray_env: Mapping[str, str], environ: Mapping[str, str] | None = None, *,
             serve_max_inflight: int = DEFAULT_LIMIT) -> dict[str, str]:
    """The environment of a Ray node ``up`` starts: ``environ`` (default ours) without its
    ``LOOPML_*`` variables, ``ray_env``, niceness and drain settings, and the admission gate
    of Serve's HTTP proxy (:mod:`loopml.serving.admission`) with its per-endpoint limit.

    Every job's kernel inherits its node's environment: the ``LOOPML_TOKEN`` of whoever ran
    ``up`` must not reach other users' notebooks.
    """
    environ = os.environ if environ is None else environ
    env = {name: value for name, value in environ.items() if not name.startswith("LOOPML_")}
    env.update(ray_env)
    # Ray runs workers at nice 15 by default, which cost Ray Serve ~30% on a busy machine.
    env["RAY_worker_niceness"] = "0"
    # On SIGTERM a node waits up to 30 s to drain; `down` stops the whole local cluster,
    # so there is nowhere to drain to.
    env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    env[CALLBACK_ENV] = CALLBACK
    env[LIMIT_ENV] = str(serve_max_inflight)
    return env


def start_env(ray_env: Mapping[str, str], settings: Settings, temp_dir: str, *,
              worker_ip: str | None = None) -> dict[str, str]:
    """The environment of a Ray node of ``settings``' instance that ``up`` (or, with its
    address ``worker_ip``, a worker node) starts with temp dir ``temp_dir``: :func:`node_env`
    and the endpoints' ingress (:func:`~loopml.serving.ingress.ingress_env`). Creates the
    private dir around ``temp_dir`` first (:func:`private_temp_parent`)."""
    private_temp_parent(temp_dir)
    return {**node_env(ray_env, serve_max_inflight=settings.serve_max_inflight),
            **ingress_env(settings, temp_dir, free_port_block(2), worker_ip=worker_ip)}


def ray_auth_headers(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``Authorization`` header for Ray's dashboard, from the token Ray itself would use.

    Ray's precedence: ``RAY_AUTH_TOKEN``, then the file named by ``RAY_AUTH_TOKEN_PATH``,
    then ``~/.ray/auth_token``. Empty when there is no token.
    """
    token = _ray_token(os.environ if env is None else env)
    return {"Authorization": f"Bearer {token}"} if token else {}


def _ray_token(env: Mapping[str, str]) -> str | None:
    if env.get(AUTH_TOKEN):
        return env[AUTH_TOKEN].strip()
    home = Path(env.get("HOME") or Path.home())
    return _read_token(Path(env[AUTH_TOKEN_PATH]) if env.get(AUTH_TOKEN_PATH) else home / ".ray" / "auth_token")


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


# -- command lines -------------------------------------------------------------------------


def head_command(settings: Settings) -> list[str]:
    """``ray start --head --block`` on 127.0.0.1 with the settings' ports and temp dir, through
    :mod:`loopml.launcher.ray_start` (no Ray client server, fewer dashboard modules), without
    the processes a fixed local cluster does not use."""
    argv = [
        sys.executable, "-m", "loopml.launcher.ray_start", "--head", "--block", "--node-ip-address=127.0.0.1",
        f"--port={settings.ray_port}", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={settings.ray_dashboard_port}", "--include-dashboard=true",
        # no autoscaler (the head's nodes are the ones `up` starts) and no log monitor (it copies
        # workers' output to drivers; job logs travel through the platform): ~130 MiB
        "--no-monitor", "--include-log-monitor=false",
        "--disable-usage-stats", "--log-color=false", f"--temp-dir={ray_temp_dir(settings)}",
        *RayPorts.derive(settings.ray_port).args(),
    ]
    if settings.ray_num_cpus is not None:
        argv.append(f"--num-cpus={settings.ray_num_cpus}")
    if drives_dispatcher(settings):
        argv.append(DISPATCHER_OPTION + json.dumps(dispatcher_options(settings)))
    return argv


def drives_dispatcher(settings: Settings) -> bool:
    """Whether the head's node supervisor creates the job runner's dispatcher: when jobs run on
    Ray (the ``ray`` job backend)."""
    return settings.job_backend == "ray"


def dispatcher_options(settings: Settings) -> dict[str, Any]:
    """What the head's parent creates the job runner's dispatcher with: the same the platform's
    :class:`~loopml.executor.backend.RayJobBackend` would (``loopml.launcher.ray_start``)."""
    return {"address": f"127.0.0.1:{settings.ray_port}", "cwd": ray_temp_dir(settings), "kernel_name": settings.kernel_name,
            "prewarm": settings.warm_kernels, "isolation": settings.job_isolation,
            "hide": sandbox.hidden_paths(settings.home)}


def worker_command(address: str, name: str, base_port: int, *, num_cpus: int, resources: dict[str, float],
                   memory_mb: int, object_store_mb: int, temp_dir: str, node_ip: str = "127.0.0.1") -> list[str]:
    """``ray start --address --block`` for a worker node named ``name`` with address ``node_ip``,
    through :mod:`loopml.launcher.ray_start` (which lets a worker node start with clusters "disabled")."""
    return [
        sys.executable, "-m", "loopml.launcher.ray_start", f"--address={address}", "--block",
        f"--num-cpus={num_cpus}", f"--resources={json.dumps(resources)}",
        f"--node-ip-address={node_ip}", f"--node-name={name}", "--disable-usage-stats", "--log-color=false",
        f"--memory={memory_mb * 2**20}", f"--object-store-memory={object_store_mb * 2**20}",
        f"--temp-dir={temp_dir}", *RayPorts.derive(base_port).args(),
    ]


# -- readiness -----------------------------------------------------------------------------


def alive_nodes(response: httpx.Response) -> list[dict[str, Any]]:
    """The ALIVE nodes in an ``/api/v0/nodes`` answer."""
    try:
        nodes = response.json()["data"]["result"]["result"]
    except (ValueError, KeyError, TypeError):
        return []
    return [node for node in nodes if node.get("state") == "ALIVE"]


def wait_ray(dashboard: str, timeout: float, *, headers: dict[str, str], proc: subprocess.Popen | None = None,
             node_name: str | None = None) -> dict[str, Any]:
    """Wait for the dashboard to answer and for a node (the one named ``node_name``, if given)
    to be alive; return that node as the dashboard lists it (``node_id``, ``node_ip``…)."""
    def matching(response: httpx.Response) -> list[dict[str, Any]]:
        return [n for n in alive_nodes(response) if node_name in (None, n.get("node_name"))]

    deadline = time.monotonic() + timeout
    wait_http(f"{dashboard}/api/version", timeout, proc=proc, headers=headers)
    response = wait_http(f"{dashboard}/api/v0/nodes", max(1.0, deadline - time.monotonic()), proc=proc,
                         headers=headers, ready=lambda r: bool(matching(r)))
    return matching(response)[0]


def wait_dispatcher(dashboard: str, timeout: float, *, headers: dict[str, str],
                    proc: subprocess.Popen | None = None) -> None:
    """Wait for the job runner's dispatcher, which the head's parent creates once the node is
    up, to be alive: a platform started before would submit a dispatcher job of its own."""
    def alive(response: httpx.Response) -> bool:
        try:
            actors = response.json()["data"]["result"]["result"]
        except (ValueError, KeyError, TypeError):
            return False
        return any(actor.get("state") == "ALIVE" for actor in actors)

    query = "filter_keys=name&filter_predicates=%3D&filter_values=" + DISPATCHER_NAME
    wait_http(f"{dashboard}/api/v0/actors?{query}", timeout, proc=proc, headers=headers, ready=alive)


def shutdown_serve(dashboard: str, *, headers: dict[str, str], timeout: float) -> bool:
    """Shut Ray Serve down gracefully through the dashboard (``serve.shutdown()``, which
    returns once Serve's controller has stopped every application, or after 30 s).

    Each replica then finishes its requests and runs its shutdown hook: an endpoint sends the
    predictions it captured but had not sent yet to the platform, which must still be running.
    Returns False when the dashboard does not answer within ``timeout`` seconds or fails;
    the caller stops the processes anyway.
    """
    try:
        httpx.delete(f"{dashboard}/api/serve/applications/", headers=headers, timeout=timeout).raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("could not shut Serve down gracefully: %s", exc)
        return False
    return True
