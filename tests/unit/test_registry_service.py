"""RegistryService against a real MLflow tracking store (SQLite, no server).

The store is created once per module (MLflow's migrations take seconds); every test gets
its own project, so tests only see their own models, as they would on a shared platform.
"""

from __future__ import annotations

import itertools
import json

import pytest
from mlflow.tracking import MlflowClient

from loopml.errors import InvalidInput, NotFound
from loopml.registry.service import RegistryService
from loopml.registry.tags import ALIAS_HISTORY

_projects = itertools.count(1)


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'm.db'}"
    MlflowClient(tracking_uri=uri).create_experiment("jobs", artifact_location=str(folder / "artifacts"))
    return uri


@pytest.fixture(scope="module")
def mlflow_client(tracking_uri) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@pytest.fixture
def service(tracking_uri) -> RegistryService:
    return RegistryService(tracking_uri)


@pytest.fixture
def project() -> str:
    # "_" is LIKE's one-character wildcard: a project named with it must still see only its own models
    return f"proj_{next(_projects)}"


@pytest.fixture
def register(mlflow_client):
    """``register(full_name, metrics, params, **lineage)`` -> version number: a run with those
    metrics and params, and a version of ``full_name`` from it tagged as loopml.log_model tags it."""

    def create(full_name: str, metrics: dict[str, float] | None = None, params: dict[str, str] | None = None,
               job_id: str = "j1", user: str = "alice", parameters: dict | None = None) -> int:
        experiment = mlflow_client.get_experiment_by_name("jobs").experiment_id
        run_id = mlflow_client.create_run(experiment).info.run_id
        for key, value in (metrics or {}).items():
            mlflow_client.log_metric(run_id, key, value)
        for key, value in (params or {}).items():
            mlflow_client.log_param(run_id, key, value)
        try:
            mlflow_client.get_registered_model(full_name)
        except Exception:
            mlflow_client.create_registered_model(full_name)
        tags = {"loopml.job_id": job_id, "loopml.user": user, "loopml.notebook": "train.ipynb",
                "loopml.parameters": json.dumps(parameters or {}), "loopml.flavor": "sklearn",
                "loopml.reference": f"runs:/{run_id}/loopml/reference/x.parquet", "loopml.run_id": run_id}
        version = mlflow_client.create_model_version(full_name, f"runs:/{run_id}/model", run_id=run_id, tags=tags)
        return int(version.version)

    return create


def test_list_returns_only_the_projects_own_models(service, register, project):
    register(f"{project}.iris")
    register(f"{project}.iris")
    register(f"{project}.wine")
    look_alikes = [f"{project}2.iris", f"{project}x.iris", project.replace("_", "X") + ".iris", f"x{project}.iris"]
    for name in look_alikes:
        register(name)
    models = service.list(project)
    assert [(m.name, m.registered_name, m.latest_version) for m in models] == [
        ("iris", f"{project}.iris", 2), ("wine", f"{project}.wine", 1)]
    assert all(m.updated_at is not None and m.aliases == {} for m in models)
    assert service.list(f"{project}3") == []


def test_get_returns_versions_newest_first_with_run_metrics_params_and_lineage(service, register, project):
    register(f"{project}.iris", {"accuracy": 0.9}, {"C": "1.0"}, job_id="j1", parameters={"C": 1.0})
    register(f"{project}.iris", {"accuracy": 0.95, "f1": 0.9}, {"C": "0.05", "penalty": "l2"}, job_id="j2",
             user="bob", parameters={"C": 0.05})
    register(f"{project}.iris", job_id="j3")
    model = service.get(project, "iris")
    assert (model.name, model.registered_name, model.latest_version) == ("iris", f"{project}.iris", 3)
    assert [v.version for v in model.versions] == [3, 2, 1]
    newest, second, first = model.versions
    assert (newest.metrics, newest.params) == ({}, {})
    assert second.metrics == {"accuracy": 0.95, "f1": 0.9} and second.params == {"C": "0.05", "penalty": "l2"}
    assert first.metrics == {"accuracy": 0.9} and first.params == {"C": "1.0"}
    assert (second.lineage.job_id, second.lineage.user, second.lineage.notebook) == ("j2", "bob", "train.ipynb")
    assert second.lineage.parameters == {"C": 0.05} and second.lineage.run_id
    assert second.source == f"runs:/{second.lineage.run_id}/model" and second.status == "READY"
    assert (second.flavor, second.reference.startswith("runs:/")) == ("sklearn", True)
    assert service.get(project, f"{project}.iris") == model  # the <project>.name form reads the same model


def test_promoting_the_challenger_takes_challenger_off_it_and_records_the_move(service, register, project):
    for _ in range(3):
        register(f"{project}.iris")
    service.set_alias(project, "iris", "champion", 1, user="alice")
    service.set_alias(project, "iris", "challenger", 2, user="alice")
    promoted = service.set_alias(project, "iris", "champion", 2, user="bob")
    assert promoted.aliases == {"champion": 2}
    assert [v.aliases for v in promoted.versions] == [[], ["champion"], []]
    moved, dropped = promoted.alias_history[-2:]
    assert (moved.alias, moved.version, moved.previous, moved.user) == ("champion", 2, 1, "bob")
    assert (dropped.alias, dropped.version, dropped.previous, dropped.user) == ("challenger", None, 2, "bob")
    assert [(h.alias, h.version, h.previous) for h in promoted.alias_history if h.alias == "champion"] == [
        ("champion", 1, None), ("champion", 2, 1)]

    service.set_alias(project, "iris", "challenger", 1, user="alice")
    kept = service.set_alias(project, "iris", "champion", 3, user="alice")
    assert kept.aliases == {"champion": 3, "challenger": 1}  # a challenger on another version stays


def test_delete_alias_removes_it_and_records_what_it_pointed_at(service, register, project):
    register(f"{project}.iris")
    service.set_alias(project, "iris", "staging", 1, user="alice")
    model = service.delete_alias(project, "iris", "staging", user="carol")
    assert model.aliases == {} and model.versions[0].aliases == []
    last = model.alias_history[-1]
    assert (last.alias, last.version, last.previous, last.user) == ("staging", None, 1, "carol")
    with pytest.raises(NotFound, match="has no alias 'staging'"):
        service.delete_alias(project, "iris", "staging", user="carol")


def test_alias_history_is_the_models_tag(service, register, project, mlflow_client):
    register(f"{project}.iris")
    service.set_alias(project, "iris", "champion", 1, user="alice")
    history = json.loads(mlflow_client.get_registered_model(f"{project}.iris").tags[ALIAS_HISTORY])
    assert [(h["alias"], h["version"], h["user"]) for h in history] == [("champion", 1, "alice")]


@pytest.mark.parametrize(
    "call, what",
    [
        pytest.param(lambda s, p: s.get(p, "nope"), "model", id="get-unknown-model"),
        pytest.param(lambda s, p: s.set_alias(p, "nope", "champion", 1, user="u"), "model", id="alias-unknown-model"),
        pytest.param(lambda s, p: s.delete_alias(p, "nope", "champion", user="u"), "model", id="unalias-unknown-model"),
        pytest.param(lambda s, p: s.set_alias(p, "iris", "champion", 9, user="u"), "version 9", id="unknown-version"),
        pytest.param(lambda s, p: s.get(f"{p}9", "iris"), "model", id="model-of-another-project"),
    ],
)
def test_unknown_models_and_versions_are_not_found(service, register, project, call, what):
    register(f"{project}.iris")
    with pytest.raises(NotFound, match=f"^{what} .*does not exist$"):
        call(service, project)


@pytest.mark.parametrize("alias", ["latest", "v3", "Champion", "", "a/b"])
def test_invalid_aliases_are_refused_before_touching_mlflow(service, register, project, alias):
    register(f"{project}.iris")
    with pytest.raises(InvalidInput, match="invalid alias"):
        service.set_alias(project, "iris", alias, 1, user="u")
    assert service.get(project, "iris").alias_history == []


@pytest.mark.parametrize("name", ["a/b", "..", "other.iris", "a b"])
def test_invalid_names_are_refused(service, project, name):
    with pytest.raises(InvalidInput, match="model"):
        service.get(project, name)


# -- what the serving and monitor slices ask of one version ------------------------------------


def test_resolve_names_the_version_an_alias_points_at_or_the_version_itself(service, register, project):
    register(f"{project}.iris")
    register(f"{project}.iris")
    service.set_alias(project, "iris", "champion", 1, user="u")
    assert service.resolve(f"{project}.iris", alias="champion") == 1
    assert service.resolve(f"{project}.iris", version=2) == 2


@pytest.mark.parametrize(
    "model, alias, version, what",
    [
        pytest.param("iris", "champion", None, "iris@champion", id="alias-never-set"),
        pytest.param("iris", None, 9, "iris/9", id="unknown-version"),
        pytest.param("nope", "champion", None, "nope@champion", id="unknown-model"),
    ],
)
def test_resolving_what_does_not_exist_is_not_found_with_how_to_list_versions(service, register, project, model,
                                                                               alias, version, what):
    register(f"{project}.iris")
    with pytest.raises(NotFound, match=f"^model version {project}.{what} does not exist: `loopml models show {model}`"):
        service.resolve(f"{project}.{model}", alias=alias, version=version)


def test_a_versions_training_job_and_files_come_from_the_registry(service, register, project):
    by_job = register(f"{project}.iris", job_id="j7")
    by_hand = register(f"{project}.iris", job_id="")
    assert service.training_job_id(f"{project}.iris", by_job) == "j7"
    assert service.training_job_id(f"{project}.iris", by_hand) is None
    assert service.download_uri(f"{project}.iris", by_job).endswith("/model")
    with pytest.raises(NotFound):
        service.training_job_id(f"{project}.iris", 9)


def test_a_reference_is_only_an_artifact_of_the_versions_own_run_in_the_projects_experiment(
        service, register, project, mlflow_client):
    version = register(f"{project}.iris")  # its run is in experiment "jobs", not the project's
    with pytest.raises(InvalidInput, match="not of the model's project"):
        service.reference_uri(f"{project}.iris", version)
    experiment = mlflow_client.create_experiment(project)
    run_id = mlflow_client.create_run(experiment).info.run_id
    mlflow_client.create_model_version(f"{project}.iris", f"runs:/{run_id}/model", run_id=run_id,
                                       tags={"loopml.reference": f"runs:/{run_id}/loopml/reference/x.parquet"})
    mlflow_client.create_model_version(f"{project}.iris", f"runs:/{run_id}/model", run_id=run_id)
    assert service.reference_uri(f"{project}.iris", version + 1) == f"runs:/{run_id}/loopml/reference/x.parquet"
    assert service.reference_uri(f"{project}.iris", version + 2) is None
