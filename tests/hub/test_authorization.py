"""Who may call which REST route: every route of the platform's OpenAPI × four callers, on
project ``fraud``.

- member: bob's hub token (hub group loopml-fraud);
- non_member: alice's hub token (loopml-demo only);
- admin: carol's hub token (loopml-admins: a hub admin, hence a platform admin);
- anonymous: no ``Authorization`` header, and (the same answer expected) a token nobody issued.

Sub-resources are ids and names that do not exist (``nonexistent``): the membership check
comes before the lookup, so a non-member learns nothing (403, never 404), while a member or an
admin gets the route's own answer: its success, or 404/409/422 for the missing or invalid
thing. Bodies are well formed wherever the body is read, and nothing here starts a job or
deploys a model. Every 4xx is JSON with a ``message``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from loopml.monitor.ingest import capture_tokens
from loopml.settings import Settings

pytestmark = pytest.mark.integration

PROJECT = "fraud"
CALLERS = {"member": "bob", "non_member": "alice", "admin": "carol"}
# what each path parameter of the OpenAPI templates becomes in the requests
PATH_VALUES = {"project": PROJECT, "job_id": "nonexistent", "schedule_id": "nonexistent", "name": "nonexistent",
               "alias": "champion", "run_id": "nonexistent", "version": "1"}
BAD_PIPELINE = {"source_name": "x.pipeline.yaml", "content": "steps: ["}  # not YAML: nothing runs
NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def route(method: str, path: str, *, member: int, non_member: int, admin: int, anonymous: int, body=None):
    """A row of the matrix: ``path`` as the OpenAPI writes it, under the API prefix."""
    expected = {"member": member, "non_member": non_member, "admin": admin, "anonymous": anonymous}
    return pytest.param(method, path, body, expected, id=f"{method} {path}")


def project_route(method: str, path: str, *, ok: int, body=None):
    """A route of one project: ``ok`` for a member and an admin, 403 for anyone else known."""
    return route(method, path, member=ok, non_member=403, admin=ok, anonymous=401, body=body)


def admin_route(method: str, path: str, *, ok: int, body=None):
    return route(method, path, member=403, non_member=403, admin=ok, anonymous=401, body=body)


P = "/projects/{project}"
MATRIX = [
    route("GET", "/health", member=200, non_member=200, admin=200, anonymous=200),
    route("GET", "/status", member=200, non_member=200, admin=200, anonymous=401),
    # everyone known sees a list: their own projects, all of them for admins
    route("GET", "/projects", member=200, non_member=200, admin=200, anonymous=401),
    admin_route("POST", "/projects", ok=409, body={"name": PROJECT}),  # exists already
    project_route("GET", P, ok=200),
    admin_route("PATCH", P, ok=200, body={}),  # an empty change
    project_route("GET", P + "/loop", ok=200),
    project_route("POST", P + "/workspaces", ok=200),  # records the caller's workspace start: nothing runs
    # jobs
    project_route("POST", P + "/jobs", ok=422, body={"notebook": {}}),  # not nbformat: nothing runs
    project_route("GET", P + "/jobs", ok=200),
    project_route("GET", P + "/jobs/{job_id}", ok=404),
    project_route("GET", P + "/jobs/{job_id}/logs", ok=404),
    project_route("GET", P + "/jobs/{job_id}/output", ok=404),
    project_route("POST", P + "/jobs/{job_id}/cancel", ok=404),
    project_route("POST", P + "/jobs/{job_id}/requeue", ok=404),
    # pipelines
    project_route("POST", P + "/pipelines/validate", ok=422, body=BAD_PIPELINE),
    project_route("POST", P + "/pipelines", ok=422, body=BAD_PIPELINE),
    project_route("GET", P + "/pipelines", ok=200),
    project_route("GET", P + "/pipelines/{run_id}", ok=404),
    project_route("POST", P + "/pipelines/{run_id}/cancel", ok=404),
    project_route("POST", P + "/pipelines/{run_id}/retry", ok=404),
    # schedules
    project_route("POST", P + "/schedules", ok=422, body={"cron": "not a cron", "template": {"notebook": NOTEBOOK}}),
    project_route("GET", P + "/schedules", ok=200),
    project_route("GET", P + "/schedules/{schedule_id}", ok=404),
    project_route("DELETE", P + "/schedules/{schedule_id}", ok=404),
    # models
    project_route("GET", P + "/models", ok=200),
    project_route("GET", P + "/models/{name}", ok=404),
    project_route("POST", P + "/models/{name}/aliases", ok=404, body={"alias": "champion", "version": 1}),
    project_route("DELETE", P + "/models/{name}/aliases/{alias}", ok=404),
    project_route("GET", P + "/models/{name}/versions/{version}/contract", ok=404),
    project_route("PATCH", P + "/models/{name}/versions/{version}/contract", ok=404, body={"set": ["x.max=1"]}),
    # endpoints
    project_route("POST", P + "/endpoints", ok=404, body={"name": "nonexistent", "model": "nonexistent@champion"}),
    project_route("GET", P + "/endpoints", ok=200),
    project_route("GET", P + "/endpoints/{name}", ok=404),
    project_route("PATCH", P + "/endpoints/{name}", ok=404, body={"replicas": 2}),
    project_route("DELETE", P + "/endpoints/{name}", ok=404),
    project_route("POST", P + "/endpoints/{name}/promote", ok=404),
    project_route("POST", P + "/endpoints/{name}/rollback", ok=404),
    # monitoring and the feedback loop
    project_route("GET", P + "/endpoints/{name}/monitor", ok=404),
    project_route("POST", P + "/endpoints/{name}/feedback", ok=404, body=[{"request_id": "r1", "label": 1}]),
    project_route("PUT", P + "/endpoints/{name}/policy", ok=404, body={}),
    project_route("GET", P + "/endpoints/{name}/policy", ok=404),
    project_route("POST", P + "/endpoints/{name}/requeue", ok=404),
    project_route("GET", P + "/alerts", ok=200),
]


@pytest.fixture(scope="module")
def tokens(hub) -> dict[str, str | None]:
    """The hub API token of each caller of the matrix (``None``: no token)."""
    made: dict[str, str | None] = {role: hub.api_token(user) for role, user in CALLERS.items()}
    made["anonymous"] = None
    return made


def api_prefix(hub) -> str:
    return urlsplit(hub.platform_url).path.rstrip("/") + "/api/v1"


def call(hub, method: str, path: str, token: str | None, body=None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = hub.platform_url + "/api/v1" + path.format(**PATH_VALUES)
    return httpx.request(method, url, headers=headers, timeout=60, **({"json": body} if body is not None else {}))


def explained(response: httpx.Response) -> bool:
    """Whether a 4xx answer is JSON with a ``message``."""
    try:
        return bool(response.json().get("message"))
    except ValueError:
        return False


@pytest.mark.parametrize("method, path, body, expected", MATRIX)
def test_who_may_call_the_route(hub, tokens, method, path, body, expected):
    got, unexplained = {}, []
    for role, token in tokens.items():
        response = call(hub, method, path, token, body)
        got[role] = response.status_code
        if 400 <= response.status_code < 500 and not explained(response):
            unexplained.append(f"{role}: {response.status_code} {response.text[:200]!r}")
    assert got == expected
    assert not unexplained, unexplained
    unknown = call(hub, method, path, "a-token-nobody-issued", body)
    assert unknown.status_code == expected["anonymous"] and (unknown.status_code != 401 or explained(unknown))


def test_the_matrix_covers_every_route_of_the_openapi(hub):
    spec = httpx.get(f"{hub.platform_url}/openapi.json", timeout=30).raise_for_status().json()
    prefix = api_prefix(hub)
    served = {(method.upper(), path.removeprefix(prefix))
              for path, operations in spec["paths"].items() for method in operations}
    tabled = {(row.values[0], row.values[1]) for row in MATRIX}
    assert served - tabled == set(), "routes without a row in MATRIX: add one saying who may call them"
    assert tabled - served == set(), "rows of MATRIX for routes the platform no longer serves"


@pytest.mark.parametrize("method, path, body", [
    pytest.param("POST", P + "/jobs", {}, id="job without a notebook"),
    pytest.param("POST", P + "/schedules", {"cron": 5}, id="schedule of the wrong types"),
    pytest.param("PATCH", P + "/endpoints/{name}", {"replicas": -1}, id="endpoint patch out of range"),
    pytest.param("POST", P + "/endpoints/{name}/feedback", {"not": "a list"}, id="feedback not a list"),
])
def test_membership_is_checked_before_the_body_is_validated(hub, tokens, method, path, body):
    """A non-member learns nothing of a project's routes, not even the shape of their bodies."""
    assert call(hub, method, path, tokens["non_member"], body).status_code == 403
    assert call(hub, method, path, None, body).status_code == 401
    assert call(hub, method, path, tokens["member"], body).status_code == 422


def test_the_capture_route_takes_the_capture_token_only(hub, tokens):
    """``POST /internal/capture`` (replicas' captured requests; not in the OpenAPI) answers 401
    to every user token, the static admin token included, and 202 to an endpoint's capture token."""
    empty_batch = {"records": []}
    for role, token in {**tokens, "static admin": hub.admin_token}.items():
        response = call(hub, "POST", "/internal/capture", token, empty_batch)
        assert response.status_code == 401 and explained(response), (role, response.text)
    replica_token = capture_tokens(Settings(admin_token=hub.admin_token)).token("demo", "ep")
    accepted = call(hub, "POST", "/internal/capture", replica_token, empty_batch)
    assert accepted.status_code == 202 and accepted.json() == {"stored": 0}


def test_the_capture_route_refuses_a_caller_without_the_token_before_reading_the_body(hub):
    assert call(hub, "POST", "/internal/capture", None, {"not": "a batch"}).status_code == 401
