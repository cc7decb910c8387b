"""The registry end to end: a job logs and registers a model, lineage both ways, aliases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from loopml.errors import Forbidden, InvalidInput
from loopml.executor.models import JobStatus
from tests.integration.notebooks import TRAIN_AND_LOG


def train(client, project, **parameters):
    job = client.wait(project, client.submit(project, TRAIN_AND_LOG, parameters=parameters).id, timeout=180)
    assert job.status == JobStatus.SUCCEEDED, client.logs(project, job.id)
    printed = [o.text for o in client.output(project, job.id).cells[-1].outputs if o.get("name") == "stdout"]
    return job, json.loads(printed[-1].strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(platform, admin):
    """A project with one trained model version (shared by this module's read-only tests)."""
    project = "registry-demo"
    admin.create_project(project, members=["alice"])
    job, printed = train(platform.client(), project, C=1.0)
    return project, job, printed


def test_job_registers_a_version_with_signature_example_requirements_reference_and_lineage(
        platform, alice, trained, tmp_path, monkeypatch):
    project, job, printed = trained
    assert printed["version"] == 1 and printed["job"] == job.id
    assert [(m.name, m.version) for m in job.models] == [(f"{project}.iris", 1)]

    model = alice.model(project, "iris")
    version = model.versions[0]
    assert (model.registered_name, version.version, version.aliases) == (f"{project}.iris", 1, ["champion"])
    assert version.lineage.job_id == job.id and version.lineage.run_id == job.mlflow_run_id
    assert version.lineage.user == "alice" and version.lineage.parameters == {"C": 1.0}
    assert len(version.lineage.notebook_sha256) == 64
    assert {"accuracy", "train_accuracy"} <= set(version.metrics) and version.params["C"] == "1.0"

    tracking_uri = platform.state()["urls"]["mlflow"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # the registry of models:/ URIs too
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{project}.iris/1", dst_path=str(tmp_path / "m")))
    spec = yaml.safe_load((local / "MLmodel").read_text())
    assert "inputs" in spec["signature"] and "saved_input_example_info" in spec
    requirements = (local / "requirements.txt").read_text()
    assert "scikit-learn==" in requirements and "mlflow" in requirements
    reference = Path(mlflow.artifacts.download_artifacts(version.reference, dst_path=str(tmp_path / "r")))
    frame = pd.read_parquet(reference)
    assert {"sepal length (cm)", "__prediction__", "__label__"} <= set(frame.columns) and len(frame) == 150
    assert MlflowClient(tracking_uri).get_run(job.mlflow_run_id).data.metrics["accuracy"] > 0.9


def test_a_plain_mlflow_process_loads_the_champion_and_predicts_the_same(platform, trained):
    project, _, printed = trained
    script = (
        "import json, sys, mlflow\n"
        "from sklearn.datasets import load_iris\n"
        f"mlflow.set_tracking_uri({platform.state()['urls']['mlflow']!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{project}.iris@champion')\n"
        "X, _ = load_iris(return_X_y=True, as_frame=True)\n"
        "assert 'loopml' not in sys.modules\n"
        "print(json.dumps(model.predict(X.iloc[:10]).tolist()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": str(platform.home),
                                        **platform.mlflow_env(project)})  # a process of the project
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == printed["predictions"]


def test_second_version_is_challenger_until_promoted_from_the_cli(platform, alice, project):
    first, _ = train(alice, project, C=1.0)
    second, printed = train(alice, project, C=0.05)
    assert printed["version"] == 2
    before = alice.model(project, "iris")
    assert before.aliases == {"champion": 1, "challenger": 2}

    promoted = platform.cli("models", "promote", "iris", "2", "-P", project)
    assert promoted.returncode == 0, promoted.stderr
    shown = platform.cli("models", "show", "iris", "-P", project, "--json")
    model = json.loads(shown.stdout)
    assert model["aliases"] == {"champion": 2}
    assert [v["version"] for v in model["versions"]] == [2, 1]
    assert all("accuracy" in v["metrics"] for v in model["versions"])
    assert model["versions"][0]["params"]["C"] == "0.05" and model["versions"][1]["params"]["C"] == "1.0"
    promotion = [h for h in model["alias_history"] if h["alias"] == "champion"][-1]
    assert (promotion["version"], promotion["previous"], promotion["user"]) == (2, 1, "alice")
    table = platform.cli("models", "show", "iris", "-P", project).stdout
    assert "accuracy" in table and "champion" in table


@pytest.mark.parametrize("call", ["models", "model", "promote"], ids=["list", "read", "alias"])
def test_non_members_cannot_reach_another_projects_models(platform, trained, call):
    project = trained[0]
    bob = platform.client(platform.bob_token)
    with pytest.raises(Forbidden):
        {"models": lambda: bob.models(project), "model": lambda: bob.model(project, "iris"),
         "promote": lambda: bob.promote(project, "iris", 1)}[call]()


@pytest.mark.parametrize(
    "name, reason",
    [("a/b", "path separator"), ("..", "'..'"), ("a b", "whitespace"), ("other.iris", "belongs to project"),
     ("bad\x01name", "control character")],
    ids=["slash", "dotdot", "space", "other-project-prefix", "control-char"],
)
def test_bad_model_names_are_refused_with_the_reason(alice, trained, name, reason):
    with pytest.raises(InvalidInput, match=reason):
        alice.model(trained[0], name)


def test_log_model_interactively_opens_a_run_in_the_projects_experiment(platform, alice, project):
    script = (
        "import loopml\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.tree import DecisionTreeClassifier\n"
        "X, y = load_iris(return_X_y=True)\n"
        "v = loopml.log_model(DecisionTreeClassifier(max_depth=2).fit(X, y), 'tree', X, y)\n"
        "print(v.name, v.version, v.aliases[0])\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(platform.home), "LOOPML_PROJECT": project, "LOOPML_USER": "alice",
           **platform.mlflow_env(project)}  # as a workspace of the project has them
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{project}.tree 1 champion" in done.stdout.splitlines()
    version = alice.model(project, "tree").versions[0]
    assert version.lineage.job_id is None and version.lineage.user == "alice"
    run = MlflowClient(platform.state()["urls"]["mlflow"]).get_run(version.lineage.run_id)
    experiment = MlflowClient(platform.state()["urls"]["mlflow"]).get_experiment(run.info.experiment_id)
    assert experiment.name == project
