"""Scale-out on real engines: PostgreSQL as the platform DB and MLflow's backend store, and a
two-node Ray cluster on one machine, whose second node works like another host (its own
address and a mount namespace without the data dir, the checkout or the head's temp dir). A
job pinned to the second node trains and registers a model; an endpoint placed on that node
serves it on the advertised URL and on the node's own address, its captures and labels
reach the platform, also once the platform moved to another port; and ``loopml down`` with
work in flight, then ``up``, loses nothing either."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from mlflow.tracking import MlflowClient

from loopml import sandbox
from loopml.executor.models import JobStatus
from loopml.launcher import free_port_block
from loopml.launcher.ray_local import ray_auth_headers
from loopml.launcher.run_state import node_temp_dir, read_state, write_state
from loopml.serving.service import app_name
from tests.integration.endpoints import replica_actors, replica_pids, score
from tests.integration.notebooks import SLOW, TRAIN_AND_LOG
from tests.integration.platform_fixtures import down_leaving_nothing
from tests.integration.processes import kernel_pid, platform_service, up_again, wait_for
from tests.reliability.ledger import Traffic, assert_all_captured, assert_labels_kept
from tests.scaleout.conftest import MLFLOW_DB, PLATFORM_DB
from tests.scaleout.isolated_node import NODE_IP, hidden_paths

MODEL = "iris"


@pytest.fixture(scope="module")
def project(pg_platform) -> str:
    name = f"p-{uuid.uuid4().hex[:10]}"
    pg_platform.client(pg_platform.admin_token).create_project(name, members=["alice"])
    return name


@pytest.fixture(scope="module")
def trained(pg_platform, node2, project):
    """The training job, pinned to node2, once it ended; and the predictions it printed."""
    alice = pg_platform.client()
    submitted = alice.submit(project, TRAIN_AND_LOG, parameters={"model_name": MODEL},
                             resources={"cpus": 1, "custom": {"node2": 1}})
    job = alice.wait(project, submitted.id, timeout=240)
    assert job.status == JobStatus.SUCCEEDED, alice.logs(project, job.id)
    printed = [o.text for o in alice.output(project, job.id).cells[-1].outputs if o.get("name") == "stdout"]
    return job, json.loads(printed[-1].strip().splitlines()[-1])["predictions"]


def replica_nodes(platform, app: str) -> list[str]:
    """Ray node ids of the live Serve replicas of application ``app``."""
    return [a["node_id"] for a in replica_actors(platform, app)]


def node_processes(node2) -> dict[int, psutil.Process]:
    """The second node's processes (``raylet``, its agents, workers and what they start) by pid."""
    return {p.pid: p for p in psutil.Process(node2.pid).children(recursive=True)}


def test_the_second_node_works_like_another_host(pg_platform, node2):
    state = pg_platform.state()
    answer = httpx.get(f"{state['urls']['ray']}/api/v0/nodes", params={"limit": 100}, timeout=30,
                       headers=ray_auth_headers({**os.environ, **state["ray_env"]}))
    ips = {n["node_id"]: n["node_ip"] for n in answer.json()["data"]["result"]["result"] if n["state"] == "ALIVE"}
    assert ips[node2.node_id] == NODE_IP and sorted(ips.values()) == ["127.0.0.1", NODE_IP]
    raylet = next(p for p in node_processes(node2).values() if p.name() == "raylet")
    # what the raylet (and every process it starts) sees, through its own root
    root = f"/proc/{raylet.pid}/root"
    head_temp = node_temp_dir(next(p for p in state["processes"] if p["name"] == "ray")["cmdline"])
    hidden = hidden_paths(pg_platform.home, str(head_temp))
    assert all(path.exists() for path in hidden), hidden
    assert [str(path) for path in hidden if os.path.exists(root + str(path))] == []
    assert all(os.path.exists(root + path) for path in sandbox.python_paths())


def core_worker_port(node2, pid: int) -> int | None:
    """The port of Ray's own gRPC server in worker process ``pid`` of the second node, from its log."""
    for log in (node2_temp_dir(node2) / "session_latest" / "logs").glob(f"python-core-worker-*_{pid}.log"):
        if match := re.search(r"worker server started, listening on port (\d+)", log.read_text(errors="replace")):
            return int(match.group(1))
    return None


def node2_temp_dir(node2) -> Path:
    return node_temp_dir(psutil.Process(node2.pid).cmdline())


def serving_listeners(node2) -> dict[str, set[tuple[str, int]]]:
    """The (address, port) pairs each Serve process of the second node (replicas, HAProxy,
    Serve's own proxy) listens on, by process name; an IPv4-mapped address as IPv4. Ray's own
    servers there (the raylet, its agents, each worker's gRPC server) listen as Ray's cluster
    mode has them on any address but 127.0.0.1 (all interfaces, token-checked): not ours,
    left out."""
    listeners: dict[str, set[tuple[str, int]]] = {}
    for process in node_processes(node2).values():
        name = process.name()
        if "Serve" in name or "haproxy" in name or "ProxyActor" in name:
            ray_own = core_worker_port(node2, process.pid)
            for connection in process.net_connections("tcp"):
                if connection.status == psutil.CONN_LISTEN and connection.laddr.port != ray_own:
                    ip = connection.laddr.ip.removeprefix("::ffff:")
                    listeners.setdefault(name, set()).add((ip, connection.laddr.port))
    return listeners


def test_a_job_on_the_second_node_tracks_and_registers_in_postgresql(pg_platform, postgres, node2, project, trained):
    job, _ = trained
    assert job.node == node2.node_id
    alice = pg_platform.client()
    model = alice.model(project, MODEL)
    assert [v.version for v in model.versions] == [1] and model.versions[0].lineage.job_id == job.id
    mlflow = MlflowClient(tracking_uri=pg_platform.state()["urls"]["mlflow"])
    assert mlflow.get_run(job.mlflow_run_id).data.metrics["train_accuracy"] > 0.9

    with postgres.connect(PLATFORM_DB) as db:
        assert db.execute("SELECT status, node FROM jobs WHERE id = %s", (job.id,)).fetchall() == [
            ("SUCCEEDED", node2.node_id)]
    with postgres.connect(MLFLOW_DB) as db:
        full = f"{project}.{MODEL}"
        assert db.execute("SELECT count(*) FROM registered_models WHERE name = %s", (full,)).fetchone() == (1,)
        assert db.execute("SELECT version, run_id FROM model_versions WHERE name = %s", (full,)).fetchall() == [
            (1, job.mlflow_run_id)]
    assert not [p for p in pg_platform.home.rglob("*") if p.suffix in (".db", ".sqlite", ".sqlite3")]
    recorded = [pg_platform.home / "run" / "state.json", *(pg_platform.home / "logs").iterdir()]
    assert not [p.name for p in recorded if postgres.password in p.read_text(errors="replace")]


@pytest.mark.parametrize("resources, status, says", [
    ({"custom": {"CPU": 1}}, 422, "invalid custom resource name 'CPU'"),
    ({"node2": 0.1}, 422, 'given as {"custom": {"NAME": AMOUNT}}'),
    ({"custom": {"node3": 0.1}}, 422, "no node of the Ray cluster offers node3=0.1"),
    ({"custom": {"node2": 2}}, 422, "custom resources of its nodes: node2"),
], ids=["reserved-name", "not-under-custom", "nobody-offers-it", "more-than-a-node-has"])
def test_a_deploy_with_resources_no_node_can_give_is_refused(pg_platform, node2, project, trained, resources,
                                                             status, says):
    answer = httpx.post(f"{pg_platform.url}/api/v1/projects/{project}/endpoints", timeout=60,
                        headers={"Authorization": f"Bearer {pg_platform.alice_token}"},
                        json={"name": "refused", "model": f"{MODEL}/1", "resources": resources})
    assert answer.status_code == status and says in answer.json()["message"], answer.text
    assert [e.name for e in pg_platform.client().endpoints(project)] == []


def on_node2(url: str) -> str:
    """An endpoint URL on the second node's own HAProxy instead of the advertised (head's) one."""
    return url.replace("://127.0.0.1:", f"://{NODE_IP}:", 1)


def restart_platform_on(platform, port: int) -> None:
    """The platform service stopped, then started by ``loopml up`` on ``port`` while Ray and
    the endpoints keep running; ``platform.url`` follows it. (``up`` keeps the settings a
    running instance was started with, so the recorded port is changed with config.toml.)"""
    service = platform_service(platform)
    service.terminate()
    service.wait(30)
    state = read_state(platform.home)
    old = state.settings["port"]
    state.settings["port"] = port
    state.urls["platform"] = state.urls["platform"].replace(f":{old}", f":{port}")
    write_state(platform.home, state)
    config = platform.home / "config.toml"
    config.write_text(re.sub(r"(?m)^port = \d+$", f"port = {port}", config.read_text()))
    up_again(platform)
    platform.url = json.loads((platform.home / "client.json").read_text())["url"]
    assert platform.url.endswith(f":{port}"), platform.url


def captured(platform, project: str, endpoint: str, request_id: str, label) -> bool:
    return platform.client().feedback(project, endpoint, [{"request_id": request_id, "label": label}]).unknown == []


def test_an_endpoint_placed_on_the_second_node_serves_and_survives_a_restart(pg_platform, postgres, node2,
                                                                             project, trained):
    job, predictions = trained
    alice = pg_platform.client()
    deployed = alice.deploy(project, f"{MODEL}/1", "pinned", resources={"custom": {"node2": 0.1}})
    assert deployed.endpoint.status == "RUNNING" and deployed.endpoint.resources.custom == {"node2": 0.1}
    assert replica_nodes(pg_platform, app_name(project, "pinned")) == [node2.node_id]
    endpoint = {"url": deployed.endpoint.url, "key": deployed.key}
    answer = score(endpoint, request_id="scaleout-1")
    assert answer.status_code == 200 and answer.json() == {"predictions": predictions}
    # the node's own HAProxy listens on the node's address and serves it too
    answer = score({**endpoint, "url": on_node2(endpoint["url"])}, request_id="scaleout-2")
    assert answer.status_code == 200 and answer.json() == {"predictions": predictions}
    for request_id in ("scaleout-1", "scaleout-2"):
        assert wait_for(lambda rid=request_id: captured(pg_platform, project, "pinned", rid, predictions), timeout=30,
                        every=0.5)
    replicas = replica_pids(pg_platform, app_name(project, "pinned"))
    listeners = serving_listeners(node2)
    served = {name: ips for name, ips in listeners.items() if "ProxyActor" not in name}
    assert any("ServeReplica" in name for name in served) and any("haproxy" in name for name in served), listeners
    assert {ip for ips in served.values() for ip, _ in ips} == {NODE_IP}, listeners
    # Serve's Python proxy, HAProxy's backup server while no replica is up, stays on loopback
    assert {ip for name, ips in listeners.items() if "ProxyActor" in name for ip, _ in ips} <= {"127.0.0.1"}, listeners
    port = int(pg_platform.url.rsplit(":", 1)[1].split("/")[0])

    restart_platform_on(pg_platform, free_port_block(1))  # the platform moves; the endpoint is not redeployed
    try:
        alice = pg_platform.client()
        assert alice.job(project, job.id).status == JobStatus.SUCCEEDED
        kept = alice.endpoint(project, "pinned")
        assert kept.resources.custom == {"node2": 0.1} and kept.version == 1
        assert alice.monitor(project, "pinned").labelled == 2
        with postgres.connect(PLATFORM_DB) as db:
            assert db.execute("SELECT resources FROM endpoints WHERE project = %s AND name = 'pinned'",
                              (project,)).fetchone() == ({"custom": {"node2": 0.1}},)
        assert score(endpoint, request_id="scaleout-3").json() == {"predictions": predictions}
        # the replica sends its captures to the platform's new address, found in Ray's KV store
        assert wait_for(lambda: captured(pg_platform, project, "pinned", "scaleout-3", predictions), timeout=30,
                        every=0.5)
        assert alice.monitor(project, "pinned").labelled == 3
        assert replica_pids(pg_platform, app_name(project, "pinned")) == replicas
        assert replica_nodes(pg_platform, app_name(project, "pinned")) == [node2.node_id]
    finally:
        restart_platform_on(pg_platform, port)

    pg_platform.client().delete_endpoint(project, "pinned")
    with postgres.connect(PLATFORM_DB) as db:
        assert db.execute("SELECT count(*) FROM endpoints WHERE project = %s", (project,)).fetchone() == (0,)


def test_down_with_work_in_flight_loses_nothing_and_leaves_no_process(pg_platform, project, trained):
    """``loopml down`` while a job runs and clients call an endpoint, then ``loopml up``: every
    process is gone in between, and nothing accepted is lost. (The extra node is not started
    again by ``up``, so the job and the endpoint here are not pinned to it.)"""
    job, predictions = trained
    alice = pg_platform.client()
    deployed = alice.deploy(project, f"{MODEL}/1", "open")
    served = {"project": project, "name": "open", "url": deployed.endpoint.url, "key": deployed.key}
    running = alice.submit(project, SLOW, parameters={"seconds": 10}, max_retries=1)
    kernel_pid(alice, project, running.id)
    with Traffic(served, threads=2) as traffic:
        wait_for(lambda: len(traffic.answered) >= 20, timeout=30)
        labelled = dict(traffic.answered)
        assert_all_captured(alice, served, labelled)
        answered = len(traffic.answered)
        wait_for(lambda: len(traffic.answered) >= answered + 20, timeout=30)
        assert alice.job(project, running.id).status == JobStatus.RUNNING
        down_leaving_nothing(pg_platform.home, pg_platform.env)  # under traffic

    up_again(pg_platform)
    assert_labels_kept(alice, served, labelled)
    # what the replica answered just before `down` (and had not sent yet) was flushed, not dropped
    assert_all_captured(alice, served, traffic.answered)
    assert [v.version for v in alice.model(project, MODEL).versions] == [1]
    assert alice.job(project, job.id).status == JobStatus.SUCCEEDED
    answer = wait_for(lambda: _answer(served), timeout=120, every=1)  # Serve was shut down: redeployed
    assert answer.json() == {"predictions": predictions}
    done = alice.wait(project, running.id, timeout=180)
    assert done.status == JobStatus.SUCCEEDED
    if done.attempt == 2:  # its runner died with Ray (else it ended while `down` drained Serve)
        assert "the runner was lost" in alice.logs(project, running.id)


def _answer(endpoint: dict) -> httpx.Response | None:
    try:
        answer = score(endpoint, timeout=10)
    except httpx.HTTPError:  # Serve's proxy is not listening yet
        return None
    return answer if answer.status_code == 200 else None
