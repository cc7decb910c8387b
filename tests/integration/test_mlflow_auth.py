"""MLflow answers per project: with its project's credentials, a plain MLflow client reads and
writes that project's runs, artifacts and ``<project>.*`` models and nothing of another's."""

from __future__ import annotations

import contextlib
import os
import uuid

import httpx
import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from loopml.registry import mlflow_auth

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def as_user(env: dict[str, str] | None, uri: str | None = None):
    """Plain MLflow clients in this block (``mlflow.*`` at ``env``'s or ``uri``'s server)
    authenticate with ``env`` (None: anonymously)."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # MLflow keeps each run's artifact repository (with the credentials it was made with) in a
    # process-wide cache: a block acts as a fresh process of its user, with none of it
    tracking_utils._artifact_repos_cache.clear()
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ.update({name: env[name] for name in names} if env else {"MLFLOW_TRACKING_URI": uri})
    try:
        yield
    finally:
        tracking_utils._artifact_repos_cache.clear()
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def model_dir(folder):
    """A folder MLflow registers as a model (an ``MLmodel`` file is all it looks for)."""
    path = folder / "model"
    path.mkdir(exist_ok=True)
    (path / "MLmodel").write_text("flavors: {}\n")
    return path


def refused(call, *args, **kwargs) -> int:
    """The HTTP status MLflow refused ``call`` with (it must refuse)."""
    with pytest.raises((MlflowException, requests.HTTPError)) as caught:  # artifacts: the latter
        call(*args, **kwargs)
    text = str(caught.value)
    status = next((code for code in (401, 403) if str(code) in text or
                   {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}[code] in text), None)
    assert status, f"refused for another reason: {text[:300]}"
    return status


@pytest.fixture(scope="module")
def two_projects(platform, admin, tmp_path_factory):
    """Projects A and B, each with a run (metric, artifact) and a registered model ``<P>.m`` made
    with its own credentials, as its jobs would."""
    uri = platform.state()["urls"]["mlflow"]
    made = {}
    folder = tmp_path_factory.mktemp("mlflow-auth")
    for key in ("a", "b"):
        name = f"auth{key}-{uuid.uuid4().hex[:8]}"
        admin.create_project(name, members=["alice"])
        env = mlflow_auth.project_env(platform.home, uri, name)
        client = MlflowClient(uri, registry_uri=uri)
        with as_user(env):
            experiment = client.get_experiment_by_name(name)
            run = client.create_run(experiment.experiment_id)
            client.log_metric(run.info.run_id, "accuracy", 0.9)
            (folder / f"{key}.txt").write_text(f"data of {name}")
            client.log_artifact(run.info.run_id, str(folder / f"{key}.txt"))
            client.log_artifacts(run.info.run_id, str(model_dir(folder)), "model")
            version = mlflow.register_model(f"runs:/{run.info.run_id}/model", f"{name}.m")
            client.set_terminated(run.info.run_id)
        made[key] = {"name": name, "env": env, "experiment": experiment.experiment_id,
                     "run": run.info.run_id, "artifact_uri": run.info.artifact_uri, "version": version.version}
    return uri, made, folder


def test_a_project_reads_and_writes_its_own_runs_artifacts_and_models(two_projects):
    uri, made, folder = two_projects
    a = made["a"]
    client = MlflowClient(uri, registry_uri=uri)
    with as_user(a["env"]):
        assert client.get_run(a["run"]).data.metrics["accuracy"] == 0.9
        assert [r.info.run_id for r in mlflow.search_runs([a["experiment"]], output_format="list")] == [a["run"]]
        assert client.download_artifacts(a["run"], "a.txt", str(folder / "got")).endswith("a.txt")
        run = client.create_run(a["experiment"])
        client.log_artifact(run.info.run_id, str(folder / "a.txt"))
        client.log_artifacts(run.info.run_id, str(model_dir(folder)), "model")
        version = mlflow.register_model(f"runs:/{run.info.run_id}/model", f"{a['name']}.m")
        client.set_registered_model_alias(f"{a['name']}.m", "champion", version.version)
        assert client.get_model_version_by_alias(f"{a['name']}.m", "champion").version == version.version
        assert [m.name for m in client.search_registered_models()] == [f"{a['name']}.m"]
        names = {e.name for e in client.search_experiments()}
        assert a["name"] in names and made["b"]["name"] not in names


def test_a_project_gets_nothing_of_another_project(two_projects):
    uri, made, folder = two_projects
    a, b = made["a"], made["b"]
    client = MlflowClient(uri, registry_uri=uri)
    model = f"{b['name']}.m"
    with as_user(a["env"]):
        statuses = {
            "get B's run": refused(client.get_run, b["run"]),
            "log to B's run": refused(client.log_metric, b["run"], "accuracy", 0.0),
            "download B's artifact": refused(client.download_artifacts, b["run"], "b.txt", str(folder / "stolen")),
            "upload into B's run": refused(client.log_artifact, b["run"], str(folder / "a.txt")),
            "get B's model": refused(client.get_registered_model, model),
            "new version of B's model": refused(client.create_model_version, model, f"runs:/{a['run']}/model",
                                                a["run"]),
            "set B's alias": refused(client.set_registered_model_alias, model, "champion", b["version"]),
            "delete B's model": refused(client.delete_registered_model, model),
            "create a model named B.x": refused(client.create_registered_model, f"{b['name']}.x"),
            "create B's experiment name": refused(client.create_experiment, f"{b['name']}/mine"),
        }
        assert set(statuses.values()) == {403}, statuses
        assert mlflow.search_runs([b["experiment"]], output_format="list") == []
        assert not [m for m in client.search_registered_models() if m.name.startswith(b["name"])]
    path = b["artifact_uri"].removeprefix("mlflow-artifacts:").lstrip("/")
    auth = (a["env"]["MLFLOW_TRACKING_USERNAME"], a["env"]["MLFLOW_TRACKING_PASSWORD"])
    proxy = f"{uri}/api/2.0/mlflow-artifacts/artifacts/{path}"
    download = httpx.get(f"{proxy}/b.txt", auth=auth, timeout=30)
    upload = httpx.put(f"{proxy}/b.txt", content=b"overwritten", auth=auth, timeout=30)
    assert (download.status_code, upload.status_code) == (403, 403), (download.text, upload.text)
    assert b["name"].encode() not in download.content
    with as_user(b["env"]):  # B's data is as B left it
        assert client.get_run(b["run"]).data.metrics == {"accuracy": 0.9}
        assert (open(client.download_artifacts(b["run"], "b.txt", str(folder / "b-check"))).read()
                == f"data of {b['name']}")
        assert client.get_registered_model(model).name == model
        assert not client.get_registered_model(model).aliases


def test_anonymous_callers_get_nothing(two_projects):
    uri, made, _ = two_projects
    client = MlflowClient(uri, registry_uri=uri)
    with as_user(None, uri):
        assert refused(client.get_run, made["a"]["run"]) == 401
        assert refused(client.search_experiments) == 401
        assert refused(client.search_registered_models) == 401
    assert httpx.get(f"{uri}/api/2.0/mlflow/runs/get", params={"run_id": made["a"]["run"]}).status_code == 401
