"""``loopml demo``: the whole loop, headless, on a running platform, step by step.

Train a (deliberately weak) iris model as a job, register and deploy it, send
in-distribution traffic with feedback labels (no alert), then shifted traffic (a drift
alert); the endpoint's policy requeues the training job with better parameters, the new
version is scored against the champion on the labelled requests, promoted, and the endpoint
switches to it. Each step prints what happened, how long it took and where to look.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import click

from loopml.cli.util import client_from, wait_with_progress
from loopml.errors import LoopMLError

T = TypeVar("T")

TRAIN_SOURCE = (
    "import loopml\n"
    "from sklearn.datasets import load_iris\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "X, y = load_iris(return_X_y=True, as_frame=True)\n"
    "model = LogisticRegression(C=C, max_iter=500).fit(X, y)\n"
    "version = loopml.log_model(model, 'iris', X, y, metrics={'train_accuracy': model.score(X, y)})\n"
    "print('registered', version)"
)
SHIFTED = (2, 3)  # petal length and width move by +3 cm
# how many of the platform's policy intervals the calm traffic waits: it is evaluated at least once
CALM_WAIT_INTERVALS = 1.5


def training_notebook() -> dict[str, Any]:
    """The demo's training notebook: parameter ``C`` (regularisation), logs ``iris``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("C = 1.0")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell(TRAIN_SOURCE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _num(value: float | None, digits: int = 3) -> str:
    """``0.743`` for a number, ``-`` for a missing one."""
    return "-" if value is None else f"{value:.{digits}g}"


def _poll(what: str, check: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise LoopMLError(f"the demo waited {timeout:g} s for {what}; see `loopml status` and the platform log",
                      reason="demo_timeout")


def _send(http, url: str, columns: list[str], rows, prefix: str) -> list[str]:
    """One request per row, each with its own ``x-request-id`` (``prefix-i``); returns the ids."""
    ids = []
    for i, row in enumerate(rows):
        request_id = f"{prefix}-{i}"
        answer = http.post(url, headers={"x-request-id": request_id},
                           json={"dataframe_split": {"columns": columns, "data": [list(map(float, row))]}})
        if answer.status_code != 200:
            raise LoopMLError(f"the endpoint answered {answer.status_code}: {answer.text[:200]}", reason="demo_failed")
        ids.append(request_id)
    return ids


@click.command("demo")
@click.option("--project", default=None, help="Project to run in (default: a new demo-XXXX project).")
@click.option("--requests", "n_requests", type=click.IntRange(100, 5000), default=300, show_default=True,
              help="Requests per traffic phase.")
@click.pass_context
def demo(ctx: click.Context, project: str | None, n_requests: int) -> None:
    """Run the whole loop headless: train, deploy, monitor, drift, requeue, promote."""
    import httpx
    import numpy as np
    from sklearn.datasets import load_iris

    client = client_from(ctx)
    iris = load_iris(as_frame=True)
    columns = list(iris.data.columns)
    rows, target = iris.data.to_numpy(), iris.target.to_numpy()
    rng = np.random.default_rng(0)
    project = project or f"demo-{uuid.uuid4().hex[:4]}"
    began = time.monotonic()

    def step(text: str) -> None:
        click.echo(f"[{time.monotonic() - began:6.1f} s] {text}")

    if project not in client.project_names():
        client.create_project(project)
    step(f"project {project}")

    first = wait_with_progress(ctx, project, client.submit(project, training_notebook(), parameters={"C": 0.001}))
    if first.status.value != "SUCCEEDED":
        raise LoopMLError(f"the training job {first.id} {first.status.value}: `loopml jobs logs {first.id} -P {project}`")
    step(f"trained and registered {project}.iris (job {first.id}, C=0.001: a weak champion)")

    endpoint = client.deploy(project, "iris@champion", "iris", public=True).endpoint
    url = endpoint.url + "/invocations"
    step(f"deployed v{endpoint.version} at {endpoint.url}")
    client.set_policy(project, "iris", {"window": "30m", "min_samples": 100, "drift": True, "action": "requeue",
                                        "cooldown_s": 3600, "auto_promote": True, "promote_margin": 0.02,
                                        "parameters": {"C": 1.0}})
    step("policy: on drift, requeue training with C=1.0; promote the challenger if it wins by 2 points")

    with httpx.Client(timeout=30) as http:
        picked = rng.integers(0, len(rows), n_requests)
        ids = _send(http, url, columns, rows[picked], f"calm-{uuid.uuid4().hex[:6]}")
        _poll("captured requests", lambda: client.monitor(project, "iris", "30m").requests >= n_requests, 60, 0.5)
        fed = client.feedback(project, "iris", [{"request_id": i, "label": int(target[p])} for i, p in zip(ids, picked, strict=False)])
        time.sleep(CALM_WAIT_INTERVALS * client.status()["platform"].get("monitor_interval_s", 10.0))
        report = client.monitor(project, "iris", "30m")
        step(f"in-distribution traffic: {report.requests} requests, p50 {_num(report.latency_ms.get('p50'))} ms, "
             f"{fed.accepted} labels, accuracy {_num((report.quality or {}).get('accuracy'))}, "
             f"drifted features: {report.drifted_features or 'none'}, alerts: {len(client.alerts(project))}")

        shifted = rows[rng.integers(0, len(rows), n_requests)].copy()
        shifted[:, list(SHIFTED)] += 3.0
        _send(http, url, columns, shifted, f"shifted-{uuid.uuid4().hex[:6]}")
        alert = _poll("a drift alert", lambda: next(iter(client.alerts(project, endpoint="iris")), None), 120)
        step(f"drift alert {alert.id[:8]} on {', '.join(alert.detail.get('features', []))}: {alert.action}, "
             f"training job {alert.job_id}")

    if alert.job_id:
        job = wait_with_progress(ctx, project, client.job(project, alert.job_id))
        step(f"requeued job {job.id} {job.status.value}: registered {', '.join(f'v{m.version}' for m in job.models)}")
        done = _poll("the challenger's evaluation",
                     lambda: next((a for a in client.alerts(project, job_id=job.id) if a.evaluation), None), 300, 2)
        evaluation = done.evaluation or {}
        step(f"challenger v{done.produced_version}: accuracy "
             f"{_num((evaluation.get('challenger_quality') or {}).get('accuracy'))} vs champion "
             f"{_num((evaluation.get('champion_quality') or {}).get('accuracy'))} on {evaluation.get('n')} labelled "
             f"requests -> {'promoted' if evaluation.get('promoted') else evaluation.get('result') or 'kept'}")
    final = client.endpoint(project, "iris")
    step(f"endpoint iris serves v{final.version}; history: {'; '.join(h.action for h in final.history)}")
    click.echo(f"\nlook at: `loopml monitor {project}/iris`, `loopml alerts -P {project}`, "
               f"`loopml models show iris -P {project}`, endpoint {final.url}")


COMMANDS = (demo,)
