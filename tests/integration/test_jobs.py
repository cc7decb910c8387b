"""Notebook jobs end to end: CLI and API → platform → Ray → papermill → MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from mlflow.tracking import MlflowClient

from loopml.errors import InvalidInput
from tests.integration.notebooks import TRAIN, notebook, write


def test_submitted_notebook_runs_with_parameters_and_is_tracked(platform, alice, project, tmp_path):
    path = write(tmp_path / "train.ipynb", TRAIN)
    done = platform.cli("submit", str(path), "-P", project, "-p", "C=0.5", "-p", "label=from-cli", "--wait",
                        "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "SUCCEEDED"
    assert job["parameters"] == {"C": 0.5, "label": "from-cli"}
    assert job["progress"]["cells_done"] == job["progress"]["cells_total"] == 3  # parameters, injected, training

    output = nbformat.from_dict(alice.output(project, job["id"]))
    injected = [c for c in output.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "C = 0.5" in injected[0].source and "label = \"from-cli\"" in injected[0].source
    printed = "".join(o.get("text", "") for c in output.cells for o in c.get("outputs", []))
    assert "label 'from-cli'" in printed and "accuracy" in printed
    assert "accuracy" in alice.logs(project, job["id"])

    mlflow = MlflowClient(tracking_uri=platform.state()["urls"]["mlflow"])
    run = mlflow.get_run(job["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params == {"C": "0.5", "label": "from-cli"}
    assert run.data.tags["loopml.job_id"] == job["id"]
    artifacts = {a.path for a in mlflow.list_artifacts(run.info.run_id, "notebook")}
    assert {"notebook/input.ipynb", "notebook/output.ipynb"} <= artifacts
    local = mlflow.download_artifacts(run.info.run_id, "notebook/output.ipynb", str(tmp_path))
    stored = json.loads(Path(local).read_text())
    assert len(stored["cells"]) == len(output.cells)


@pytest.mark.parametrize(
    "parameter, message",
    [
        ("nosuch=1", "unknown parameter 'nosuch'"),
        ("C=abc", "parameter 'C' expects float"),
        ("max_iter=1.5", "parameter 'max_iter' expects int"),
    ],
    ids=["unknown-name", "float-gets-text", "int-gets-float"],
)
def test_bad_parameters_are_refused_before_running(platform, alice, project, tmp_path, parameter, message):
    path = write(tmp_path / "train.ipynb", TRAIN)
    refused = platform.cli("submit", str(path), "-P", project, "-p", parameter)
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("error: ") and message in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert alice.jobs(project) == []


def test_string_parameters_arrive_verbatim(alice, project):
    tricky = 'it\'s "quoted"\nsecond line \\ back\\slash """ \'\'\' ); import os #'
    nb = notebook("import json\nprint(json.dumps(text))", parameters='text = "plain"')
    job = alice.wait(project, alice.submit(project, nb, parameters={"text": tricky}).id, timeout=120)
    assert job.status == "SUCCEEDED"
    printed = alice.output(project, job.id)["cells"][-1]["outputs"][0]["text"]
    assert json.loads(printed) == tricky


def test_api_refuses_wrong_types_naming_the_parameter(alice, project):
    with pytest.raises(InvalidInput, match="parameter 'max_iter' expects int"):
        alice.submit(project, TRAIN, parameters={"max_iter": [1]})


def test_requeue_reuses_the_snapshot_with_overrides(alice, project):
    first = alice.wait(project, alice.submit(project, TRAIN, parameters={"label": "one"}).id, timeout=120)
    again = alice.requeue(project, first.id, parameters={"C": 2})
    assert again.parent_id == first.id and again.trigger.value == "requeue"
    assert again.parameters == {"label": "one", "C": 2.0}
    done = alice.wait(project, again.id, timeout=120)
    assert done.status == "SUCCEEDED" and done.mlflow_run_id != first.mlflow_run_id
