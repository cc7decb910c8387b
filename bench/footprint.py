"""Benchmark: the memory of an idle platform, by PSS, per component.

Starts a platform of its own (``loopml up``, hub mode, in a temp dir on free ports), makes
sure project ``demo`` exists (``up`` seeds it for the dev provider's users), logs alice in
through the dev provider's form, opens her ``demo`` workspace (JupyterLab) and one kernel in
it, trains a tiny model in a one-cell notebook job (``loopml.log_model(..., alias="champion")``) and deploys it to an endpoint. It
then leaves everything idle for ``--idle`` seconds and measures every process of the
instance: the process trees of the PIDs in ``<home>/run/state.json`` (Ray head, MLflow
server, dev identity provider, hub), each process classified by its command line:

- hub: JupyterHub itself;
- proxy: configurable-http-proxy (node), a child of the hub;
- platform service: ``python -m loopml.server``, the hub's managed service;
- dev identity provider: ``node dev_idp.mjs``;
- Ray head: every Ray process but Serve's: GCS, raylet, dashboard and its agents (and, on a
  head that starts them, the log monitor, autoscaler monitor and client server: loopml's
  does not), the node supervisor (``loopml.launcher.ray_start``, also the driver of the job
  runner's Ray job), the idle pool workers (``ray::IDLE``), and the job runner (Dispatcher
  actor, pool workers holding a warm kernel, and those kernels; a JobSupervisor and dispatcher
  driver where the dispatcher was started through Ray Jobs);
- Serve: controller, HTTP proxy actor and the replicas of the endpoint;
- MLflow server;
- workspace: the JupyterLab server (``jupyterhub-singleuser``) and its kernel.

PSS (proportional set size) counts a page shared by N processes as 1/N to each of them, so
the components add up to what the instance costs the machine. Pages shared with processes
outside the instance (other loopml instances on this machine map the same venv) are also
split with them, so PSS here is a little below what the instance would cost alone: USS (pages
of one process only) and RSS are shown beside it as the lower and upper bounds.

Target: total PSS <= 2.5 GiB. Prints the table, writes ``bench/results/footprint.md``;
``loopml down`` always runs at the end.

Usage: ``python bench/footprint.py [--idle 10] [--keep]`` (``--keep`` leaves the temp dir and
its logs behind).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
import nbformat
import psutil
import tornado.httpclient
import tornado.websocket

from loopml.client import Client
from loopml.launcher import free_port_block

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # the repo root, for the tests' scripted login
from _platform import VENV_BIN, platform_env, state_records, stop_platform  # noqa: E402 (bench/ is on sys.path)

from tests.hub.login import oidc_login  # noqa: E402

RESULTS = BENCH / "results" / "footprint.md"
TARGET_MIB = 2.5 * 1024
MIB = 1024 * 1024
USER, PROJECT, MODEL, ENDPOINT = "alice", "demo", "iris", "iris"
COMPONENTS = ("hub", "proxy", "platform service", "dev identity provider", "Ray head", "Serve", "MLflow server",
              "workspace")

TRAIN = ("import loopml\n"
         "from sklearn.datasets import load_iris\n"
         "from sklearn.linear_model import LogisticRegression\n"
         "X, y = load_iris(return_X_y=True, as_frame=True)\n"
         "model = LogisticRegression(max_iter=500).fit(X, y)\n"
         f"loopml.log_model(model, {MODEL!r}, X, y, alias='champion')")


# -- the platform ---------------------------------------------------------------------------


@dataclass
class Platform:
    home: Path
    hub_url: str
    platform_url: str
    admin_token: str
    env: dict[str, str]


def start_platform(home: Path) -> Platform:
    """``loopml up`` (hub mode) in ``home`` on ports of its own, laid out as tests/hub/conftest.py does."""
    base = free_port_block(16)
    home.mkdir(parents=True)
    (home / "config.toml").write_text(
        f"port = {base}\nmlflow_port = {base + 1}\nray_dashboard_port = {base + 2}\nray_port = {base + 3}\n"
        f"serve_port = {base + 11}\nhub_port = {base + 12}\nhub_api_port = {base + 13}\n"
        f"proxy_api_port = {base + 14}\nidp_port = {base + 15}\nray_num_cpus = 2\n")
    env = platform_env(home)
    started = subprocess.run([str(VENV_BIN / "loopml"), "up", "--data-dir", str(home)], env=env,
                             capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        raise SystemExit(f"loopml up failed:\n{started.stdout}\n{started.stderr}")
    config = json.loads((home / "client.json").read_text())
    return Platform(home, f"http://127.0.0.1:{base + 12}", config["url"], config["token"], env)


# -- the workload: a workspace with a kernel, an endpoint ------------------------------------


def open_workspace(platform: Platform, timeout: float = 120) -> str:
    """Log alice in, spawn her ``demo`` workspace, start a kernel in it and wait until it answers;
    returns the kernel id."""
    session = httpx.Client(follow_redirects=True, timeout=60)
    landed = oidc_login(platform.hub_url, USER, client=session)
    if landed.status_code != 200:
        raise SystemExit(f"{USER} could not log in: HTTP {landed.status_code} at {landed.url}")
    server = f"{platform.hub_url}/user/{USER}/{PROJECT}"
    session.get(f"{platform.hub_url}/hub/spawn/{USER}/{PROJECT}")
    deadline = time.monotonic() + timeout
    while True:
        lab = session.get(f"{server}/lab")
        if lab.status_code == 200 and "JupyterLab" in lab.text:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the {PROJECT} workspace did not open within {timeout:.0f} s: "
                             f"HTTP {lab.status_code} at {lab.url}")
        time.sleep(0.5)
    xsrf = next((c.value for c in session.cookies.jar if c.name == "_xsrf" and c.path.startswith(f"/user/{USER}/")),
                "")
    answer = session.post(f"{server}/api/kernels", json={"name": "python3"},
                          headers={"X-XSRFToken": xsrf, "Referer": f"{server}/lab"})
    if answer.status_code != 201:
        raise SystemExit(f"could not start a kernel in the workspace: HTTP {answer.status_code}: {answer.text[:300]}")
    kernel = answer.json()["id"]
    cookies = "; ".join(f"{c.name}={c.value}" for c in session.cookies.jar if f"/user/{USER}/".startswith(c.path)
                        or c.path.startswith(f"/user/{USER}/{PROJECT}"))
    session.close()
    ws_url = f"{server.replace('http://', 'ws://')}/api/kernels/{kernel}/channels"
    try:
        asyncio.run(asyncio.wait_for(kernel_handshake(ws_url, cookies), max(1.0, deadline - time.monotonic())))
    except (TimeoutError, OSError, tornado.httpclient.HTTPClientError, tornado.websocket.WebSocketClosedError) as exc:
        raise SystemExit(f"the workspace's kernel {kernel} did not answer kernel_info: {exc!r}") from None
    return kernel


async def kernel_handshake(ws_url: str, cookies: str) -> None:
    """Connect to the kernel's channels as JupyterLab does and wait for its kernel_info_reply
    (a kernel started by REST with no client attached stays "starting" until someone asks)."""
    request = tornado.httpclient.HTTPRequest(ws_url, headers={"Cookie": cookies})
    conn = await tornado.websocket.websocket_connect(request)
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "kernel_info_request", "username": USER, "session": uuid.uuid4().hex,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "version": "5.3"}
    await conn.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": {},
                                         "channel": "shell", "buffers": []}))
    try:
        while True:
            raw = await conn.read_message()
            if raw is None:
                raise OSError(f"the kernel's websocket closed: {conn.close_code} {conn.close_reason}")
            if isinstance(raw, str):
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") == msg_id and \
                        msg.get("header", {}).get("msg_type") == "kernel_info_reply":
                    return
    finally:
        conn.close()


def deploy_endpoint(client: Client) -> str:
    """Train and register ``iris@champion`` in a one-cell notebook job, deploy it; returns the endpoint URL."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(TRAIN)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    job = client.wait(PROJECT, client.submit(PROJECT, nb, name="train-iris").id, timeout=300)
    if job.status.value != "SUCCEEDED":
        raise SystemExit(f"the training job ended {job.status.value}:\n{client.logs(PROJECT, job.id)[-3000:]}")
    deployed = client.deploy(PROJECT, f"{MODEL}@champion", ENDPOINT, replicas=1)
    return deployed.endpoint.url


# -- measuring ------------------------------------------------------------------------------


@dataclass
class Measured:
    component: str
    kind: str  # what the process is, within its component
    pid: int
    pss: int
    uss: int
    rss: int


def classify(cmdline: list[str], inherited: tuple[str, str], children: list[list[str]]) -> tuple[str, str]:
    """(component, kind) of a process from its command line and its children's; ``inherited``
    is its parent's (component, kind), which a process no rule knows keeps (``sh``, helpers)."""
    line = " ".join(cmdline)
    head = cmdline[0] if cmdline else ""
    if "configurable-http-proxy" in line:
        return "proxy", "configurable-http-proxy"
    if "loopml.server" in cmdline:
        return "platform service", "loopml.server"
    if "jupyterhub-singleuser" in line:
        return "workspace", "JupyterLab server"
    if "ipykernel" in line or "ipykernel_launcher" in line:
        return ("workspace", "kernel") if inherited[0] == "workspace" else (inherited[0], "job runner: warm kernel")
    if "dev_idp.mjs" in line:
        return "dev identity provider", "oidc-provider (node)"
    if inherited[0] == "MLflow server":
        return ("MLflow server", "uvicorn worker") if "uvicorn" in line else inherited
    if head.startswith("ray::"):
        actor = head.split()[0].split(".")[0].removeprefix("ray::")  # "ray::Class.method" while a call runs
        if actor.startswith("ServeReplica"):
            return "Serve", "replica"
        if actor == "ServeController":
            return "Serve", "controller"
        if actor == "ProxyActor":
            return "Serve", "HTTP proxy"
        if actor == "IDLE":
            # the job runner keeps warm kernels in pool workers (loopml.executor.runner.warm_up)
            warm = any("ipykernel" in " ".join(child) for child in children)
            return "Ray head", "job runner: warm worker" if warm else "idle pool worker"
        if actor in ("DashboardAgent", "RuntimeEnvAgent"):
            return "Ray head", actor
        if actor == "JobSupervisor":
            return "Ray head", "job runner: JobSupervisor (Ray Jobs)"
        if actor == "Dispatcher":
            return "Ray head", "job runner: Dispatcher actor"
        return "Ray head", f"actor {actor}"
    for needle, kind in (("loopml.executor", "job runner: dispatcher job driver"), ("gcs_server", "GCS"),
                         ("/raylet", "raylet"), ("dashboard/dashboard.py", "dashboard"),
                         ("multiprocessing.forkserver", "dashboard modules"), ("log_monitor.py", "log monitor"),
                         ("autoscaler/_private/monitor.py", "autoscaler monitor"),
                         ("ray.util.client.server", "client server"), ("setup_worker.py", "worker starting"),
                         ("default_worker.py", "worker starting")):
        if needle in line:
            return "Ray head", kind
    return inherited


ROOTS = {"ray": ("Ray head", "node supervisor + dispatcher driver"), "mlflow": ("MLflow server", "mlflow server"),
         "idp": ("dev identity provider", "oidc-provider (node)"), "hub": ("hub", "jupyterhub")}


def measure(home: Path) -> list[Measured]:
    """Every live process of the instance, walked from the recorded PIDs, with its PSS, USS and RSS."""
    measured: list[Measured] = []
    for record in state_records(home):
        root_class = ROOTS.get(record["name"], (record["name"], record["name"]))
        try:
            root = psutil.Process(record["pid"])
            if abs(root.create_time() - record["create_time"]) > 1:
                print(f"!!! PID {record['pid']} of {record['name']} is another process now; skipped")
                continue
        except psutil.NoSuchProcess:
            print(f"!!! {record['name']} (PID {record['pid']}) is not running")
            continue
        stack = [(root, root_class)]
        while stack:
            proc, inherited = stack.pop()
            try:
                children = proc.children()
                cls = root_class if proc is root else classify(proc.cmdline(), inherited, _cmdlines(children))
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            measured.append(Measured(cls[0], cls[1], proc.pid, info.pss, info.uss, info.rss))
            stack.extend((child, cls) for child in children)
    return measured


def _cmdlines(procs: list[psutil.Process]) -> list[list[str]]:
    found = []
    for proc in procs:
        try:
            found.append(proc.cmdline())
        except psutil.Error:
            pass
    return found


# -- report ---------------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / MIB:,.0f}"


def tables(measured: list[Measured]) -> tuple[list[str], list[str], float]:
    """(component table, per-kind table, total PSS MiB) as markdown lines."""
    by_component: dict[str, list[Measured]] = defaultdict(list)
    for m in measured:
        by_component[m.component].append(m)
    order = [c for c in COMPONENTS if c in by_component] + sorted(set(by_component) - set(COMPONENTS))
    summary = ["| component | processes | PSS MiB | USS MiB | RSS MiB |", "|---|---:|---:|---:|---:|"]
    for component in order:
        ms = by_component[component]
        summary.append(f"| {component} | {len(ms)} | {mib(sum(m.pss for m in ms))} | {mib(sum(m.uss for m in ms))} "
                       f"| {mib(sum(m.rss for m in ms))} |")
    for component in (c for c in COMPONENTS if c not in by_component):
        summary.append(f"| {component} | 0 (**not found**) | 0 | 0 | 0 |")
    total = sum(m.pss for m in measured)
    summary.append(f"| **total** | {len(measured)} | **{mib(total)}** | {mib(sum(m.uss for m in measured))} "
                   f"| {mib(sum(m.rss for m in measured))} |")

    detail = ["| component | process | count | PSS MiB |", "|---|---|---:|---:|"]
    for component in order:
        kinds: dict[str, list[Measured]] = defaultdict(list)
        for m in by_component[component]:
            kinds[m.kind].append(m)
        for kind, ms in sorted(kinds.items(), key=lambda item: -sum(m.pss for m in item[1])):
            detail.append(f"| {component} | {kind} | {len(ms)} | {mib(sum(m.pss for m in ms))} |")
    return summary, detail, total / MIB


def versions_line() -> str:
    import jupyterhub
    import jupyterlab
    import mlflow
    import ray

    return (f"ray {ray.__version__}, mlflow {mlflow.__version__}, jupyterhub {jupyterhub.__version__}, "
            f"jupyterlab {jupyterlab.__version__}, Python {sys.version.split()[0]}")


def report(summary: list[str], detail: list[str], total_mib: float, args: argparse.Namespace, took: float) -> str:
    met = total_mib <= TARGET_MIB
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    lines = [
        "# Footprint benchmark",
        "",
        f"`python bench/footprint.py --idle {args.idle:g}`: one `loopml up` (hub mode: dev OIDC provider, "
        "JupyterHub + configurable-http-proxy, the platform service, Ray head with Serve, MLflow server) with "
        f"alice's `{PROJECT}` workspace open (JupyterLab + one idle kernel) and one endpoint deployed (one replica, "
        f"LogisticRegression on iris, trained by a one-cell notebook job), idle {args.idle:g} s, then every process "
        f"of the instance measured. {versions_line()}; {os.cpu_count()} CPUs, load average {load} when measured.",
        "",
        "PSS splits each shared page among the processes mapping it, so the rows add up to what the instance costs. "
        "Other loopml instances on this machine map the same venv, and PSS splits those pages with them too: "
        "USS (private pages only) and RSS bound what the instance would cost alone.",
        "",
        *summary,
        "",
        f"Target: total PSS <= {TARGET_MIB / 1024:g} GiB: {total_mib:,.0f} MiB ({total_mib / 1024:.2f} GiB), "
        + ("met." if met else "**not met**."),
        "",
        "By process:",
        "",
        *detail,
        "",
        f"The whole run took {took:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=10, help="seconds of idling before measuring (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (the instance's logs)")
    args = parser.parse_args()

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="loopml-footprint-"))
    home = work / "home"
    try:
        print(f"starting the platform in {home}")
        platform = start_platform(home)
        with Client(platform.platform_url, platform.admin_token) as admin:
            if PROJECT not in admin.project_names():  # `up` seeds it for the dev provider's demo users
                admin.create_project(PROJECT)
            print(f"opening {USER}'s {PROJECT} workspace and a kernel in it")
            kernel = open_workspace(platform)
            print(f"kernel {kernel} answered; training {MODEL} in a notebook job and deploying it")
            url = deploy_endpoint(admin)
        print(f"endpoint {url} deployed; idling {args.idle:g} s")
        time.sleep(args.idle)
        measured = measure(home)
    finally:
        stop_platform(home)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    summary, detail, total_mib = tables(measured)
    text = report(summary, detail, total_mib, args, time.monotonic() - started)
    print()
    print("\n".join(summary))
    print(f"\ntarget total PSS <= {TARGET_MIB:,.0f} MiB: {total_mib:,.0f} MiB, "
          + ("met" if total_mib <= TARGET_MIB else "NOT MET"))
    print()
    print("\n".join(detail))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
