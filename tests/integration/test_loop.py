"""The feedback loop end to end on real Ray, MLflow and Serve: in-distribution traffic raises
nothing; shifted traffic raises a drift alert naming the shifted features; the policy
requeues the serving version's training job exactly once; its version is the challenger,
linked to the alert, scored on the labelled requests, promoted; the endpoint switches to it
with no failed request."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_iris

from loopml.executor.models import JobStatus, Trigger
from tests.integration.notebooks import TRAIN_AND_LOG
from tests.integration.processes import wait_for

IRIS = load_iris(as_frame=True)
SHIFTED = ["petal length (cm)", "petal width (cm)"]


def send(url: str, rows, prefix: str) -> list[str]:
    ids = []
    with httpx.Client(timeout=30) as http:
        for i, row in enumerate(rows):
            request_id = f"{prefix}-{i}"
            answer = http.post(url, headers={"x-request-id": request_id},
                               json={"dataframe_split": {"columns": list(IRIS.data.columns), "data": [row]}})
            assert answer.status_code == 200, answer.text
            ids.append(request_id)
    return ids


@pytest.mark.timeout(600)
def test_drift_requeues_training_once_and_the_better_challenger_is_promoted(platform, admin, alice, project):
    api = f"{platform.url}/api/v1/projects/{project}"
    auth = {"Authorization": f"Bearer {platform.alice_token}"}
    first = alice.wait(project, alice.submit(project, TRAIN_AND_LOG, parameters={"C": 0.001}).id, timeout=180)
    assert first.status == JobStatus.SUCCEEDED, first.error
    endpoint = alice.deploy(project, "iris@champion", "loop", public=True).endpoint
    url = endpoint.url + "/invocations"
    policy = httpx.put(f"{api}/endpoints/loop/policy", headers=auth, json={
        "window": "30m", "min_samples": 100, "drift": True, "action": "requeue", "cooldown_s": 3600,
        "auto_promote": True, "promote_margin": 0.05, "parameters": {"C": 1.0}})
    assert policy.status_code == 200, policy.text

    rng = np.random.default_rng(7)
    rows = IRIS.data.to_numpy()
    picked = rng.integers(0, len(rows), 150)
    calm_ids = send(url, rows[picked].tolist(), "calm")
    labels = [{"request_id": i, "label": int(IRIS.target[p])} for i, p in zip(calm_ids, picked, strict=True)]
    wait_for(lambda: alice.monitor(project, "loop", window="30m").requests >= 150, timeout=30, every=0.5)
    fed = httpx.post(f"{api}/endpoints/loop/feedback", headers=auth, json=labels, timeout=30).json()
    assert fed["accepted"] == 150 and fed["unknown"] == []
    time.sleep(3 * platform.monitor_interval_s)
    assert httpx.get(f"{api}/alerts", headers=auth).json() == []
    assert alice.monitor(project, "loop", window="30m").drifted_features == []

    shifted = rows[rng.integers(0, len(rows), 300)].copy()
    shifted[:, [2, 3]] += 3.0
    seen, stop = [], threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                answer = http.post(url, json={"dataframe_split": {"columns": list(IRIS.data.columns),
                                                                  "data": [rows[0].tolist()]}})
                seen.append((answer.status_code, answer.headers.get("x-loopml-model-version")))
                time.sleep(0.05)

    loop = threading.Thread(target=traffic)
    loop.start()
    try:
        send(url, shifted.tolist(), "shifted")

        def drift_alert():
            """a drift alert"""
            return [a for a in httpx.get(f"{api}/alerts", headers=auth).json() if a["kind"] == "drift"]

        [alert] = wait_for(drift_alert, timeout=60)
        # the pass may run while the shifted rows are still arriving: petal width (no overlap with
        # the reference) is named first, petal length once enough rows are in; never another one
        assert set(alert["detail"]["features"]) <= set(SHIFTED) and alert["action"] == "requeue"
        assert "petal width (cm)" in alert["detail"]["features"]
        wait_for(lambda: sorted(alice.monitor(project, "loop", window="30m").drifted_features) == sorted(SHIFTED),
                 timeout=30, every=0.5)
        time.sleep(3 * platform.monitor_interval_s)  # more passes over the same drift: still one requeue
        requeued = [j for j in alice.jobs(project) if j.trigger == Trigger.POLICY]
        assert [j.id for j in requeued] == [alert["job_id"]] and requeued[0].parent_id == first.id
        assert requeued[0].parameters["C"] == 1.0

        def evaluated():
            """the challenger's evaluation"""
            found = httpx.get(f"{api}/alerts", headers=auth, params={"job_id": alert["job_id"]}).json()
            return found if found and found[0]["evaluation"] else None

        [done] = wait_for(evaluated, timeout=240, every=2)
        assert done["id"] == alert["id"] and done["produced_version"] == 2
        assert done["evaluation"]["winner"] == "challenger" and done["evaluation"]["promoted"] is True
        assert done["evaluation"]["challenger_quality"]["accuracy"] > done["evaluation"]["champion_quality"]["accuracy"]
        wait_for(lambda: any(v == "2" for _, v in seen[-5:]), timeout=30, every=0.2)
    finally:
        stop.set()
        loop.join(30)
    assert [s for s in seen if s[0] != 200] == [] and {v for _, v in seen} == {"1", "2"}
    assert alice.endpoint(project, "loop").version == 2
    model = alice.model(project, "iris")
    assert model.aliases["champion"] == 2
    assert [v.lineage.job_id for v in model.versions if v.version == 2] == [alert["job_id"]]

    # where the project stands: every stage after the workspace (headless: there is none), each
    # with the object of this run that reached it
    loop = alice.loop(project)
    reached = {s.name.value: (s.object.kind, s.object.id) if s.reached else None for s in loop.stages}
    assert {name: found for name, found in reached.items() if name != "monitored"} == {
        "workspace_opened": None, "code_submitted": ("job", alert["job_id"]), "trained": ("job", alert["job_id"]),
        "versioned": ("model_version", "iris/2"), "live": ("endpoint", "loop"),
        "feedback_received": ("endpoint", "loop")}
    kind, alert_id = reached["monitored"]  # the newest alert: the drift one, or one opened on v2 since
    assert kind == "alert" and alert_id in {a.id for a in alice.alerts(project)}
    assert loop.furthest.value == "feedback_received" and loop.stage("workspace_opened").note is None
    assert loop.stage("trained").at == alice.job(project, alert["job_id"]).finished_at
    assert loop.stage("live").object.detail == "serving iris v2"
