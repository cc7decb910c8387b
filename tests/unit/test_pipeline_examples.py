"""The pipeline of ``examples/pipelines`` passes every check as it is committed, its notebooks are
committed clean, and its ``deploy`` step (a canary) works on a project that has no endpoint yet.
``tests/integration/test_pipelines.py`` runs it on the real platform."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from loopml.executor.pipelines import check_pipeline, read_native
from loopml.executor.pipelines.actions import ActionCall
from loopml.executor.pipelines.local import needed_files
from loopml.server.pipeline_actions import pipeline_actions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
PIPELINES = sorted(EXAMPLES.glob("*.pipeline.yaml"))
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


@pytest.mark.parametrize("path", PIPELINES, ids=lambda path: path.name)
def test_example_pipeline_validates_against_its_folder_and_ships_every_notebook(path):
    pipeline = read_native(path.read_text(), source=path.name)
    assert check_pipeline(pipeline, EXAMPLES) == []
    assert sorted(needed_files(pipeline, EXAMPLES)) == sorted(step.file for step in pipeline.steps.values()
                                                              if step.file)


def test_the_wine_example_is_the_issues_pipeline():
    pipeline = read_native((EXAMPLES / "wine-retrain.pipeline.yaml").read_text(), source="wine-retrain.pipeline.yaml")
    assert (pipeline.name, pipeline.parameters) == ("wine-retrain", {"C": 1.0, "min_accuracy": 0.9})
    assert {step_id: step.kind for step_id, step in pipeline.steps.items()} == {
        "prepare": "notebook", "train": "notebook", "evaluate": "notebook", "deploy": "deploy"}
    assert pipeline.steps["train"].foreach == {"C": [0.01, 0.1, 1.0]}
    assert pipeline.steps["deploy"].deploy.canary == 20


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_example_notebook_is_committed_clean_with_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1


class Endpoints:
    def __init__(self, names: list[str]) -> None:
        self.names, self.deployed = names, []

    def list(self, project):
        return [type("Endpoint", (), {"name": name}) for name in self.names]

    def deploy(self, user, project, spec):
        self.deployed.append((spec.name, spec.model, spec.canary))


@pytest.mark.parametrize(("existing", "canary"), [
    pytest.param([], None, id="a-new-endpoint-serves-the-version-alone"),
    pytest.param(["wine"], 20.0, id="an-existing-one-gets-it-as-a-canary"),
])
def test_a_deploy_step_with_a_canary_creates_a_missing_endpoint(existing, canary):
    endpoints = Endpoints(existing)
    deploy = pipeline_actions(lambda: None, lambda: endpoints)["deploy"]
    call = ActionCall(user="alice", project="demo", pipeline_run_id="r1", step="deploy", kind="deploy",
                      arguments={"model": "wine", "endpoint": "wine", "version": None, "canary": 20},
                      mlflow_run_id="m1", registered={"wine": 3})
    assert deploy(call) == {"model": "wine", "version": 3, "endpoint": "wine"}
    assert endpoints.deployed == [("wine", "wine/3", canary)]
