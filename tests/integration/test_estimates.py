"""Performance estimated before the labels come, on real Ray, MLflow and Serve.

A classifier (CBPE) and a regressor (DLE) are trained and logged by a job with held-out rows,
deployed, and sent traffic whose true labels only the test knows: in distribution, then
moved towards the classifier's decision boundary (true accuracy ~0.9 -> ~0.6) and into the
regressor's noisy region (MAE up). With no label sent, the report's estimate follows the truth
and the estimated-accuracy policy requeues training; once the labels are sent the realized
metric and the estimate's error appear. A shift of a feature the model ignores raises drift
but leaves the estimate, and ``drift_needs_estimate`` keeps it from requeuing.
"""

from __future__ import annotations

import math
import time
import uuid

import httpx
import numpy as np
import pytest

from loopml.executor.models import JobStatus, Trigger
from tests.integration.notebooks import notebook
from tests.integration.processes import wait_for

FEATURES = ["x0", "x1", "x2", "x3"]
ROWS_PER_REQUEST, REQUESTS = 20, 20  # 400 rows per phase

# The truth both sides share: y depends on x0 only (logistic), the regression noise on |x1|.
TRAIN_BOTH = notebook(
    "import numpy as np, pandas as pd, loopml\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.ensemble import GradientBoostingRegressor\n"
    "from sklearn.model_selection import train_test_split\n"
    "rng = np.random.default_rng(seed)\n"
    "X = pd.DataFrame(rng.normal(0, 1, (4000, 4)), columns=['x0', 'x1', 'x2', 'x3'])\n"
    "y = (rng.random(4000) < 1 / (1 + np.exp(-3 * X.x0))).astype(int)\n"
    "Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.4, random_state=0)\n"
    "clf = LogisticRegression().fit(Xtr, ytr)\n"
    "loopml.log_model(clf, 'est-cls', Xtr, ytr, X_test=Xte, y_test=yte)\n"
    "r = 2 * X.x0 + rng.normal(0, 0.2 + np.abs(X.x1))\n"
    "Xtr, Xte, rtr, rte = train_test_split(X[['x0', 'x1']], r, test_size=0.4, random_state=0)\n"
    "reg = GradientBoostingRegressor(n_estimators=50, max_depth=2, random_state=0).fit(Xtr, rtr)\n"
    "loopml.log_model(reg, 'est-reg', Xtr, rtr, X_test=Xte, y_test=rte)",
    parameters="seed = 1",
)


def classifier_rows(rng, count: int, x0_low: float, x0_high: float, x3_shift: float = 0.0):
    """Rows with |x0| uniform in [low, high] (either sign), the other features as in training; true labels."""
    X = rng.normal(0, 1, (count, 4))
    X[:, 0] = rng.uniform(x0_low, x0_high, count) * rng.choice([-1, 1], count)
    X[:, 3] += x3_shift
    y = (rng.random(count) < 1 / (1 + np.exp(-3 * X[:, 0]))).astype(int)
    return X, y


def regressor_rows(rng, count: int, x1_scale: float):
    X = rng.normal(0, 1, (count, 2))
    X[:, 1] *= x1_scale
    y = 2 * X[:, 0] + rng.normal(0, 0.2 + np.abs(X[:, 1]))
    return X, y


def send(url: str, X: np.ndarray, columns: list[str], prefix: str) -> tuple[list[str], list]:
    """``X`` in requests of ROWS_PER_REQUEST rows; their ids and the answers' predictions (row order)."""
    ids, predictions = [], []
    with httpx.Client(timeout=30) as http:
        for start in range(0, len(X), ROWS_PER_REQUEST):
            request_id = f"{prefix}-{start}-{uuid.uuid4().hex[:6]}"
            answer = http.post(url, headers={"x-request-id": request_id}, json={
                "dataframe_split": {"columns": columns, "data": X[start:start + ROWS_PER_REQUEST].tolist()}})
            assert answer.status_code == 200, answer.text
            ids.append(request_id)
            predictions += answer.json()["predictions"]
    return ids, predictions


def labels_of(ids: list[str], y) -> list[dict]:
    y = np.asarray(y).tolist()
    return [{"request_id": request_id, "label": y[i * ROWS_PER_REQUEST:(i + 1) * ROWS_PER_REQUEST]}
            for i, request_id in enumerate(ids)]


def window_since(started: float | None) -> str:
    """A report window that reaches back just past ``started`` (phases are 3 s apart), or 1h."""
    return "1h" if started is None else f"{math.ceil(time.time() - started) + 1}s"


def report_of(alice, project: str, name: str, started: float | None, rows: int):
    """The report of the window since ``started`` once its estimate covers ``rows`` rows
    (capture arrives within ~1-2 s); the window is recomputed at each try."""
    found = {}

    def ready() -> bool:
        found["report"] = alice.monitor(project, name, window_since(started))
        return found["report"].estimated is not None and found["report"].estimated.n >= rows

    wait_for(ready, timeout=30, every=0.5)
    return found["report"]


@pytest.mark.timeout(600)
def test_estimates_follow_the_truth_without_labels_and_drive_policies(platform, admin, alice, project):
    api = f"{platform.url}/api/v1/projects/{project}"
    auth = {"Authorization": f"Bearer {platform.alice_token}"}
    job = alice.wait(project, alice.submit(project, TRAIN_BOTH).id, timeout=240)
    assert job.status == JobStatus.SUCCEEDED, job.error
    cls_url = alice.deploy(project, "est-cls", "est-cls", public=True).endpoint.url + "/invocations"
    reg_url = alice.deploy(project, "est-reg", "est-reg", public=True).endpoint.url + "/invocations"
    rng = np.random.default_rng(11)
    n = ROWS_PER_REQUEST * REQUESTS

    # phase A, in distribution away from the boundary: true accuracy ~0.9
    started_a = time.time()
    X, y_a = classifier_rows(rng, n, 0.4, 1.3)
    ids_a, predicted_a = send(cls_url, X, FEATURES, "a")
    R, r_a = regressor_rows(rng, n, 0.3)
    reg_ids_a, reg_predicted_a = send(reg_url, R, ["x0", "x1"], "ra")
    time.sleep(3)
    # phase B, near the boundary (true accuracy ~0.6) and into the noisy region
    started_b = time.time()
    X, y_b = classifier_rows(rng, n, 0.0, 0.25)
    ids_b, predicted_b = send(cls_url, X, FEATURES, "b")
    R, r_b = regressor_rows(rng, n, 2.0)
    reg_ids_b, reg_predicted_b = send(reg_url, R, ["x0", "x1"], "rb")

    truth_a = float(np.mean(np.asarray(predicted_a) == y_a))
    truth_b = float(np.mean(np.asarray(predicted_b) == y_b))
    assert truth_a > 0.85 and truth_b < 0.68, (truth_a, truth_b)  # the scenario itself
    report_b = report_of(alice, project, "est-cls", started_b, n)
    report_ab = report_of(alice, project, "est-cls", None, 2 * n)
    assert report_b.labelled == 0 and report_b.quality is None  # no label has been sent
    assert abs(report_b.estimated.value - truth_b) <= 0.07, (report_b.estimated, truth_b)
    assert abs(report_ab.estimated.value - (truth_a + truth_b) / 2) <= 0.07, (report_ab.estimated, truth_a, truth_b)
    assert report_b.estimated.low <= report_b.estimated.value <= report_b.estimated.high
    assert report_b.estimated.f1 is not None and report_b.estimated.source == "test"
    trend = report_of(alice, project, "est-cls", started_a, 2 * n).trend  # buckets of < 1 s: A, then B
    buckets = [v for v in trend.estimated if v is not None]
    assert buckets and max(buckets) - min(buckets) > 0.15  # the chart shows the fall

    mae_a = float(np.mean(np.abs(np.asarray(reg_predicted_a) - r_a)))
    mae_b = float(np.mean(np.abs(np.asarray(reg_predicted_b) - r_b)))
    assert mae_b > 2 * mae_a
    reg_b = report_of(alice, project, "est-reg", started_b, n)
    assert reg_b.estimated.metric == "mae"
    assert abs(reg_b.estimated.value - mae_b) <= 0.2 * mae_b, (reg_b.estimated, mae_b)
    reg_ab = report_of(alice, project, "est-reg", None, 2 * n)
    assert abs(reg_ab.estimated.value - (mae_a + mae_b) / 2) <= 0.2 * (mae_a + mae_b) / 2

    # the estimated-accuracy policy requeues training, with no label in sight (A + B: ~0.75)
    put = httpx.put(f"{api}/endpoints/est-cls/policy", headers=auth, json={
        "window": "1h", "min_samples": 10, "drift": False, "estimated_accuracy_below": 0.8,
        "action": "requeue", "cooldown_s": 3600})
    assert put.status_code == 200, put.text
    alert = wait_for(lambda: next((a for a in httpx.get(f"{api}/alerts", headers=auth).json()
                                   if a["kind"] == "est_accuracy"), None), timeout=30, every=0.5)
    assert alert["action"] == "requeue" and alert["value"] < 0.8 and alert["job_id"]
    assert [j.id for j in alice.jobs(project) if j.trigger == Trigger.POLICY] == [alert["job_id"]]
    httpx.put(f"{api}/endpoints/est-cls/policy", headers=auth, json={"window": "1h", "drift": False})

    # the labels come: realized accuracy and the estimate's error appear
    fed = httpx.post(f"{api}/endpoints/est-cls/feedback", headers=auth, json=labels_of(ids_b, y_b), timeout=30)
    assert fed.status_code == 200 and fed.json()["accepted"] == REQUESTS, fed.text
    labelled = report_of(alice, project, "est-cls", started_b, n)
    assert labelled.estimated.labelled == n and abs(labelled.estimated.realized - truth_b) < 1e-9
    assert abs(labelled.estimated.error) <= 0.07 and labelled.quality["accuracy"] == pytest.approx(truth_b)
    assert any(v is not None for v in labelled.trend.realized)
    fed = httpx.post(f"{api}/endpoints/est-reg/feedback", headers=auth, json=labels_of(reg_ids_b, r_b), timeout=30)
    assert fed.status_code == 200, fed.text
    reg_labelled = report_of(alice, project, "est-reg", started_b, n)
    assert reg_labelled.estimated.realized == pytest.approx(mae_b, rel=1e-3)
    assert abs(reg_labelled.estimated.error) <= 0.2 * mae_b

    # a harmless shift, on a second endpoint of the same version: x3, which the model ignores,
    # moves (the rest as in training); drift, but the estimate stays at the held-out accuracy
    c_url = alice.deploy(project, "est-cls", "est-cls-c", public=True).endpoint.url + "/invocations"
    X = rng.normal(0, 1, (n, 4))
    X[:, 3] += 3.0
    send(c_url, X, FEATURES, "c")
    report_c = report_of(alice, project, "est-cls-c", None, n)
    assert report_c.drifted_features == ["x3"]
    held_out = report_c.estimated.reference["accuracy"]
    assert abs(report_c.estimated.value - held_out) <= 0.05, (report_c.estimated, held_out)
    held = httpx.put(f"{api}/endpoints/est-cls-c/policy", headers=auth, json={
        "window": "1h", "min_samples": 10, "drift": True, "drift_needs_estimate": True,
        "action": "requeue", "cooldown_s": 0})
    assert held.status_code == 200, held.text
    time.sleep(2 * platform.monitor_interval_s + 1)  # two evaluations at least
    assert not [a for a in httpx.get(f"{api}/alerts?endpoint=est-cls-c", headers=auth).json()]
    assert len([j for j in alice.jobs(project) if j.trigger == Trigger.POLICY]) == 1
    # the control: without drift_needs_estimate the same traffic raises the drift alert
    httpx.put(f"{api}/endpoints/est-cls-c/policy", headers=auth, json={
        "window": "1h", "min_samples": 10, "drift": True, "action": "alert"})
    drift = wait_for(lambda: next((a for a in httpx.get(f"{api}/alerts", headers=auth).json()
                                   if a["kind"] == "drift" and a["endpoint"] == "est-cls-c"), None),
                     timeout=30, every=0.5)
    assert drift["detail"]["features"] == ["x3"]
