"""Pipeline runs on the real platform (issue 16): the example ``examples/pipelines`` runs end to
end (values and files between steps through MLflow, a grid recorded as child runs of the
pipeline's run with the best child picked, the gate deploying a model that answers, then a
re-run served from the cache with the gate SKIPping); an Optuna sweep picks its best trial and
``retry`` after a failed step re-runs only that step and what follows; an Elyra ``.pipeline``
runs unchanged with its ignored properties listed; a bad pipeline gets 422 naming the step and
field. Few runs, each asserting much: every job costs seconds here."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_wine

from loopml.client import Client
from loopml.errors import Conflict, InvalidInput
from loopml.executor import PipelineRun, PipelineStep
from loopml.executor.pipelines.local import needed_files, read_pipeline
from tests.integration.notebooks import notebook

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipelines" / "wine-retrain.pipeline.yaml"
ELYRA = Path(__file__).resolve().parent / "elyra" / "wine-report.pipeline"

# A sweep whose trials score C by how close log10(C) is to 0.5 (no training: the sweep is what is
# tested), then a step that fails on its first job and succeeds when retried, then one after it.
TUNE = notebook("import math\nimport loopml\n"
                "loopml.set_output('accuracy', 1 - abs(math.log10(C) - 0.5) / 10)\nloopml.set_output('C', C)",
                parameters="C = 1.0")
CHECK = notebook("from loopml.client import Client\nimport loopml\n"
                 "project = loopml.current_job().project\n"
                 "attempts = [job for job in Client().jobs(project) if job.name == 'tune/check']\n"
                 "assert len(attempts) > 1, 'the first check fails, on purpose'\n"
                 "loopml.set_output('checked', C)",
                 parameters="C = 0.0")
REPORT = notebook("print('report')")
TUNE_THEN_CHECK = """
name: tune
steps:
  tune:
    notebook: tune.ipynb
    search: {params: {C: {loguniform: [0.001, 10.0]}}, trials: 3, parallel: 2, objective: {maximize: accuracy}}
  check: {notebook: check.ipynb, parameters: {C: "{{ steps.tune.outputs.C }}"}}
  report: {notebook: report.ipynb, after: [check]}
"""


def body(content: str, notebooks: dict[str, dict]) -> dict[str, Any]:
    files = {path: base64.b64encode(nbformat.writes(nb).encode()).decode() for path, nb in notebooks.items()}
    return {"source_name": "p.pipeline.yaml", "content": content, "files": files}


def post(client: Client, path: str, json_body: Any = None) -> dict[str, Any]:
    return client._request("POST", path, json=json_body).json()


def by_step(run: PipelineRun) -> dict[str, PipelineStep]:
    return {step.id: step for step in run.steps}


def statuses(run: PipelineRun) -> dict[str, str]:
    return {step.id: step.status.value for step in run.steps}


def mlflow_client(platform) -> MlflowClient:
    return MlflowClient(tracking_uri=platform.state()["urls"]["mlflow"])


def parent_of(mlflow: MlflowClient, alice: Client, project: str, job_id: str) -> str:
    return mlflow.get_run(alice.job(project, job_id).mlflow_run_id).data.tags["mlflow.parentRunId"]


def picked(step: PipelineStep, maximize: bool = True):
    """The child a foreach/search step should have picked: the best value, ties to the first."""
    best = (max if maximize else min)(child.value for child in step.children)
    return next(child for child in step.children if child.value == best)


@pytest.fixture
def cleanup(alice, project):
    yield
    for endpoint in alice.endpoints(project):
        alice.delete_endpoint(project, endpoint.name)


@pytest.mark.timeout(600)
def test_the_wine_example_retrains_gates_deploys_then_is_served_from_the_cache(platform, alice, project, cleanup):
    checked = alice.validate_pipeline(project, EXAMPLE)
    assert [(step.id, step.after) for step in checked.steps] == [
        ("prepare", []), ("train", ["prepare"]), ("evaluate", ["train"]), ("deploy", ["evaluate"])]

    run = alice.run_pipeline(project, EXAMPLE)
    run = alice.wait_pipeline_run(project, run.id, timeout=420)
    steps = by_step(run)
    assert run.status.value == "SUCCEEDED", [(s.id, s.status.value, s.message) for s in run.steps]
    assert statuses(run) == {"prepare": "SUCCEEDED", "train": "SUCCEEDED", "evaluate": "SUCCEEDED",
                             "deploy": "SUCCEEDED"}

    # the grid: one child job per C, each an MLflow child run of the pipeline's run; the best is picked
    train = steps["train"]
    assert [child.parameters for child in train.children] == [{"C": 0.01}, {"C": 0.1}, {"C": 1.0}]
    assert all(child.status.value == "SUCCEEDED" and 0.5 < child.value <= 1 for child in train.children)
    best = picked(train)
    assert train.job_id == best.job_id and train.outputs["accuracy"] == best.value
    assert f"child {best.index} (C={json.dumps(best.parameters['C'])}) is the best" in train.message
    mlflow = mlflow_client(platform)
    step_jobs = [steps["prepare"].job_id, *(child.job_id for child in train.children), steps["evaluate"].job_id]
    assert {parent_of(mlflow, alice, project, job_id) for job_id in step_jobs} == {run.mlflow_run_id}
    assert mlflow.get_run(run.mlflow_run_id).info.status == "FINISHED"

    # values and files between steps: prepare's file reached train and evaluate, train's run_id evaluate
    train_job, evaluate_job = alice.job(project, train.job_id), alice.job(project, steps["evaluate"].job_id)
    assert (train_job.trigger, train_job.input_files) == ("pipeline", ["data/train.parquet"])
    assert evaluate_job.input_files == ["data/train.parquet"]
    assert steps["evaluate"].parameters == {"run_id": train.outputs["run_id"]} == {"run_id": train_job.mlflow_run_id}
    accuracy = steps["evaluate"].outputs["accuracy"]
    assert 0.9 <= accuracy <= 1

    # the gate let the picked child's version through; the endpoint serves it and answers
    [(model, version)] = [(ref.name, ref.version) for ref in train_job.models]
    assert model == f"{project}.wine"
    assert steps["deploy"].outputs == {"model": "wine", "version": version, "endpoint": "wine"}
    endpoint = alice.endpoint(project, "wine")
    assert (endpoint.version, endpoint.canary_version, endpoint.status) == (version, None, "RUNNING")
    key = alice.update_endpoint(project, "wine", rotate_key=True).key  # the pipeline's deploy kept no key
    wine = load_wine(as_frame=True).data.iloc[:5]
    answer = httpx.post(endpoint.url + "/invocations", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                        json={"dataframe_split": {"columns": list(wine.columns), "data": wine.values.tolist()}})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 5

    # the same files again, a stricter gate: every job step comes from the cache, the gate says no
    again = alice.run_pipeline(project, EXAMPLE, parameters={"min_accuracy": "1.01"})
    assert again.status.value == "SUCCEEDED"  # nothing ran: it ended when it was answered
    assert statuses(again) == {"prepare": "CACHED", "train": "CACHED", "evaluate": "CACHED", "deploy": "SKIPPED"}
    cached = by_step(again)
    assert (cached["train"].outputs, cached["train"].files) == (train.outputs, train.files)
    assert cached["prepare"].files == steps["prepare"].files
    assert cached["deploy"].message == (f"condition is false: steps.evaluate.outputs.accuracy ({json.dumps(accuracy)})"
                                        " >= params.min_accuracy (1.01) is false")
    assert [listed.id for listed in alice.pipeline_runs(project)] == [again.id, run.id]
    assert alice.endpoint(project, "wine").version == version  # the skipped deploy changed nothing


@pytest.mark.timeout(600)
def test_a_sweep_picks_its_best_trial_and_retry_reruns_only_the_failed_step_and_what_follows(
        platform, alice, project):
    notebooks = {"tune.ipynb": TUNE, "check.ipynb": CHECK, "report.ipynb": REPORT}
    started = post(alice, f"/projects/{project}/pipelines", body(TUNE_THEN_CHECK, notebooks))
    run = alice.wait_pipeline_run(project, started["id"], timeout=300)
    steps = by_step(run)
    assert run.status.value == "FAILED"
    assert statuses(run) == {"tune": "SUCCEEDED", "check": "FAILED", "report": "SKIPPED"}
    assert "the first check fails, on purpose" in steps["check"].message
    assert steps["report"].message == "upstream check failed"

    # the sweep: 3 trials sampled by Optuna in the space, at most 2 at once, each a child run; the best picked
    tune = steps["tune"]
    trials = [alice.job(project, child.job_id) for child in tune.children]
    assert len(trials) == 3 and all(0.001 <= child.parameters["C"] <= 10 for child in tune.children)
    assert len({child.parameters["C"] for child in tune.children}) == 3
    assert trials[2].created_at >= min(trials[0].finished_at, trials[1].finished_at)  # parallel: 2
    best = picked(tune)
    assert tune.job_id == best.job_id and tune.outputs == {"accuracy": best.value, "C": best.parameters["C"]}
    mlflow = mlflow_client(platform)
    assert {parent_of(mlflow, alice, project, trial.id) for trial in trials} == {run.mlflow_run_id}
    assert steps["check"].parameters == {"C": best.parameters["C"]}

    retried = alice.retry_pipeline_run(project, run.id)
    assert (retried.status.value, retried.attempt) == ("RUNNING", 2)
    with pytest.raises(Conflict, match="only a failed or cancelled run can be retried"):
        alice.retry_pipeline_run(project, run.id)
    after = alice.wait_pipeline_run(project, run.id, timeout=300)
    again = by_step(after)
    assert statuses(after) == {"tune": "SUCCEEDED", "check": "SUCCEEDED", "report": "SUCCEEDED"}
    assert [child.job_id for child in again["tune"].children] == [child.job_id for child in tune.children]
    assert again["check"].job_id not in (None, steps["check"].job_id)
    assert again["check"].outputs == {"checked": best.parameters["C"]}
    # nothing else ran: 3 trials, the failed check, its retry and the report
    assert sorted(job.name for job in alice.jobs(project)) == [
        "tune/check", "tune/check", "tune/report", "tune/tune[0]", "tune/tune[1]", "tune/tune[2]"]
    assert parent_of(mlflow, alice, project, again["report"].job_id) == run.mlflow_run_id
    assert mlflow.get_run(run.mlflow_run_id).info.status == "FINISHED"


@pytest.mark.timeout(600)
def test_an_elyra_pipeline_runs_unchanged_and_lists_what_it_ignores(alice, project, tmp_path):
    run = alice.run_pipeline(project, ELYRA)  # the client uploads the files its nodes name
    ignored = ["pipeline: properties.runtime", "pipeline: pipeline_defaults.runtime_image",
               "node 'load_data': kubernetes_secrets, mounted_volumes, runtime_image",
               "node 'summarize': kubernetes_pod_annotations, runtime_image",
               "node 'report': kubernetes_tolerations, runtime_image"]
    assert (run.name, run.ignored) == ("wine-report", ignored)
    run = alice.wait_pipeline_run(project, run.id, timeout=300)
    steps = by_step(run)
    assert statuses(run) == {"load_data": "SUCCEEDED", "summarize": "SUCCEEDED", "report": "SUCCEEDED"}, \
        [(s.id, s.message) for s in run.steps]
    # links gave the order; env_vars (ROWS=40, COLUMN) the environment; the output files crossed two nodes
    assert [(step.id, step.after) for step in run.steps] == [
        ("load_data", []), ("summarize", ["load_data"]), ("report", ["summarize"])]
    assert steps["report"].outputs["rows"] == 40 and steps["report"].outputs["column"] == "alcohol"
    assert 12 < steps["report"].outputs["mean"] < 15
    load_job, script_job = (alice.job(project, steps[step].job_id) for step in ("load_data", "summarize"))
    assert (load_job.resources.cpus, load_job.resources.memory_mb) == (1.0, 1024)  # Elyra's cpu, memory (GB)
    assert sorted(script_job.input_files) == ["data/rows.csv", "summarize.py", "summary_lib.py"]
    assert alice.job(project, steps["report"].job_id).input_files == ["data/rows.csv", "summary.json"]

    document = json.loads(ELYRA.read_text())  # the editor linking report back into load_data
    nodes = document["pipelines"][0]["nodes"]
    nodes[0]["inputs"][0]["links"] = [{"id": "back", "node_id_ref": nodes[2]["id"], "port_id_ref": "outPort"}]
    (tmp_path / ELYRA.name).write_text(json.dumps(document))
    files = needed_files(read_pipeline(ELYRA.name, ELYRA.read_text()), ELYRA.parent)
    with pytest.raises(InvalidInput) as refused:
        alice.validate_pipeline(project, tmp_path / ELYRA.name, files=files)
    assert refused.value.message == ("wine-report.pipeline: step 'load_data': after: the steps form a cycle: "
                                     "load_data -> report -> summarize -> load_data: remove one of these edges "
                                     "(an after: entry or a reference to a step's outputs or status)")


def test_a_bad_pipeline_gets_422_naming_the_step_and_field(alice, project):
    bad = TUNE_THEN_CHECK.replace("parameters: {C:", "parameters: {c:")
    with pytest.raises(InvalidInput, match=r"step 'check': parameters\.c: 'check.ipynb' defines no parameter 'c' "
                                           r"\(did you mean 'C'\?\)"):
        post(alice, f"/projects/{project}/pipelines", body(bad, {"tune.ipynb": TUNE, "check.ipynb": CHECK,
                                                                 "report.ipynb": REPORT}))
    assert alice.pipeline_runs(project) == []
