"""``mlflow server --app-name loopml-auth``: MLflow's basic-auth app plus the project names.

Measured against a real basic-auth server (MLflow 3.17, ``default_permission =
NO_PERMISSIONS``; see docs/security.md): it answers 401 to anonymous callers on every route
but ``/health`` and static files, and 403 (or a result filtered to the caller's grants) to
a user for another user's experiment, runs, metrics, artifacts through the artifact proxy
(download, upload, list, delete, also under ``/ajax-api``), ``/get-artifact``, logged models,
registered models and versions, aliases, GraphQL and the search routes. What it leaves open
is *naming*: any user may create an experiment or a registered model of any name and becomes
its manager. So project A could create ``B.x`` (squatting B's model names) or the experiment
``B`` before project B exists (the platform would then put B's runs in A's experiment).

This app adds, for project users (``project-<P>``, :mod:`loopml.registry.mlflow_auth`):

- creating or renaming a registered model (or prompt) is refused (403) unless its name is
  ``P.<name>``; creating or renaming an experiment unless it is named ``P`` or ``P/<name>``;
- listing MLflow's users is refused (it names every project);

and for everyone: a registered model ``P.<name>`` created by another user (the admin) is
granted MANAGE to P's user, so P's code can use the models registered for it.
"""

from __future__ import annotations

from flask import Flask, Response, request

from loopml.registry.mlflow_auth import project_of_user, project_user

_MODEL_NAMING = ("/mlflow/registered-models/create", "/mlflow/registered-models/rename")
_EXPERIMENT_NAMING = ("/mlflow/experiments/create", "/mlflow/experiments/update")
_USER_LISTING = ("/mlflow/users/list",)
_MODEL_CREATE = "/mlflow/registered-models/create"


def _refused(why: str) -> Response:
    return Response(f"Permission denied: {why}", status=403, mimetype="text/plain")


def _body() -> dict:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def check_project_names() -> Response | None:
    """Runs after MLflow's own check (the caller is authenticated and may act): refuses the
    names a project user may not give. None lets the request through."""
    authorization = request.authorization
    project = project_of_user(authorization.username if authorization else None)
    if project is None:
        return None
    path = request.path
    if path.endswith(_USER_LISTING):
        return _refused("project users cannot list MLflow's users")
    if path.endswith(_MODEL_NAMING):
        body = _body()
        name = str(body.get("new_name") if path.endswith("rename") else body.get("name") or "")
        if not name.startswith(f"{project}."):
            return _refused(f"the registered models of project {project!r} are named '{project}.<name>'")
    if path.endswith(_EXPERIMENT_NAMING):
        body = _body()
        name = body.get("new_name") if path.endswith("update") else body.get("name")
        if name is not None and not (name == project or str(name).startswith(f"{project}/")):
            return _refused(f"the experiments of project {project!r} are named {project!r} or '{project}/<name>'")
    return None


def grant_project_models(response: Response) -> Response:
    """A model ``P.<name>`` that someone else created is P's too: MANAGE for P's user."""
    if request.path.endswith(_MODEL_CREATE) and response.status_code == 200:
        from mlflow.server.auth import store

        name = str(_body().get("name") or "")
        project, dot, rest = name.partition(".")
        if dot and rest and project_of_user(request.authorization.username if request.authorization else None) is None:
            try:
                store.grant_user_permission(project_user(project), "registered_model", name, "MANAGE")
            except Exception:  # noqa: BLE001 - no such project user: the model stays the admin's
                pass
    return response


def create_app(app: Flask | None = None):
    """The served app: MLflow's basic-auth app with the two hooks above, which run after its
    own (Flask runs ``before_request`` functions in the order they were registered)."""
    from mlflow.server import app as mlflow_app
    from mlflow.server.auth import create_app as basic_auth

    flask_app = app or mlflow_app
    served = basic_auth(flask_app)
    flask_app.before_request(check_project_names)
    flask_app.after_request(grant_project_models)
    return served
