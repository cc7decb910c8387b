"""Endpoint monitoring on the real platform: captured traffic, drift against the version's
reference sample, quality from feedback labels, the CLI, and who may see any of it."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
import time
import uuid

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_iris

from loopml.errors import Forbidden
from loopml.executor.models import JobStatus
from loopml.launcher.ray_local import ray_auth_headers
from loopml.serving.service import app_name
from tests.integration.notebooks import TRAIN_AND_LOG

IRIS = load_iris(as_frame=True)
COLUMNS = list(IRIS.data.columns)
SHIFTED = [COLUMNS[1], COLUMNS[2]]
SHORT_WINDOW, SHORT_WINDOW_S = "30s", 30


@pytest.fixture(scope="module")
def live(platform, admin):
    """A fresh project with iris trained by a job and deployed to endpoint 'iris-mon' (no traffic yet)."""
    project = f"mon-{uuid.uuid4().hex[:8]}"
    admin.create_project(project, members=["alice"])
    alice = platform.client()
    job = alice.wait(project, alice.submit(project, TRAIN_AND_LOG).id, timeout=180)
    assert job.status == JobStatus.SUCCEEDED, job.error
    deployed = alice.deploy(project, "iris", "iris-mon")
    return {"project": project, "url": deployed.endpoint.url + "/invocations", "key": deployed.key}


def sample(count: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, list[int]]:
    """``count`` iris rows with small noise (kept to iris's 0.1 cm precision), SHIFTED features moved by ``shift``."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(IRIS.data), count)
    rows = np.round(IRIS.data.to_numpy()[index] + rng.normal(0, 0.05, (count, 4)), 1)
    rows[:, [1, 2]] += shift
    return rows, IRIS.target.to_numpy()[index].tolist()


def send(live, rows: np.ndarray, tag: str) -> list[str]:
    """One single-row request per row, each with its own x-request-id; returns the ids."""
    ids = [f"{tag}-{i}-{uuid.uuid4().hex[:8]}" for i in range(len(rows))]
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {live['key']}"}) as http:
        for request_id, row in zip(ids, rows, strict=True):
            answer = http.post(live["url"], headers={"x-request-id": request_id},
                               json={"dataframe_split": {"columns": COLUMNS, "data": [row.tolist()]}})
            assert answer.status_code == 200, answer.text
            # Serve's proxy and the replica both set x-request-id: the header comes back twice
            assert set(answer.headers.get_list("x-request-id", split_commas=True)) == {request_id}
    return ids


def captured(alice, live, window: str, count: int, timeout: float = 20):
    """The report over ``window`` once it counts ``count`` requests (capture arrives within ~1-2 s)."""
    deadline = time.monotonic() + timeout
    report = alice.monitor(live["project"], "iris-mon", window)
    while report.requests < count and time.monotonic() < deadline:
        time.sleep(0.5)
        report = alice.monitor(live["project"], "iris-mon", window)
    assert report.requests == count, report.notes
    return report


def test_reports_show_traffic_drift_and_quality_from_feedback(platform, live, tmp_path):
    alice = platform.client()
    project = live["project"]

    calm, classes = sample(200, seed=1)
    ids = send(live, calm, "calm")
    calm_sent = time.monotonic()
    report = captured(alice, live, "1h", 200)
    assert (report.version, report.errors, report.refused, report.error_rate) == (1, 0, 0, 0.0)
    assert report.latency_ms["p50"] > 0 and sum(report.trend.requests) == 200
    assert [d["feature"] for d in report.drift] == COLUMNS and {d["n_live"] for d in report.drift} == {200}
    assert report.drifted_features == [] and report.prediction_drift["n_live"] == 200
    assert report.quality is None and report.labelled == 0

    labels = [{"request_id": i, "label": c} for i, c in zip(ids[:100], classes[:100], strict=True)]
    unknown = ["never-sent-1", "never-sent-2"]
    first = alice.feedback(project, "iris-mon", labels + [{"request_id": u, "label": 0} for u in unknown])
    assert (first.accepted, first.updated, first.unchanged, first.unknown) == (100, 0, 0, unknown)
    resent = alice.feedback(project, "iris-mon", labels)
    assert (resent.accepted, resent.updated, resent.unchanged, resent.unknown) == (0, 0, 100, [])
    labelled = alice.monitor(project, "iris-mon", "1h")
    assert labelled.labelled == 100 and labelled.quality["n"] == 100 and labelled.quality["accuracy"] >= 0.9

    shown = platform.cli("monitor", f"{project}/iris-mon", "--window", "1h")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^requests +200 ", shown.stdout, re.M) and re.search(r"^accuracy +0\.9", shown.stdout, re.M)
    assert re.search(r"^drifted: +none$", shown.stdout, re.M)
    csv = tmp_path / "labels.csv"
    csv.write_text("request_id,label\n" + "".join(f"{i},{c}\n" for i, c in zip(ids[:5], classes[:5], strict=True))
                   + "never-sent-3,1\n")
    sent = platform.cli("feedback", "iris-mon", str(csv), "-P", project)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout == "iris-mon: 0 accepted, 0 updated, 5 unchanged, 1 unknown\n"
    assert sent.stderr.startswith("warning: 1 request ids") and "never-sent-3" in sent.stderr

    # a short window that holds only the shifted traffic: the calm requests must have left it
    time.sleep(max(0.0, calm_sent + SHORT_WINDOW_S + 1 - time.monotonic()))
    send(live, sample(200, seed=2, shift=3.0)[0], "shifted")
    drifted = captured(alice, live, SHORT_WINDOW, 200)
    assert drifted.drifted_features == SHIFTED, drifted.drift
    assert {d["n_live"] for d in drifted.drift} == {200}


def test_non_members_cannot_read_reports_or_send_labels(platform, live):
    bob = platform.client(platform.bob_token)
    with pytest.raises(Forbidden):
        bob.monitor(live["project"], "iris-mon")
    with pytest.raises(Forbidden):
        bob.feedback(live["project"], "iris-mon", [{"request_id": "x", "label": 1}])


def replica_capture(platform, app: str) -> dict:
    """The ``capture`` part of the config Serve hands the replicas of ``app`` (Ray's dashboard API)."""
    state = platform.state()
    answer = httpx.get(f"{state['urls']['ray']}/api/serve/applications/", timeout=30,
                       headers=ray_auth_headers({**os.environ, **state["ray_env"]}))
    assert answer.status_code == 200, answer.text
    return answer.json()["applications"][app]["deployments"]["model"]["deployment_config"]["user_config"]["capture"]


def test_a_replicas_capture_token_posts_its_own_endpoints_records_only(platform, live):
    """The token the platform gave iris-mon's replicas (read from Serve, as a model in them
    could) stores iris-mon's records, and is refused (403, nothing stored) for another
    endpoint of the project, the same endpoint name in another project, or a batch mixing them."""
    project = live["project"]
    capture = replica_capture(platform, app_name(project, "iris-mon"))
    retired = hmac.new(platform.admin_token.encode(), b"loopml-capture", hashlib.sha256).hexdigest()
    assert capture["token"].startswith(f"{project}.iris-mon.") and capture["token"] != retired
    now = dt.datetime.now(dt.timezone.utc).isoformat()

    def record(project_: str, endpoint: str) -> dict:
        return {"project": project_, "endpoint": endpoint, "request_id": f"forged-{uuid.uuid4().hex}", "version": 1,
                "at": now, "status": 200, "latency_ms": 1.0,
                "features": {"columns": COLUMNS, "data": [[5.0, 3.0, 1.5, 0.2]]}, "prediction": [0]}

    def post(token: str, *records: dict) -> httpx.Response:
        return httpx.post(capture["url"], json={"records": list(records)}, timeout=30,
                          headers={"Authorization": f"Bearer {token}"})

    alice = platform.client()
    before = alice.monitor(project, "iris-mon", "30d").requests
    for target in [(project, "other-ep"), ("other-project", "iris-mon")]:
        refused = post(capture["token"], record(*target))
        assert refused.status_code == 403
        assert f"cannot post records of {target[0]}/{target[1]}" in refused.json()["message"]
        mixed = post(capture["token"], record(project, "iris-mon"), record(*target))
        assert mixed.status_code == 403
    assert post(retired, record(project, "iris-mon")).status_code == 401  # the all-endpoints token is gone
    assert alice.monitor(project, "iris-mon", "30d").requests == before  # nothing of the refused batches stored
    own = post(capture["token"], record(project, "iris-mon"))
    assert own.status_code == 202 and own.json() == {"stored": 1}
