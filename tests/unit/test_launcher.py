"""``loopml.launcher`` without Ray, MLflow or the platform: state, stopping real process trees,
what an idempotent ``up`` keeps and restarts, the Ray token and environment, ports, paths and
the settings handed to the platform service. Running components are ``sleep`` processes whose
health checks a local HTTP server answers."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from loopml import instance, launcher
from loopml.errors import Conflict, InvalidInput, Unavailable
from loopml.launcher import processes as _processes
from loopml.launcher import ray_local as _ray_local
from loopml.launcher import run_state
from loopml.registry.server import mlflow_server_command
from loopml.settings import ProjectSeed, Settings, TokenUser, load_settings

# A parent that starts a child in its own session (as Jupyter starts kernels) and one in
# its own, then waits: the shape of the trees `down` must stop.
TREE = "sleep 300 & setsid sleep 301 & wait"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "home", port=18801, mlflow_port=18802, ray_port=18810,
                    ray_dashboard_port=18803, serve_port=18804, hub=False)


@pytest.fixture(autouse=True)
def no_ray_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's Ray auth variables would be respected: start from none."""
    for name in (*_ray_local.AUTH_VARS, _ray_local.ENABLE_CLUSTER, "LOOPML_HOME", "LOOPML_URL", "LOOPML_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def spawn_recorded(home: Path, name: str, script: str) -> tuple[subprocess.Popen, _processes.ProcessRecord]:
    """Start ``bash -c script`` the way ``up`` starts a component, recorded in the state file."""
    home.mkdir(parents=True, exist_ok=True)
    proc, record = _processes.spawn(home, name, ["bash", "-c", script], dict(os.environ))
    state = run_state.read_state(home) or run_state.RunState()
    state.processes.append(record)
    run_state.write_state(home, state)
    return proc, record


def descendants_when_ready(pid: int, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = psutil.Process(pid).children(recursive=True)
        if len(children) >= count:
            return children
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} did not start {count} children")


def assert_gone(procs: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(procs, timeout=5)
    assert not alive


@pytest.fixture
def http_server() -> Iterator[str]:
    """A local server answering 200 on /ok and 503 elsewhere."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        def log_message(self, *args: object) -> None:
            pass

    yield from serve(Handler)


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


RAY_NODES = {"data": {"result": {"result": [{"state": "ALIVE", "node_name": "127.0.0.1", "node_id": "ab12"}]}}}


@pytest.fixture
def healthy_server() -> Iterator[str]:
    """Answers every health check ``up`` and ``status`` make (platform, MLflow, Ray's
    dashboard) and the platform's /status; ``.../seen`` lists the Authorization headers."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            seen.append(self.headers.get("Authorization", ""))
            body = RAY_NODES if self.path.endswith("/api/v0/nodes") else {"platform": {"ok": True}}
            if self.path == "/seen":
                body = seen
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args: object) -> None:
            pass

    yield from serve(Handler)


# -- stopping ------------------------------------------------------------------------------


def test_down_without_state_file_is_a_no_op(tmp_path: Path) -> None:
    assert launcher.down(tmp_path) == []
    assert launcher.down(tmp_path / "never-created") == []


def test_down_stops_the_tree_including_other_sessions_newest_first(tmp_path: Path) -> None:
    first, _ = spawn_recorded(tmp_path, "ray", TREE)
    second, _ = spawn_recorded(tmp_path, "platform", TREE)
    family = [psutil.Process(p.pid) for p in (first, second)]
    try:
        family += descendants_when_ready(first.pid, 2) + descendants_when_ready(second.pid, 2)
        # the setsid child may be listed before it has called setsid()
        deadline = time.monotonic() + 10
        while all(os.getsid(p.pid) == first.pid for p in family[2:4]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(os.getsid(p.pid) != first.pid for p in family[2:4])
    finally:
        stopped = launcher.down(tmp_path)

    assert stopped == ["platform", "ray"]

    assert_gone(family)
    assert not (tmp_path / run_state.STATE_FILE).exists()
    assert launcher.down(tmp_path) == []


def test_down_kills_what_ignores_sigterm_after_the_timeout(tmp_path: Path) -> None:
    proc, _ = spawn_recorded(tmp_path, "mlflow", "trap '' TERM; sleep 300 & wait; sleep 300")
    family = [psutil.Process(proc.pid), *descendants_when_ready(proc.pid, 1)]
    started = time.monotonic()
    assert launcher.down(tmp_path, timeout=1) == ["mlflow"]
    assert time.monotonic() - started < 10
    assert_gone(family)


def test_down_stops_the_orphans_of_a_process_killed_hard(tmp_path: Path) -> None:
    proc, _ = spawn_recorded(tmp_path, "ray", "sleep 300 & wait")
    orphan = descendants_when_ready(proc.pid, 1)[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert orphan.is_running()
    assert launcher.down(tmp_path) == []  # the recorded process was not running
    assert_gone([orphan])


def test_down_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    me = _processes.ProcessRecord(name="ray", pid=os.getpid(), pgid=os.getpgid(0), cmdline=["ray"],
                                create_time=psutil.Process().create_time() - 1000, log="ray.log")
    run_state.write_state(tmp_path, run_state.RunState(processes=[me]))
    assert launcher.down(tmp_path) == []  # and this test process is still here to check it


# -- state ---------------------------------------------------------------------------------


def test_a_stale_state_file_is_replaced_by_a_fresh_start(settings: Settings) -> None:
    proc, _ = spawn_recorded(settings.home, "ray", "exit 0")
    proc.wait()
    with pytest.raises(Conflict, match="port"):  # gets as far as checking the ports of a fresh start
        with occupied(settings.port):
            launcher.up(settings)
    assert run_state.read_state(settings.home) is None


@contextlib.contextmanager
def occupied(port: int) -> Iterator[None]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


def test_a_corrupt_state_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / run_state.STATE_FILE).parent.mkdir()
    (tmp_path / run_state.STATE_FILE).write_text('{"processes": 3}')
    with pytest.raises(InvalidInput, match="stop its processes by hand"):
        launcher.down(tmp_path)


def test_state_file_is_private(tmp_path: Path) -> None:
    run_state.write_state(tmp_path, run_state.RunState())
    assert stat.S_IMODE((tmp_path / run_state.STATE_FILE).stat().st_mode) == 0o600


def test_status_when_nothing_runs(tmp_path: Path) -> None:
    report = launcher.status(tmp_path)
    assert set(report) == {"ray", "mlflow", "platform"}
    assert all(part["state"] == "stopped" and part["alive"] is False for part in report.values())


def test_status_of_a_live_but_unanswering_process(settings: Settings) -> None:
    spawn_recorded(settings.home, "mlflow", "sleep 300")
    state = run_state.read_state(settings.home)
    state.urls = {"mlflow": "http://127.0.0.1:9"}
    run_state.write_state(settings.home, state)
    try:
        mlflow = launcher.status(settings.home)["mlflow"]
        assert (mlflow["state"], mlflow["alive"], mlflow["healthy"]) == ("unhealthy", True, False)
    finally:
        launcher.down(settings.home)



# -- idempotent up ---------------------------------------------------------------------------


def running_instance(settings: Settings, health_url: str, *, alive: tuple[str, ...] = run_state.COMPONENTS,
                     stopped: tuple[str, ...] = ()) -> run_state.RunState:
    """A state file as ``up`` leaves it, with ``sleep`` for each component ``alive``, an
    exited process for each one ``stopped`` and every health check answered by ``health_url``."""
    settings.home.mkdir(mode=0o700)
    state = run_state.new_state(settings)
    state.urls.update(platform=health_url, ray=health_url, mlflow=health_url)
    run_state.write_state(settings.home, state)
    for name in alive:
        spawn_recorded(settings.home, name, "sleep 300")
    for name in stopped:
        proc, _ = spawn_recorded(settings.home, name, "exit 0")
        proc.wait()
    return run_state.read_state(settings.home)


def alive_names(state: run_state.RunState) -> list[str]:
    return [r.name for r in state.processes if _processes.live_process(r) is not None]


@pytest.mark.parametrize("alive, stopped, to_start", [
    pytest.param(("ray", "mlflow"), ("platform",), ["platform"], id="platform-killed"),
    pytest.param(("mlflow", "platform"), ("ray",), ["ray"], id="ray-died-the-rest-stays"),
    pytest.param(("platform",), ("ray", "mlflow"), ["ray", "mlflow"], id="two-died"),
    pytest.param(("ray", "platform"), (), ["mlflow"], id="never-recorded"),
    pytest.param(("ray", "mlflow", "platform"), ("ray-worker-20000",), [], id="stopped-worker-node-dropped"),
    pytest.param(("ray", "mlflow", "platform", "ray-worker-20000"), (), [], id="worker-node-kept"),
])
def test_up_keeps_what_runs_healthy_and_restarts_what_stopped(settings: Settings, healthy_server: str,
                                                              alive: tuple[str, ...], stopped: tuple[str, ...],
                                                              to_start: list[str]) -> None:
    state = running_instance(settings, healthy_server, alive=alive, stopped=stopped)
    steps: list[str] = []
    try:
        assert launcher._keep_running(state, steps.append) == to_start
        assert [r.name for r in state.processes] == [name for name in state_order(alive)]
        assert alive_names(state) == [r.name for r in state.processes]
        assert sum("kept" in step for step in steps) == len(alive)
        assert sum(step.endswith(("restarting it", "starting it")) for step in steps) == len(to_start)
    finally:
        launcher.down(settings.home)


def state_order(names: tuple[str, ...]) -> list[str]:
    return sorted(names, key=lambda n: run_state.COMPONENTS.index(n) if n in run_state.COMPONENTS else 9)


def test_up_with_everything_running_starts_nothing(settings: Settings, healthy_server: str) -> None:
    before = running_instance(settings, healthy_server)
    steps: list[str] = []
    try:
        result = launcher.up(settings, on_step=steps.append)
        assert (result.kept, result.started) == (["ray", "mlflow", "platform"], [])
        assert run_state.read_state(settings.home).processes == before.processes
        assert result.ray_env == before.ray_env and result.client_config.exists()
        token = Path(result.ray_env["RAY_AUTH_TOKEN_PATH"]).read_text()
        assert f"Bearer {token}" in httpx.get(f"{healthy_server}/seen").json()  # the dashboard probe
        assert not any(token in step for step in steps)
    finally:
        launcher.down(settings.home)


def test_a_component_running_but_unhealthy_is_a_conflict_and_nothing_changes(
        settings: Settings, healthy_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "PROBE_TIMEOUT", 0.5)
    state = running_instance(settings, healthy_server, alive=("ray", "mlflow", "platform"))
    state.urls["platform"] = "http://127.0.0.1:9"
    run_state.write_state(settings.home, state)
    try:
        with pytest.raises(Conflict, match=r"platform service \(pid \d+.*loopml down"):
            launcher.up(settings)
        assert run_state.read_state(settings.home) == state
        assert alive_names(state) == ["ray", "mlflow", "platform"]
    finally:
        launcher.down(settings.home)


def test_external_components_are_never_started(settings: Settings, healthy_server: str) -> None:
    settings = settings.model_copy(update={"mlflow_uri": healthy_server})
    state = running_instance(settings, healthy_server, alive=("ray",), stopped=("platform",))
    try:
        assert launcher._keep_running(state, lambda step: None) == ["platform"]
        assert launcher._ports_to_check(settings, ["platform"]) == {"port": settings.port}
    finally:
        launcher.down(settings.home)


def test_a_restarted_component_replaces_its_record_in_start_order() -> None:
    def record(name: str, pid: int) -> _processes.ProcessRecord:
        return _processes.ProcessRecord(name=name, pid=pid, pgid=pid, cmdline=[], create_time=0, log="")

    state = run_state.RunState(processes=[record("ray", 1), record("mlflow", 2), record("ray-worker-1", 4)])
    run_state.put_record(state, record("platform", 5))
    run_state.put_record(state, record("ray", 6))
    assert [(r.name, r.pid) for r in state.processes] == [
        ("ray", 6), ("mlflow", 2), ("platform", 5), ("ray-worker-1", 4)]


def test_restarts_use_the_recorded_settings_and_this_calls_secrets(settings: Settings) -> None:
    alice, bob = {"t-alice": TokenUser(name="alice")}, {"t-bob": TokenUser(name="bob")}
    db = "postgresql://loopml:db-password@db.example/loopml"
    first = settings.model_copy(update={"port": 18899, "tokens": alice, "db_url": db, "admin_token": "adm-secret"})
    settings.home.mkdir(mode=0o700)
    state = run_state.new_state(first)
    recorded = state.model_dump_json()
    assert not any(secret in recorded for secret in ("t-alice", "db-password", "adm-secret"))
    assert state.secret_settings == ["admin_token", "db_url", "tokens"]
    assert state.settings["data_dir"] == str(settings.home)

    steps: list[str] = []
    again = run_state.running_settings(state, settings.model_copy(
        update={"tokens": bob, "db_url": db, "admin_token": "adm-secret"}), steps.append)
    assert (again.port, again.tokens, again.db_url, again.home) == (18899, bob, db, settings.home)
    assert len(steps) == 1 and "port differ" in steps[0]
    with pytest.raises(Conflict, match="LOOPML_ADMIN_TOKEN, LOOPML_DB_URL, LOOPML_TOKENS set"):
        run_state.running_settings(state, settings, steps.append)
    with pytest.raises(Conflict, match="older loopml"):
        run_state.running_settings(run_state.RunState(), settings, steps.append)


# -- the Ray token and the environment of Ray and its drivers --------------------------------


def test_the_ray_token_is_per_instance_private_and_kept(tmp_path: Path) -> None:
    path = _ray_local.auth_token_file(tmp_path)
    token = path.read_text()
    assert path == tmp_path / "ray" / "auth_token" and len(token) == 64 and int(token, 16) >= 0
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    path.parent.chmod(0o755)
    assert _ray_local.auth_token_file(tmp_path).read_text() == token
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and stat.S_IMODE(path.stat().st_mode) == 0o600
    (tmp_path / "other").mkdir()
    assert _ray_local.auth_token_file(tmp_path / "other").read_text() != token


LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@pytest.mark.parametrize("environ, expected", [
    pytest.param({}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "HOME/ray/auth_token", **LOOPBACK},
                 id="the-instance-token"),
    pytest.param({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"},
                 {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "HOME/ray/auth_token", **LOOPBACK},
                 id="loopback-always"),
    pytest.param({"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_MODE": "disabled", **LOOPBACK}, id="caller-disables-auth"),
    pytest.param({"RAY_AUTH_TOKEN": "s3cret"}, {"RAY_AUTH_MODE": "token", **LOOPBACK},
                 id="caller-token-value-not-recorded"),
    pytest.param({"RAY_AUTH_TOKEN_PATH": "HOME/mine"},
                 {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "HOME/mine", **LOOPBACK}, id="caller-token-file"),
])
def test_driver_env_of_a_cluster_up_starts(tmp_path: Path, environ: dict[str, str],
                                           expected: dict[str, str]) -> None:
    (tmp_path / "mine").write_text("my-token")
    home = str(tmp_path)
    env = _ray_local.driver_env(tmp_path, {k: v.replace("HOME", home) for k, v in environ.items()}, own_cluster=True)
    assert env == {k: v.replace("HOME", home) for k, v in expected.items()}
    assert (tmp_path / "ray" / "auth_token").exists() == ("RAY_AUTH_TOKEN_PATH" in expected and not environ.get(
        "RAY_AUTH_TOKEN_PATH"))


def test_driver_env_refuses_token_mode_without_a_token(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no Ray token"):
        _ray_local.driver_env(tmp_path, {"RAY_AUTH_MODE": "token", "HOME": str(tmp_path)}, own_cluster=True)


def test_driver_env_of_a_joined_cluster_is_what_the_caller_set(tmp_path: Path) -> None:
    environ = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "s3cret", "PATH": "/bin"}
    assert _ray_local.driver_env(tmp_path, environ, own_cluster=False) == {"RAY_AUTH_MODE": "token"}
    assert _ray_local.driver_env(tmp_path, {}, own_cluster=False) == {}
    assert not (tmp_path / "ray").exists()


def test_ray_nodes_get_the_driver_env_but_not_the_callers_loopml_token() -> None:
    env = _ray_local.node_env({"RAY_AUTH_MODE": "token", **LOOPBACK},
                              {"PATH": "/bin", "LOOPML_TOKEN": "adm", "RAY_AUTH_MODE": "disabled"},
                              serve_max_inflight=5)
    assert env == {"PATH": "/bin", "RAY_AUTH_MODE": "token", **LOOPBACK, "RAY_worker_niceness": "0",
                   "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
                   "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "loopml.serving.admission.middlewares",
                   "LOOPML_SERVE_MAX_INFLIGHT": "5"}


def test_the_platform_service_gets_the_driver_env_and_only_ups_settings(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_DB_URL", "sqlite:////elsewhere.db")
    settings.home.mkdir(mode=0o700)
    state = run_state.new_state(settings)
    env = launcher._platform_env(settings, state, "adm")
    assert {k: env[k] for k in state.ray_env} == state.ray_env and env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert "LOOPML_DB_URL" not in env and env["LOOPML_ADMIN_TOKEN"] == "adm"


def test_status_shows_the_driver_env(settings: Settings, healthy_server: str) -> None:
    state = running_instance(settings, healthy_server)
    try:
        report = launcher.status(settings.home)
        assert report["ray"]["env"] == state.ray_env
        assert [part["state"] for name, part in report.items() if name != "ingress"] == ["running"] * 3
        # this fake Ray head runs no HAProxy (Serve starts it, with the platform)
        assert report["ingress"]["state"] == "stopped" and report["ingress"]["url"].startswith("http://127.0.0.1:")
    finally:
        launcher.down(settings.home)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised by Ray's own modules on import
def test_ray_still_reads_the_cluster_switch_the_way_ray_start_worker_nodes_assume() -> None:
    """:mod:`loopml.launcher.ray_start` swaps ``ray_constants`` in ``ray start``'s module only."""
    import inspect

    import ray._private.services as services
    from ray.scripts import scripts

    assert scripts.ray_constants is services.ray_constants
    assert "ray_constants.ENABLE_RAY_CLUSTER" in inspect.getsource(scripts.start.callback)
    assert "ray_constants.ENABLE_RAY_CLUSTER" in inspect.getsource(services.get_node_ip_address)
    assert "get_node_ip_address" in inspect.getsource(services.resolve_ip_for_localhost)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised by Ray's own modules on import
def test_the_lean_head_loads_only_dashboard_modules_ray_has_and_starts_no_client_server(monkeypatch) -> None:
    """:mod:`loopml.launcher.ray_start` with ``--head``: the modules it names exist in this Ray
    (the dashboard refuses to start on a name it does not know), only the dashboard's command
    gets them, and ``ray start`` finds no Ray client to start a server for."""
    import ray._private.services as services
    from ray._private import ray_constants
    from ray.dashboard.subprocesses.module import SubprocessModule
    from ray.dashboard.utils import DashboardHeadModule, get_all_modules
    from ray.scripts import scripts

    from loopml.launcher import ray_start

    known = {cls.__name__ for cls in [*get_all_modules(DashboardHeadModule), *get_all_modules(SubprocessModule)]}
    assert set(ray_start.DASHBOARD_MODULES) <= known
    assert {"MetricsHead", "DataHead", "TrainHead"} <= known - set(ray_start.DASHBOARD_MODULES)
    started = []
    monkeypatch.setattr(services, "start_ray_process", lambda command, kind, *a, **k: started.append((kind, command)))
    monkeypatch.setattr(scripts, "get_ray_client_dependency_error", scripts.get_ray_client_dependency_error)
    ray_start._lean_head(scripts)
    services.start_ray_process(["dashboard.py"], ray_constants.PROCESS_TYPE_DASHBOARD)
    services.start_ray_process(["raylet"], ray_constants.PROCESS_TYPE_RAYLET)
    assert started == [(ray_constants.PROCESS_TYPE_DASHBOARD,
                        ["dashboard.py", f"--modules-to-load={','.join(ray_start.DASHBOARD_MODULES)}"]),
                       (ray_constants.PROCESS_TYPE_RAYLET, ["raylet"])]
    assert scripts.get_ray_client_dependency_error() is not None


def test_cli_status_asks_the_platform_of_the_data_dir_given(tmp_path: Path, healthy_server: str) -> None:
    from click.testing import CliRunner

    from loopml.cli import main
    from loopml.settings import ClientConfig, write_client_config

    write_client_config(tmp_path, ClientConfig(url=healthy_server, token="tok-of-this-dir"))
    result = CliRunner().invoke(main, ["status", "--data-dir", str(tmp_path), "--json"])
    assert json.loads(result.stdout)["platform"] == {"platform": {"ok": True}}
    assert "Bearer tok-of-this-dir" in httpx.get(f"{healthy_server}/seen").json()
    assert result.exit_code == 0


# -- settings, secrets, paths, ports -------------------------------------------------------


def test_admin_token_is_generated_once_and_kept_private(settings: Settings) -> None:
    settings.home.mkdir()
    token = run_state.resolve_admin_token(settings)
    assert len(token) >= 40
    assert run_state.resolve_admin_token(settings) == token
    assert stat.S_IMODE((settings.home / instance.SECRETS_FILE).stat().st_mode) == 0o600
    assert run_state.resolve_admin_token(settings.model_copy(update={"admin_token": "given"})) == "given"


def test_the_platform_service_sees_the_same_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings.model_copy(update={
        "base_url": "/services/loopml/", "tokens": {"t1": TokenUser(name="alice")},
        "projects": [ProjectSeed(name="demo", members=["alice"])], "warm_kernels": False,
    })
    for name, value in launcher._settings_env(settings).items():
        monkeypatch.setenv(name, value)
    assert load_settings().model_dump() == settings.model_dump()


def test_ray_temp_dir_is_short_and_per_home(tmp_path: Path) -> None:
    one = _ray_local.ray_temp_dir(Settings(data_dir=tmp_path / ("a" * 200)))
    two = _ray_local.ray_temp_dir(Settings(data_dir=tmp_path / "b"))
    assert one != two and one.startswith("/tmp/loopml-ray-")
    longest_socket = f"{one}/session_2026-01-01_00-00-00_000000_4194304/sockets/dash_MetricsHead"
    assert len(longest_socket) < 108
    with pytest.raises(InvalidInput, match="ray_temp_dir"):
        _ray_local.ray_temp_dir(Settings(data_dir=tmp_path, ray_temp_dir=str(tmp_path / ("x" * 40))))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised by Ray's own modules on import
def test_ray_ports_are_derived_and_are_real_flags() -> None:
    from ray.scripts.scripts import start  # the `ray start` command itself

    ports = _ray_local.RayPorts.derive(16380)
    assert sorted(ports.named().values()) == list(range(16381, 16387))
    known = {opt for param in start.params for opt in param.opts}
    assert {arg.split("=")[0] for arg in ports.args()} <= known
    with pytest.raises(InvalidInput):
        _ray_local.RayPorts.derive(65530)


def test_busy_and_clashing_ports_are_refused(settings: Settings) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        with pytest.raises(Conflict, match=f"{busy} \\(mlflow_port\\)"):
            _processes.check_ports({"port": settings.port, "mlflow_port": busy})
    clash = launcher._ports_to_check(settings.model_copy(update={"mlflow_port": settings.ray_port + 1}))
    with pytest.raises(InvalidInput, match="would both use port"):
        _processes.check_ports(clash)


def test_ray_auth_headers_follow_rays_precedence(tmp_path: Path) -> None:
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    (tmp_path / "other").write_text("from-path")
    assert _ray_local.ray_auth_headers({"HOME": str(tmp_path)}) == {"Authorization": "Bearer from-home"}
    path_env = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN_PATH": str(tmp_path / "other")}
    assert _ray_local.ray_auth_headers(path_env) == {"Authorization": "Bearer from-path"}
    assert _ray_local.ray_auth_headers({**path_env, "RAY_AUTH_TOKEN": "env"}) == {"Authorization": "Bearer env"}
    assert _ray_local.ray_auth_headers({"HOME": str(tmp_path / "nobody")}) == {}


def test_mlflow_command_is_lean_and_local(tmp_path: Path) -> None:
    argv, env = mlflow_server_command(tmp_path, 5050)
    assert argv[:4] == [sys.executable, "-m", "loopml.registry._mlflow_exec", "server"]
    assert argv[argv.index("--workers") + 1] == "1" and argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "--serve-artifacts" in argv and "--disable-security-middleware" not in argv
    assert env == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                   "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow/mlflow.db"}


@pytest.mark.parametrize("given, used", [
    ("postgresql+psycopg://ml:pw-secret@db:5432/mlflow", "postgresql+psycopg://ml:pw-secret@db:5432/mlflow"),
    ("postgresql://ml:pw-secret@db:5432/mlflow", "postgresql+psycopg://ml:pw-secret@db:5432/mlflow"),
], ids=["psycopg", "bare-scheme-means-psycopg"])
def test_mlflow_backend_uri_travels_in_the_environment_never_in_argv(tmp_path: Path, given: str, used: str) -> None:
    argv, env = mlflow_server_command(tmp_path, 5050, given)
    assert env["MLFLOW_BACKEND_STORE_URI"] == used
    assert not any("pw-secret" in arg or "sqlite" in arg for arg in argv)


def test_a_password_in_the_mlflow_backend_uri_is_never_recorded(settings: Settings) -> None:
    backend = "postgresql+psycopg://ml:pw-secret@db.example/mlflow"
    settings.home.mkdir(mode=0o700)
    state = run_state.new_state(settings.model_copy(update={"mlflow_backend_uri": backend}))
    assert "pw-secret" not in state.model_dump_json() and state.secret_settings == [
        "mlflow_backend_uri"]


def test_the_mlflow_server_runs_as_one_process_that_answers(tmp_path: Path) -> None:
    """`mlflow server` would stay as a parent of its uvicorn: ours becomes the uvicorn."""
    port = launcher.free_port_block(1)
    (tmp_path / "mlflow").mkdir()
    argv, env = mlflow_server_command(tmp_path, port)
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _processes.wait_http(f"http://127.0.0.1:{port}/health", 60, proc=proc)
        server = psutil.Process(proc.pid)
        assert "uvicorn" in server.cmdline() and server.children(recursive=True) == []
    finally:
        proc.terminate()
        proc.wait(30)


# -- waiting -------------------------------------------------------------------------------


def test_wait_http_returns_the_answer(http_server: str) -> None:
    assert _processes.wait_http(f"{http_server}/ok", 5).json() == {"status": "ok"}


def test_wait_http_times_out(http_server: str) -> None:
    with pytest.raises(Unavailable, match="HTTP 503"):
        _processes.wait_http(f"{http_server}/down", 0.5)


def test_wait_http_notices_the_process_exiting(http_server: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(Unavailable, match="exited with code 3"):
        _processes.wait_http(f"{http_server}/down", 30, proc=proc)


def test_a_failed_component_is_named_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "mlflow.log"
    log.write_text("starting\nValueError: port taken\nstartup failed. Exiting.\n\n")
    record = _processes.ProcessRecord(name="mlflow", pid=1, pgid=1, cmdline=[], create_time=0, log=str(log))
    with pytest.raises(Unavailable) as caught, _processes.component_errors("MLflow server", record):
        raise Unavailable("exited with code 1 before http://x/health answered")
    message = caught.value.message
    assert "\n" not in message and message.startswith("MLflow server exited with code 1")
    assert "ValueError: port taken" in message and str(log) in message
    assert caught.value.details["log_tail"][-2:] == ["ValueError: port taken", "startup failed. Exiting."]


def test_up_result_serialises_without_surprises(tmp_path: Path) -> None:
    result = launcher.UpResult(url="http://h:1", admin_token="t", client_config=tmp_path / "c.json",
                               how_to_authenticate="x", ray_address="h:2", mlflow_url="http://h:3",
                               logs=tmp_path)
    assert json.loads(result.model_dump_json())["ray_dashboard_url"] is None
    assert (result.ray_env, result.started, result.kept) == ({}, [], [])


def test_stop_marked_ends_what_a_dead_parent_left_in_other_sessions(tmp_path):
    """The hub's proxy, service and workspaces carry the instance marker: found and stopped
    even after the hub was killed and they were re-parented."""
    env = {**os.environ, instance.MARKER: str(tmp_path)}
    parent = subprocess.Popen(["bash", "-c", TREE], env=env, start_new_session=True)
    children = descendants_when_ready(parent.pid, 2)
    parent.kill()
    parent.wait()
    assert all(child.is_running() for child in children)
    stopped = _processes.stop_marked(str(tmp_path), timeout=5)
    assert {child.pid for child in children} <= set(stopped)
    psutil.wait_procs(children, timeout=5)
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)
    assert _processes.stop_marked(str(tmp_path), timeout=5) == []


# -- modes of the data dir -------------------------------------------------------------------

SECRET_FILES = ("secrets.json", "client.json", "config.toml", "loopml.db", "loopml.db-wal", "ray/auth_token",
                "run/state.json", "hub/jupyterhub_cookie_secret", "hub/jupyterhub.sqlite", "mlflow/mlflow.db",
                "logs/platform.log")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_every_up_gives_an_existing_loose_data_dir_its_modes(settings: Settings, healthy_server: str) -> None:
    running_instance(settings, healthy_server)
    home = settings.home
    for name in SECRET_FILES:
        (home / name).parent.mkdir(exist_ok=True)
        if not (home / name).exists():
            (home / name).write_text("{}" if name.endswith(".json") else "# x\n")
        (home / name).chmod(0o666)
    for folder in (home, home / "ray", home / "run", home / "hub", home / "mlflow", home / "logs"):
        folder.chmod(0o777)
    try:
        launcher.up(settings)
        assert mode(home) == 0o700
        assert {name: mode(home / name) for name in SECRET_FILES} == {name: 0o600 for name in SECRET_FILES}
        assert {d: mode(home / d) for d in ("ray", "run", "hub", "mlflow", "logs")} == dict.fromkeys(
            ("ray", "run", "hub", "mlflow", "logs"), 0o700)
    finally:
        launcher.down(home)


def test_secure_modes_leaves_symlinks_and_project_folders_alone(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside"
    (home / "projects" / "demo").mkdir(parents=True)
    outside.write_text("not the platform's")
    outside.chmod(0o644)
    (home / "linked.json").symlink_to(outside)
    (home / "projects" / "demo").chmod(0o775)

    run_state.secure_modes(home)

    assert (mode(home), mode(outside), mode(home / "projects" / "demo")) == (0o700, 0o644, 0o775)
