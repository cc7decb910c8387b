"""Hostile requests against the real platform: every one gets a JSON 4xx with a ``message``,
never a 500, a traceback, a file from outside the platform's data, or code run by the
platform process. The who-may-do-what matrix is tests/hub/test_authorization.py; here a row
is an attack, and the expected answer is what a careful service says to it.

Requests go out through ``http.client`` so that paths reach the server byte for byte
(httpx would resolve ``../`` before sending).
"""

from __future__ import annotations

import http.client
import json
import tomllib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.integration

P = "/projects/{project}"  # alice's own project
B = "/projects/{bob_project}"  # a project of bob's only
NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
PARAM_NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "p", "metadata": {"tags": ["parameters"]},
               "outputs": [], "source": "alpha = 1\nlabel = 'x'"}],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}
CODE = "__import__('os').system('touch /tmp/loopml-pwned')"
EVIL = "https://evil.example"


@dataclass(frozen=True)
class Hostile:
    method: str
    path: str  # under /api/v1, sent as written; {project} and {bob_project} filled in
    status: int
    body: object = None  # JSON-encoded unless ``raw`` is given
    raw: bytes | None = None
    headers: dict = field(default_factory=dict)
    token: str = "alice"  # alice, bob or none


def row(id: str, method: str, path: str, status: int, *, marks=(), **kw):
    return pytest.param(Hostile(method, path, status, **kw), id=id, marks=marks)


def traversal(kind: str, template: str, status: int, **statuses: int):
    """One row per spelling of "go up a directory" in the ``{x}`` place of ``template``;
    ``statuses`` overrides ``status`` for some spellings (a decoded ``/`` changes the route)."""
    spellings = {"dotdot": "../../etc/passwd", "enc": "..%2f..%2fetc%2fpasswd", "dot-enc": "%2e%2e%2f%2e%2e%2fetc",
                 "double-enc": "%252e%252e%252fetc", "backslash": "..\\..\\etc", "nul": "x%00y"}
    return [row(f"traversal-{kind}-{name}", "GET", template.format(x=value, project="{project}"),
                statuses.get(name.replace("-", "_"), status))
            for name, value in spellings.items()]


TABLE = [
    # path traversal in path segments: never a file, never a 500; 403 (not a member of such a
    # project) or 404 (no such route/job/model) or 422 (not a valid name) are all refusals
    *traversal("project", "/projects/{x}/jobs", 403, dotdot=404, enc=404, dot_enc=404),
    *traversal("job", P + "/jobs/{x}/output", 404),
    *traversal("model", P + "/models/{x}", 422),
    *traversal("endpoint", P + "/endpoints/{x}", 422, dotdot=404, enc=404, dot_enc=404),
    row("traversal-alias-enc", "DELETE", P + "/models/m/aliases/..%2f..%2fetc", 405),
    row("traversal-project-absolute", "GET", "/projects/%2Fetc%2Fpasswd", 404),
    row("traversal-project-file-url", "GET", "/projects/file:%2F%2F%2Fetc%2Fpasswd", 404),
    # path traversal in bodies
    row("body-project-dotdot", "POST", "/projects", 422, body={"name": "../../etc"}, token="admin"),
    row("body-project-absolute", "POST", "/projects", 422, body={"name": "/etc/passwd"}, token="admin"),
    row("body-project-nul", "POST", "/projects", 422, body={"name": "a\x00b"}, token="admin"),
    row("body-endpoint-dotdot", "POST", P + "/endpoints", 422, body={"name": "../x", "model": "m@champion"}),
    row("body-endpoint-backslash", "POST", P + "/endpoints", 422, body={"name": "..\\x", "model": "m@champion"}),
    row("body-endpoint-model-file-url", "POST", P + "/endpoints", 422,
        body={"name": "ep", "model": "file:///etc/passwd"}),
    row("body-alias-dotdot", "POST", P + "/models/m/aliases", 422, body={"alias": "../../x", "version": 1}),
    row("body-alias-absolute", "POST", P + "/models/m/aliases", 422, body={"alias": "/etc/passwd", "version": 1}),
    # SSRF: no request field takes a URL (serving/models.py's ``url`` is an answer); a model
    # reference that is a URL is refused as a name, never fetched
    row("ssrf-model-metadata-url", "POST", P + "/endpoints", 422,
        body={"name": "ep", "model": "http://169.254.169.254/latest/meta-data@champion"}),
    # code in parameters: refused by the parameters schema before anything runs
    row("params-code-as-key", "POST", P + "/jobs", 422, body={"notebook": PARAM_NOTEBOOK, "parameters": {CODE: 1}}),
    row("params-code-as-int-value", "POST", P + "/jobs", 422,
        body={"notebook": PARAM_NOTEBOOK, "parameters": {"alpha": CODE + "\n'\"\"\""}}),
    row("params-without-parameters-cell", "POST", P + "/jobs", 422,
        body={"notebook": NOTEBOOK, "parameters": {CODE: "x"}}),
    # bodies that are too big, too deep, or not JSON
    row("oversized-body", "POST", P + "/jobs", 413, raw=b'{"notebook": "' + b"x" * (41 * 2**20) + b'"}'),
    row("deeply-nested-json", "POST", P + "/jobs", 400, raw=b'{"notebook": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
    row("text-plain-body", "POST", P + "/jobs", 422, raw=json.dumps({"notebook": NOTEBOOK}).encode(),
        headers={"Content-Type": "text/plain"}),
    row("multipart-body", "POST", P + "/jobs", 422, raw=b"--b\r\nContent-Disposition: form-data; name=\"notebook\""
        b"\r\n\r\n{}\r\n--b--\r\n", headers={"Content-Type": "multipart/form-data; boundary=b"}),
    row("not-json-at-all", "POST", P + "/jobs", 422, raw=b"{'notebook': None,"),
    # values of the wrong JSON type are refused, not coerced (false is not 0, "2" is not 2)
    row("type-bool-as-int", "POST", P + "/jobs", 422, body={"notebook": NOTEBOOK, "max_retries": False}),
    row("type-string-as-int", "POST", P + "/jobs", 422, body={"notebook": NOTEBOOK, "max_retries": "2"}),
    row("type-bool-as-number", "POST", P + "/jobs", 422, body={"notebook": NOTEBOOK, "resources": {"cpus": True}}),
    row("type-string-as-bool", "POST", P + "/endpoints", 422, body={"name": "ep", "model": "m@champion",
                                                                    "public": "yes"}),
    row("type-int-as-bool", "PATCH", "/projects/{project}", 422, body={"clear_quota": 0}, token="admin"),
    # bounded work: schedules no more often than schedule_min_interval_s, lists paged
    row("schedule-every-second", "POST", P + "/schedules", 422,
        body={"cron": "* * * * * *", "template": {"notebook": PARAM_NOTEBOOK}}),
    row("list-limit-over-max", "GET", P + "/jobs?limit=100000", 422),
    row("list-offset-negative", "GET", P + "/schedules?offset=-1", 422),
    row("list-limit-zero", "GET", P + "/models?limit=0", 422),
    row("list-limit-not-a-number", "GET", "/projects?limit=all", 422),
    # cross-project: alice on bob's project, each kind of resource
    row("cross-project-get", "GET", B, 403),
    row("cross-project-jobs", "GET", B + "/jobs", 403),
    row("cross-project-submit", "POST", B + "/jobs", 403, body={"notebook": NOTEBOOK}),
    row("cross-project-job-output", "GET", B + "/jobs/nonexistent/output", 403),
    row("cross-project-schedules", "GET", B + "/schedules", 403),
    row("cross-project-models", "GET", B + "/models", 403),
    row("cross-project-alias", "POST", B + "/models/m/aliases", 403, body={"alias": "champion", "version": 1}),
    row("cross-project-endpoints", "GET", B + "/endpoints", 403),
    row("cross-project-deploy", "POST", B + "/endpoints", 403, body={"name": "ep", "model": "m@champion"}),
    # tokens
    row("no-token", "GET", P + "/jobs", 401, token="none"),
    row("forged-token", "GET", P + "/jobs", 401, headers={"Authorization": "Bearer ../../etc/passwd"}, token="none"),
    # a token no one issued, in bytes that are not ASCII (sent as latin-1, or UTF-8): 401, not 500
    row("token-latin-1", "GET", P + "/jobs", 401, headers={"Authorization": "Bearer é"}, token="none"),
    row("token-utf-8", "GET", P + "/jobs", 401, headers={"Authorization": "Bearer é".encode()}, token="none"),
    row("token-scheme-latin-1", "GET", P + "/jobs", 401, headers={"Authorization": "Bearé x"}, token="none"),
    row("capture-token-latin-1", "POST", "/internal/capture", 401, body={"records": []},
        headers={"Authorization": "Bearer é"}, token="none"),
    row("capture-token-utf-8", "POST", "/internal/capture", 401, body={"records": []},
        headers={"Authorization": "Bearer demo.ep.é".encode()}, token="none"),
    row("capture-user-token", "POST", "/internal/capture", 401, body={"records": []}),
    row("capture-forged-endpoint-token", "POST", "/internal/capture", 401, body={"records": []},
        headers={"Authorization": "Bearer demo.ep." + "0" * 64}, token="none"),
]


def send(url: str, method: str, path: str, *, body: bytes | None = None, headers: dict | None = None):
    """``(status, headers, body bytes)`` of one request with ``path`` sent exactly as given."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest(method, parts.path.rstrip("/") + path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders()
        if body:
            try:
                conn.send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before the body was read: the answer is still there
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


def config_value(platform, key: str) -> int:
    """A port from the config.toml that the session fixture wrote."""
    with open(platform.home / "config.toml", "rb") as file:
        return tomllib.load(file)[key]


def hit(platform, case: Hostile, project: str, bob_project: str):
    token = {"alice": platform.alice_token, "bob": platform.bob_token, "admin": platform.admin_token}.get(case.token)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}),
               **case.headers}
    body = case.raw if case.raw is not None else (None if case.body is None else json.dumps(case.body).encode())
    path = "/api/v1" + case.path.replace("{project}", project).replace("{bob_project}", bob_project)
    return send(platform.url, case.method, path, body=body, headers=headers)


def assert_refused(case: Hostile, status: int, headers: dict, body: bytes):
    text = body.decode(errors="replace")
    assert status == case.status, f"{case.method} {case.path}: {status} {text[:300]}"
    assert "Traceback" not in text and 'File "' not in text and "root:" not in text
    assert json.loads(body)["message"]
    assert headers.get("access-control-allow-origin") not in ("*", EVIL)


@pytest.mark.parametrize("case", TABLE)
def test_hostile_request_is_refused_with_a_json_4xx(platform, project, bob_project, case):
    assert_refused(case, *hit(platform, case, project, bob_project))


def test_platform_grants_no_cross_origin_access(platform, project):
    """The API is token-based and sends no CORS headers: a page on evil.example may send the
    request but its script never reads the answer, and a preflight is not granted."""
    auth = {"Authorization": f"Bearer {platform.alice_token}", "Origin": EVIL}
    status, headers, _ = send(platform.url, "GET", f"/api/v1/projects/{project}/jobs", headers=auth)
    assert status == 200 and "access-control-allow-origin" not in {k.lower() for k in headers}
    preflight = {"Origin": EVIL, "Access-Control-Request-Method": "DELETE"}
    status, headers, _ = send(platform.url, "OPTIONS", f"/api/v1/projects/{project}", headers=preflight)
    assert status >= 400 and "access-control-allow-origin" not in {k.lower() for k in headers}


@pytest.mark.parametrize("extra", [{"Origin": EVIL}, {"Host": "evil.example"}], ids=["foreign-origin", "dns-rebinding"])
def test_mlflow_refuses_foreign_origin_and_host(platform, extra):
    url = f"http://127.0.0.1:{config_value(platform, 'mlflow_port')}"
    headers = {"Content-Type": "application/json", **extra}
    status, _, _ = send(url, "POST", "/api/2.0/mlflow/experiments/search", body=b'{"max_results": 1}',
                        headers=headers)
    assert status == 403


@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["no-key", "wrong-key"])
def test_scoring_without_the_endpoint_key_is_never_answered(platform, project, key):
    """No endpoint is deployed (that is slow): Serve's ingress answers a made-up endpoint's
    scoring route, with no key or a wrong one, 404 and nothing else."""
    port = config_value(platform, "serve_port")
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    status, _, _ = send(f"http://127.0.0.1:{port}", "POST", f"/{project}/nonexistent/invocations",
                        body=b'{"inputs": [[1]]}', headers=headers)
    assert status == 404


def test_platform_survives_the_table_without_a_traceback(platform, project, bob_project):
    logs = sorted((platform.home / "logs").glob("*"))
    before = {path: path.read_text(errors="replace").count("Traceback") for path in logs}
    for param in TABLE:
        (case,) = param.values
        status, _, _ = hit(platform, case, project, bob_project)
        assert status < 500, param.id
    status, _, body = send(platform.url, "GET", "/api/v1/health")
    assert status == 200, body
    after = {path: path.read_text(errors="replace").count("Traceback") for path in logs}
    assert after == before
