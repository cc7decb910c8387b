"""A trained iris model served by a real endpoint, and the calls tests make to it."""

from __future__ import annotations

import json
import os

import httpx
from sklearn.datasets import load_iris

from loopml.executor.models import JobStatus
from loopml.launcher.ray_local import ray_auth_headers
from tests.integration.notebooks import TRAIN_AND_LOG

X = load_iris(as_frame=True).data.iloc[:10]
COLUMNS = list(X.columns)
ROWS = {"dataframe_split": {"columns": COLUMNS, "data": X.values.tolist()}}
INVOKE = "/invocations"


def train_and_deploy(platform, admin, project: str, name: str, *, public: bool = False) -> dict:
    """Create ``project`` (member alice), train and register ``iris`` in it with a job, and
    deploy ``iris@champion`` as endpoint ``name``. Returns ``{project, name, url, key,
    predictions}``: ``predictions`` are the model's own answers for :data:`X`."""
    admin.create_project(project, members=["alice"])
    alice = platform.client()
    job = alice.wait(project, alice.submit(project, TRAIN_AND_LOG).id, timeout=180)
    assert job.status == JobStatus.SUCCEEDED, job
    printed = [o.text for o in alice.output(project, job.id).cells[-1].outputs if o.get("name") == "stdout"]
    predictions = json.loads(printed[-1].strip().splitlines()[-1])["predictions"]
    answer = httpx.post(f"{platform.url}/api/v1/projects/{project}/endpoints", timeout=180,
                        headers={"Authorization": f"Bearer {platform.alice_token}"},
                        json={"name": name, "model": "iris@champion", "public": public})
    assert answer.status_code == 201, answer.text
    deployed = answer.json()
    assert deployed["endpoint"]["version"] == 1 and deployed["endpoint"]["status"] == "RUNNING"
    return {"project": project, "name": name, "url": deployed["endpoint"]["url"], "key": deployed["key"],
            "predictions": predictions}


def score(endpoint: dict, *, http: httpx.Client | None = None, request_id: str | None = None,
          timeout: float = 30) -> httpx.Response:
    """POST :data:`ROWS` to the endpoint's ``/invocations`` with its key (if it has one)."""
    headers = {"Authorization": f"Bearer {endpoint['key']}"} if endpoint.get("key") else {}
    if request_id:
        headers["x-request-id"] = request_id
    send = http.post if http is not None else httpx.post
    return send(endpoint["url"] + INVOKE, json=ROWS, headers=headers, timeout=timeout)


def replica_actors(platform, app: str) -> list[dict]:
    """The live Serve replicas of application ``app`` (``pid``, ``node_id``…), from Ray's state API."""
    state = platform.state()
    answer = httpx.get(f"{state['urls']['ray']}/api/v0/actors", params={"limit": 10000}, timeout=30,
                       headers=ray_auth_headers({**os.environ, **state["ray_env"]}))
    assert answer.status_code == 200, answer.text
    return [a for a in answer.json()["data"]["result"]["result"]
            if a["class_name"] == f"ServeReplica:{app}:model" and a["state"] == "ALIVE"]


def replica_pids(platform, app: str) -> list[int]:
    """PIDs of the live Serve replicas of application ``app``."""
    return [a["pid"] for a in replica_actors(platform, app)]
