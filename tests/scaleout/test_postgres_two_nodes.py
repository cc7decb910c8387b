"""Scale-out on real engines: PostgreSQL as the platform DB and MLflow's backend store, and a
two-node Ray cluster on one machine. A job pinned to the second node trains and registers a
model; an endpoint placed on that node serves it; a platform restart loses nothing; and
``loopml down`` with work in flight, then ``up``, loses nothing either."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from mlflow.tracking import MlflowClient

from loopml.executor.models import JobStatus
from loopml.serving.service import app_name
from tests.integration.endpoints import replica_actors, score
from tests.integration.notebooks import SLOW, TRAIN_AND_LOG
from tests.integration.platform_fixtures import down_leaving_nothing
from tests.integration.processes import kernel_pid, restart_platform_service, up_again, wait_for
from tests.reliability.ledger import Traffic, assert_all_captured, assert_labels_kept
from tests.scaleout.conftest import MLFLOW_DB, PLATFORM_DB

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
    labelled = wait_for(lambda: alice.feedback(project, "pinned", [
        {"request_id": "scaleout-1", "label": predictions}]).unknown == [], timeout=30, every=0.5)
    assert labelled

    restart_platform_service(pg_platform)

    assert alice.job(project, job.id).status == JobStatus.SUCCEEDED
    kept = alice.endpoint(project, "pinned")
    assert kept.resources.custom == {"node2": 0.1} and kept.version == 1
    assert alice.monitor(project, "pinned").labelled == 1
    with postgres.connect(PLATFORM_DB) as db:
        assert db.execute("SELECT resources FROM endpoints WHERE project = %s AND name = 'pinned'",
                          (project,)).fetchone() == ({"custom": {"node2": 0.1}},)
    assert score(endpoint).json() == {"predictions": predictions}
    assert replica_nodes(pg_platform, app_name(project, "pinned")) == [node2.node_id]

    alice.delete_endpoint(project, "pinned")
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
