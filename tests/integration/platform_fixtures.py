"""Session fixtures: one real platform (Ray head, MLflow server, platform service) started
with ``loopml up --no-hub`` for the whole test session, and stopped with ``loopml down``,
which must leave no process behind. Each test gets a project of its own."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from loopml.client import Client
from loopml.launcher import free_port_block, ray_start
from loopml.launcher.run_state import node_temp_dir
from loopml.registry import mlflow_auth

LOOPML = str(Path(sys.executable).with_name("loopml"))
MONITOR_INTERVAL_S = 2  # policies are evaluated this often in the test platform
SCHEDULE_MIN_INTERVAL_S = 2  # schedules of the tests fire every 2 s (the default minimum is 60 s)
_LOG_LINE = re.compile(r"^[A-Z]+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")  # Serve's log lines start so
_ACCESS = re.compile(r" -- (?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) \S+ (\d{3}) ")


@dataclass
class Platform:
    home: Path
    url: str
    admin_token: str
    alice_token: str
    bob_token: str
    env: dict[str, str]
    monitor_interval_s: float = MONITOR_INTERVAL_S

    def client(self, token: str | None = None) -> Client:
        return Client(self.url, token or self.alice_token)

    def cli(self, *args: str, token: str | None = None, check: bool = False, timeout: float = 180):
        env = {**self.env, "LOOPML_URL": self.url, "LOOPML_TOKEN": token or self.alice_token}
        return subprocess.run([LOOPML, *args], env=env, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def state(self) -> dict:
        return json.loads((self.home / "run" / "state.json").read_text())

    def mlflow_env(self, project: str) -> dict[str, str]:
        """``MLFLOW_TRACKING_URI`` and project ``project``'s MLflow credentials, as its jobs,
        workspaces and replicas get them."""
        return mlflow_auth.project_env(self.home, self.state()["urls"]["mlflow"], project)


def mlflow_admin_env(home: Path) -> dict[str, str]:
    """``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` of the platform (MLflow's admin) of data dir
    ``home``, from its ``secrets.json``; {} when its MLflow does not authenticate."""
    secrets_file = json.loads((home / "secrets.json").read_text())
    if "mlflow_admin_password" not in secrets_file:
        return {}
    return {"MLFLOW_TRACKING_USERNAME": "loopml", "MLFLOW_TRACKING_PASSWORD": secrets_file["mlflow_admin_password"]}


def down_leaving_nothing(home: Path, env: dict[str, str]) -> None:
    """``loopml down`` the instance of ``home`` and assert that no process it ran is left."""
    state = json.loads((home / "run" / "state.json").read_text())
    pids = _descendants([p["pid"] for p in state["processes"]])
    stopped = subprocess.run([LOOPML, "down", "--data-dir", str(home)], env=env, capture_output=True, text=True,
                             timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    left = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not left, f"processes left after `loopml down`: {left}"
    for record in (r for r in state["processes"] if r["name"] == "ray"):
        # the head's supervisor stopped its node itself, not down's SIGKILL after the grace (a
        # worker node the tests run under bubblewrap dies with it: --die-with-parent)
        assert Path(record["log"]).read_text().rstrip().endswith(ray_start.STOPPED), record["log"]


def _descendants(pids: list[int]) -> set[int]:
    found = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            found.add(pid)
            found.update(child.pid for child in proc.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return found


def start_platform(home: Path, extra_config: str = "") -> tuple[Platform, str]:
    """``loopml up --no-hub`` from data dir ``home`` on a free port block, with tokens for
    alice and bob and ``extra_config`` (TOML lines) in its config.toml. Returns the platform
    and what ``up`` printed."""
    base = free_port_block(12)
    alice, bob = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    (home / "config.toml").write_text(
        f"port = {base}\nmlflow_port = {base + 1}\nray_dashboard_port = {base + 2}\nray_port = {base + 3}\n"
        f"serve_port = {base + 11}\nmonitor_interval_s = {MONITOR_INTERVAL_S}\n"
        f"schedule_min_interval_s = {SCHEDULE_MIN_INTERVAL_S}\n{extra_config}"
        f'[tokens."{alice}"]\nname = "alice"\n[tokens."{bob}"]\nname = "bob"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "RAY_ADDRESS"))}
    env["LOOPML_HOME"] = str(home)
    started = subprocess.run([LOOPML, "up", "--no-hub", "--data-dir", str(home)], env=env, capture_output=True,
                             text=True, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    config = json.loads((home / "client.json").read_text())
    assert config["url"] in started.stdout
    os.environ.update(mlflow_admin_env(home))  # the tests read and arrange MLflow as the platform does
    platform = Platform(home=home, url=config["url"], admin_token=config["token"], alice_token=alice,
                        bob_token=bob, env=env)
    return platform, started.stdout + started.stderr


def serve_logs(home: Path, pattern: str = "*.log") -> list[Path]:
    """The Serve log files (``proxy_*.log``, ``replica_*.log``, ``controller_*.log``) of the
    instance of data dir ``home``; [] when its Ray head is not recorded."""
    try:
        ray = next(p for p in json.loads((home / "run" / "state.json").read_text())["processes"] if p["name"] == "ray")
    except (OSError, ValueError, StopIteration):
        return []
    temp_dir = node_temp_dir(ray["cmdline"])
    return [] if temp_dir is None else sorted((temp_dir / "session_latest" / "logs" / "serve").glob(pattern))


def serve_log_excerpt(home: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of the instance's Serve logs that are not a 2xx access line
    (refusals, errors, replica and proxy events), oldest first; "" when there are none."""
    picked = []
    for log in serve_logs(home):
        for line in log.read_text(errors="replace").splitlines():
            stamped, access = _LOG_LINE.match(line), _ACCESS.search(line)
            if stamped and not (access and access.group(1).startswith("2")):
                picked.append((stamped.group(1), f"{log.name}: {line}"))
    return "\n".join(line for _, line in sorted(picked)[-lines:])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used the session platform reports the Serve log lines around it:
    a refusal or replica event seen only in CI is then explained by the CI output."""
    report = yield
    platform = item.funcargs.get("platform") if hasattr(item, "funcargs") else None
    if report.failed and call.when == "call" and isinstance(platform, Platform):
        excerpt = serve_log_excerpt(platform.home)
        if excerpt:
            report.sections.append(("Serve logs, last lines that are not 2xx", excerpt))
    return report


@pytest.fixture(scope="session")
def platform(tmp_path_factory) -> Platform:
    home = tmp_path_factory.mktemp("loopml-home")
    # The session's modules leave endpoints deployed (0.25 CPU a replica); on a 2-core
    # machine those would leave no whole CPU for the jobs of later modules.
    platform, _ = start_platform(home, "ray_num_cpus = 4\n")
    yield platform
    down_leaving_nothing(home, platform.env)


@pytest.fixture(scope="session")
def admin(platform) -> Client:
    return platform.client(platform.admin_token)


@pytest.fixture
def project(admin) -> str:
    """A fresh project whose only member is alice."""
    name = f"p-{uuid.uuid4().hex[:10]}"
    admin.create_project(name, members=["alice"])
    return name


@pytest.fixture
def alice(platform) -> Client:
    return platform.client()
