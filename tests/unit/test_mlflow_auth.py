"""MLflow auth: the server's config, the project credentials, provisioning and the naming rules."""

from __future__ import annotations

import base64
import configparser
import json
import stat

import pytest
from flask import Flask

from loopml.registry import mlflow_app, mlflow_auth
from loopml.registry.server import mlflow_server_command
from loopml.settings import Settings


def test_the_server_authenticates_with_no_permission_by_default_and_no_secret_in_argv_or_config(tmp_path):
    (tmp_path / "mlflow").mkdir()
    argv, env = mlflow_server_command(tmp_path, 5050, auth=True)
    assert argv[argv.index("--app-name") + 1] == "loopml-auth"
    config_path = tmp_path / "mlflow" / "basic_auth.ini"
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(config_path)
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    config = configparser.ConfigParser()
    config.read(config_path)
    assert config["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    assert config["mlflow"]["database_uri"] == f"sqlite:///{tmp_path / 'mlflow' / 'basic_auth.db'}"
    assert config["mlflow"]["admin_username"] == mlflow_auth.ADMIN_USER
    stored = json.loads((tmp_path / "secrets.json").read_text())
    password = stored["mlflow_admin_password"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == password and len(password) >= 12
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == stored["mlflow_flask_secret"]
    assert stored["mlflow_project_key"]  # made by `up`, before the platform and the hub read it
    assert not any(secret in " ".join(argv) or secret in config_path.read_text() for secret in stored.values())


def test_without_auth_the_server_command_is_as_before(tmp_path):
    argv, env = mlflow_server_command(tmp_path, 5050)
    assert "--app-name" not in argv and not any(name.startswith("MLFLOW_AUTH") for name in env)
    assert not (tmp_path / "secrets.json").exists()


def test_project_credentials_are_derived_per_project_and_stable(tmp_path):
    a = mlflow_auth.project_env(tmp_path, "http://127.0.0.1:5050", "alpha")
    assert a == mlflow_auth.project_env(tmp_path, "http://127.0.0.1:5050", "alpha")
    b = mlflow_auth.project_env(tmp_path, "http://127.0.0.1:5050", "beta")
    assert a["MLFLOW_TRACKING_USERNAME"] == "project-alpha" and b["MLFLOW_TRACKING_USERNAME"] == "project-beta"
    assert a["MLFLOW_TRACKING_PASSWORD"] != b["MLFLOW_TRACKING_PASSWORD"]
    assert a["MLFLOW_TRACKING_PASSWORD"] not in (tmp_path / "secrets.json").read_text()  # derived, not stored
    assert mlflow_auth.project_of_user("project-alpha") == "alpha"
    assert mlflow_auth.project_of_user(mlflow_auth.ADMIN_USER) is None


def test_auth_is_in_use_only_where_up_configured_it(tmp_path):
    settings = Settings(data_dir=tmp_path, mlflow_uri="http://127.0.0.1:5050")
    assert not mlflow_auth.enabled(settings)  # a server given by address is not ours to configure
    assert mlflow_auth.enabled(Settings(data_dir=tmp_path))
    assert not mlflow_auth.enabled(Settings(data_dir=tmp_path, mlflow_auth=False))
    assert not mlflow_auth.in_use(settings)
    assert mlflow_auth.workspace_env(tmp_path, "alpha", {"LOOPML_MLFLOW_URI": "http://m"}) == {}
    (tmp_path / "mlflow").mkdir()
    mlflow_auth.server_env(tmp_path)
    assert mlflow_auth.in_use(settings)
    env = mlflow_auth.workspace_env(tmp_path, "alpha", {"LOOPML_MLFLOW_URI": "http://m", "LOOPML_MLFLOW_AUTH": "true"})
    assert env == mlflow_auth.project_env(tmp_path, "http://m", "alpha")
    assert mlflow_auth.workspace_env(tmp_path, "alpha", {"LOOPML_MLFLOW_URI": "http://m",
                                                         "LOOPML_MLFLOW_AUTH": "false"}) == {}


class FakeAuth:
    def __init__(self, existing: set[str]) -> None:
        self.existing, self.calls = existing, []

    def create_user(self, user, password):
        from mlflow.exceptions import RestException

        if user in self.existing:
            raise RestException({"error_code": "RESOURCE_ALREADY_EXISTS", "message": "exists"})
        self.existing.add(user)
        self.calls.append(("create", user, password))

    def update_user_password(self, user, password):
        self.calls.append(("password", user, password))

    def grant_user_permission(self, user, kind, resource, permission):
        from mlflow.exceptions import RestException

        if ("grant", user, kind, resource, permission) in self.calls:  # as MLflow answers a second grant
            raise RestException({"error_code": "RESOURCE_ALREADY_EXISTS", "message": "exists"})
        self.calls.append(("grant", user, kind, resource, permission))


class FakeRegistry:
    def search_registered_models(self, filter_string, max_results):
        assert filter_string == "name LIKE 'alpha.%'"
        return [type("M", (), {"name": n}) for n in ("alpha.iris", "alpha.wine", "alpha_x.other")]


@pytest.mark.parametrize("existing", [set(), {"project-alpha"}])
def test_provisioning_grants_the_project_its_experiment_and_its_models_only(tmp_path, existing):
    access = mlflow_auth.ProjectAccess(Settings(data_dir=tmp_path))
    access.auth, access.registry = FakeAuth(set(existing)), FakeRegistry()
    access.provision("alpha", "7")
    password = mlflow_auth.project_env(tmp_path, "x", "alpha")["MLFLOW_TRACKING_PASSWORD"]
    assert access.auth.calls == [
        ("password" if existing else "create", "project-alpha", password),
        ("grant", "project-alpha", "experiment", "7", "MANAGE"),
        ("grant", "project-alpha", "registered_model", "alpha.iris", "MANAGE"),
        ("grant", "project-alpha", "registered_model", "alpha.wine", "MANAGE"),
    ]
    access.provision("alpha", "7")  # again, on the next start: nothing new, no error
    assert len(access.auth.calls) == 5 and access.auth.calls[-1][0] == "password"


def test_provisioning_when_mlflow_refuses_is_one_readable_error(tmp_path):
    from mlflow.exceptions import RestException

    from loopml.errors import Unavailable

    class Refusing(FakeAuth):
        def create_user(self, user, password):
            raise RestException({"error_code": "PERMISSION_DENIED", "message": "Permission denied"})

    access = mlflow_auth.ProjectAccess(Settings(data_dir=tmp_path))
    access.auth, access.registry = Refusing(set()), FakeRegistry()
    with pytest.raises(Unavailable, match="could not give project 'alpha' its MLflow user"):
        access.provision("alpha", "7")


@pytest.fixture
def naming_app():
    app = Flask("t")
    app.before_request(mlflow_app.check_project_names)
    for path in ("/api/2.0/mlflow/registered-models/create", "/api/2.0/mlflow/registered-models/rename",
                 "/api/2.0/mlflow/experiments/create", "/api/2.0/mlflow/experiments/update"):
        app.add_url_rule(path, path, lambda: "done", methods=["POST"])
    app.add_url_rule("/api/2.0/mlflow/users/list", "users", lambda: "users", methods=["GET"])
    return app.test_client()


def _auth(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:pw".encode()).decode()}


@pytest.mark.parametrize(("path", "body", "allowed"), [
    ("registered-models/create", {"name": "alpha.iris"}, True),
    ("registered-models/create", {"name": "beta.iris"}, False),
    ("registered-models/create", {"name": "alphairis"}, False),
    ("registered-models/create", {}, False),
    ("registered-models/rename", {"name": "alpha.iris", "new_name": "beta.iris"}, False),
    ("registered-models/rename", {"name": "alpha.iris", "new_name": "alpha.wine"}, True),
    ("experiments/create", {"name": "alpha"}, True),
    ("experiments/create", {"name": "alpha/tuning"}, True),
    ("experiments/create", {"name": "beta"}, False),
    ("experiments/update", {"experiment_id": "1", "new_name": "beta"}, False),
])
def test_a_project_user_names_only_its_own_models_and_experiments(naming_app, path, body, allowed):
    answer = naming_app.post(f"/api/2.0/mlflow/{path}", json=body, headers=_auth("project-alpha"))
    assert (answer.status_code == 200) == allowed, answer.text
    if not allowed:
        assert answer.status_code == 403 and "alpha" in answer.text
    assert naming_app.post(f"/api/2.0/mlflow/{path}", json=body, headers=_auth("loopml")).status_code == 200


def test_a_project_user_cannot_list_mlflow_users(naming_app):
    assert naming_app.get("/api/2.0/mlflow/users/list", headers=_auth("project-alpha")).status_code == 403
    assert naming_app.get("/api/2.0/mlflow/users/list", headers=_auth("loopml")).status_code == 200
