"""An endpoint at 3x its capacity: requests beyond its bounded queue are refused at once with
503/429 and ``Retry-After``, every request gets an answer, every admitted request is answered
correctly and captured, and the endpoint serves normally once the burst ends.

Timing is not asserted here (house rule): ``bench/overload.py`` measures the admitted p99
against the unloaded one with the same load functions this test uses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import tomllib

import httpx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from bench.overload import REFUSED, closed_loop, open_loop
from loopml.serving.deployment import MAX_ONGOING_REQUESTS, MAX_QUEUED_REQUESTS, RETRY_AFTER_S

CLIENT_DEADLINE_S = 15  # a request unanswered by then hung: a deadline, not a performance figure
CAPACITY_S, OVERLOAD_S, FACTOR = 2, 3, 3  # the backlog in front of the proxy grows ~2x OVERLOAD_S of waiting


def deploy_iris(platform, alice, project: str, monkeypatch):
    """Log iris (LogisticRegression) to ``project`` from this process and deploy it to 'busy':
    a few seconds cheaper than a training job. Returns (Deployed, features, model)."""
    import mlflow

    import loopml

    with open(platform.home / "config.toml", "rb") as file:
        mlflow_port = tomllib.load(file)["mlflow_port"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{mlflow_port}")
    monkeypatch.setenv("LOOPML_PROJECT", project)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    try:
        loopml.log_model(model, "iris", X, y)
    finally:
        mlflow.end_run()
    return alice.deploy(project, "iris", "busy"), X, model


def captured_ids(platform, project: str, count: int, timeout: float = 15) -> set[str]:
    """Request ids the platform captured for endpoint 'busy' of ``project``, once there are
    ``count`` of them (replicas flush every second) or ``timeout`` has passed."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from loopml.monitor.orm import PredictionRow

    engine = create_engine(f"sqlite:///{platform.home / 'loopml.db'}")
    deadline, rows = time.monotonic() + timeout, []
    try:
        while True:
            with Session(engine) as session:
                rows = session.scalars(select(PredictionRow).where(PredictionRow.project == project,
                                                                   PredictionRow.endpoint == "busy")).all()
                found = {r.request_id: (r.status, r.at, r.latency_ms) for r in rows}
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.5)
    finally:
        engine.dispose()


def most_at_once(records) -> int:
    """The most requests the replica handled at the same moment, from captured (end, latency) pairs."""
    events = []
    for at, latency_ms in records:
        end = (at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)).timestamp()
        events += [(end - latency_ms / 1000, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


def test_overload_is_refused_fast_with_retry_after_and_nothing_admitted_is_lost(platform, alice, project,
                                                                                 monkeypatch):
    deployed, X, model = deploy_iris(platform, alice, project, monkeypatch)
    url, headers = deployed.endpoint.url + "/invocations", {"Authorization": f"Bearer {deployed.key}"}
    body = json.dumps({"dataframe_split": {"columns": list(X.columns), "data": [X.iloc[0].tolist()]}}).encode()
    expected = {"predictions": model.predict(X.iloc[:1]).tolist()}
    bound = MAX_ONGOING_REQUESTS + MAX_QUEUED_REQUESTS

    served, wall = asyncio.run(closed_loop(url, headers, body, connections=bound, seconds=CAPACITY_S,
                                           tag="capacity", timeout=CLIENT_DEADLINE_S))
    capacity = sum(a.status == 200 for a in served) / wall
    assert capacity > 0, [(a.status, a.error) for a in served[:5]]
    answers = asyncio.run(open_loop(url, headers, body, rate=FACTOR * capacity, seconds=OVERLOAD_S,
                                    tag="burst", timeout=CLIENT_DEADLINE_S))

    hung = [a for a in answers if a.status == 0]
    assert not hung, f"{len(hung)} of {len(answers)} requests got no answer within {CLIENT_DEADLINE_S} s"
    assert {a.status for a in answers} <= {200, *REFUSED}, sorted({a.status for a in answers})
    refused = [a for a in answers if a.status in REFUSED]
    admitted = [a for a in answers if a.status == 200]
    assert refused, f"no request of {len(answers)} at {FACTOR}x {capacity:.0f}/s was refused"
    assert admitted
    assert {a.retry_after for a in refused} == {str(RETRY_AFTER_S)}
    assert all(a.content_type == "application/json" and json.loads(a.body)["message"] for a in refused)
    assert all(json.loads(a.body) == expected for a in admitted)

    after = [httpx.post(url, content=body, headers={**headers, "content-type": "application/json"}, timeout=30)
             for _ in range(5)]
    assert [a.status_code for a in after] == [200] * 5 and after[-1].json() == expected

    # Every admitted request reached the model and was captured; no refused one did. The replica
    # never held more than max_ongoing_requests at once (the rest waited in the bounded queue).
    burst = {a.request_id for a in admitted}
    captured = captured_ids(platform, project, sum(a.status == 200 for a in served) + len(admitted) + len(after))
    captured_burst = {rid: found for rid, found in captured.items() if rid.startswith("burst-")}
    assert set(captured_burst) == burst
    assert {status for status, _, _ in captured_burst.values()} == {200}
    assert most_at_once((at, latency) for _, at, latency in captured.values()) <= MAX_ONGOING_REQUESTS
    alice.delete_endpoint(project, "busy")
