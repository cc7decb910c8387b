"""Pipeline runs on the real platform, through REST: steps are jobs, a step's output file and
values reach the next through MLflow, a false condition skips, a re-run is served from the
cache, a failed step fails the run and skips its dependents, and retry re-runs only it."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import nbformat
import pytest
from mlflow.tracking import MlflowClient

from loopml.client import Client
from loopml.errors import Conflict, InvalidInput
from tests.integration.notebooks import notebook

PREPARE = notebook(
    "from pathlib import Path\nimport loopml\n"
    "Path('data').mkdir(exist_ok=True)\nPath('data/train.csv').write_text('a,b\\n1,2\\n3,4\\n')\n"
    "loopml.set_output('rows', 2)")
TRAIN = notebook(
    "from pathlib import Path\nimport loopml\n"
    "lines = Path('data/train.csv').read_text().splitlines()[1:]\n"
    "assert len(lines) == rows, (lines, rows)\n"
    "loopml.set_output('accuracy', 0.75)",
    parameters="rows = 0")
GATE = notebook("print('deploying')")
CHECK = notebook("assert not fail, 'told to fail'", parameters="fail = False")

THREE_STEPS = """
name: retrain
parameters: {min_accuracy: 0.9}
steps:
  prepare: {notebook: prepare.ipynb, outputs: [data/train.csv]}
  train:
    notebook: train.ipynb
    parameters: {rows: "{{ steps.prepare.outputs.rows }}"}
  gate:
    notebook: gate.ipynb
    when: "steps.train.outputs.accuracy >= params.min_accuracy"
"""

FLAKY = """
name: flaky
parameters: {fail: true}
steps:
  prepare: {notebook: prepare.ipynb, outputs: [data/train.csv]}
  check: {notebook: check.ipynb, after: [prepare], parameters: {fail: "{{ params.fail }}"}}
  report: {notebook: gate.ipynb, after: [check]}
"""


def body(content: str, notebooks: dict[str, dict], **fields: Any) -> dict[str, Any]:
    files = {path: base64.b64encode(nbformat.writes(nb).encode()).decode() for path, nb in notebooks.items()}
    return {"source_name": "p.pipeline.yaml", "content": content, "files": files, **fields}


def post(client: Client, path: str, json_body: Any = None) -> dict[str, Any]:
    return client._request("POST", path, json=json_body).json()


def wait(client: Client, project: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = client._request("GET", f"/projects/{project}/pipelines/{run_id}").json()
        if run["status"] not in ("QUEUED", "RUNNING"):
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"pipeline run {run_id} still {run['status']} after {timeout:g} s: {json.dumps(run['steps'])}")
        time.sleep(1)


def by_step(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in run["steps"]}


def test_a_three_step_pipeline_runs_then_is_served_from_the_cache(platform, alice, project):
    notebooks = {"prepare.ipynb": PREPARE, "train.ipynb": TRAIN, "gate.ipynb": GATE}
    checked = post(alice, f"/projects/{project}/pipelines/validate", body(THREE_STEPS, notebooks))
    assert [step["id"] for step in checked["steps"]] == ["prepare", "train", "gate"]

    started = post(alice, f"/projects/{project}/pipelines", body(THREE_STEPS, notebooks))
    run = wait(alice, project, started["id"])
    steps = by_step(run)
    assert run["status"] == "SUCCEEDED", json.dumps(run["steps"])
    assert {name: step["status"] for name, step in steps.items()} == {
        "prepare": "SUCCEEDED", "train": "SUCCEEDED", "gate": "SKIPPED"}
    assert steps["train"]["outputs"] == {"accuracy": 0.75}
    assert steps["train"]["parameters"] == {"rows": 2}
    assert "0.75" in steps["gate"]["message"]

    train_job = alice.job(project, steps["train"]["job_id"])
    assert (train_job.trigger, train_job.input_files) == ("pipeline", ["data/train.csv"])
    mlflow = MlflowClient(tracking_uri=platform.state()["urls"]["mlflow"])
    assert mlflow.get_run(train_job.mlflow_run_id).data.tags["mlflow.parentRunId"] == run["mlflow_run_id"]
    assert mlflow.get_run(run["mlflow_run_id"]).info.status == "FINISHED"

    again = post(alice, f"/projects/{project}/pipelines", body(THREE_STEPS, notebooks))
    assert again["status"] == "SUCCEEDED"
    assert [step["status"] for step in again["steps"]] == ["CACHED", "CACHED", "SKIPPED"]
    assert by_step(again)["prepare"]["files"] == steps["prepare"]["files"]
    listed = alice._request("GET", f"/projects/{project}/pipelines").json()
    assert [item["id"] for item in listed] == [again["id"], run["id"]]


def test_a_failed_step_fails_the_run_and_retry_reruns_only_it(alice, project):
    notebooks = {"prepare.ipynb": PREPARE, "check.ipynb": CHECK, "gate.ipynb": GATE}
    started = post(alice, f"/projects/{project}/pipelines", body(FLAKY, notebooks))
    run = wait(alice, project, started["id"])
    steps = by_step(run)
    assert run["status"] == "FAILED"
    assert [step["status"] for step in run["steps"]] == ["SUCCEEDED", "FAILED", "SKIPPED"]
    assert "told to fail" in steps["check"]["message"]
    assert "upstream check failed" in steps["report"]["message"]

    retried = post(alice, f"/projects/{project}/pipelines/{run['id']}/retry")
    assert (retried["status"], retried["attempt"]) == ("RUNNING", 2)
    with pytest.raises(Conflict, match="only a failed or cancelled run can be retried"):
        post(alice, f"/projects/{project}/pipelines/{run['id']}/retry")
    after = wait(alice, project, run["id"])
    again = by_step(after)
    assert again["prepare"]["job_id"] == steps["prepare"]["job_id"]  # kept, not re-run
    assert again["check"]["job_id"] not in (None, steps["check"]["job_id"])
    assert [step["status"] for step in after["steps"]] == ["SUCCEEDED", "FAILED", "SKIPPED"]

    ok = post(alice, f"/projects/{project}/pipelines", body(FLAKY, notebooks, parameters={"fail": "false"}))
    ok = wait(alice, project, ok["id"])
    assert [step["status"] for step in ok["steps"]] == ["CACHED", "SUCCEEDED", "SUCCEEDED"]


def test_a_bad_pipeline_gets_422_naming_the_step_and_field(alice, project):
    bad = FLAKY.replace("parameters: {fail:", "parameters: {fial:")
    with pytest.raises(InvalidInput, match=r"step 'check': parameters\.fial: 'check.ipynb' defines no parameter"):
        post(alice, f"/projects/{project}/pipelines", body(bad, {"prepare.ipynb": PREPARE, "check.ipynb": CHECK,
                                                                 "gate.ipynb": GATE}))
    assert alice._request("GET", f"/projects/{project}/pipelines").json() == []
