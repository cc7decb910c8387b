"""The REST app's error table: every refusal is JSON with a message, never a traceback."""

from __future__ import annotations

import warnings

import pytest

from loopml.auth import StaticTokenAuthenticator
from loopml.monitor.ingest import CaptureService, capture_tokens
from loopml.server.app import create_app
from loopml.settings import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def client(tmp_path):
    settings = load_settings(data_dir=tmp_path, max_notebook_mb=0.05, admin_token="admin-token")
    app = create_app(settings)
    app.state.services.authenticator = StaticTokenAuthenticator(settings)  # no lifespan: no Ray, no DB needed here
    app.state.services.captures = CaptureService(None, capture_tokens(settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    "method, path, headers, body, status, reason, says",
    [
        ("GET", "/api/v1/nope", {}, None, 404, "http_404", "no such route"),
        ("DELETE", "/api/v1/health", {}, None, 405, "http_405", "not allowed"),
        ("GET", "/api/v1/projects", {}, None, 401, "unauthorized", "no API token"),
        ("GET", "/api/v1/projects", {"Authorization": "Bearer wrong"}, None, 401, "unauthorized", "not valid"),
        ("POST", "/api/v1/projects", {"Authorization": "Bearer admin-token"}, b"x" * 200_000, 413, "too_large",
         "over the"),
        ("POST", "/api/v1/projects", {"Authorization": "Bearer admin-token"}, b"{not json", 422, "invalid",
         "invalid request"),
        ("GET", "/api/v1/projects", {"Authorization": b"Bearer \xe9"}, None, 401, "unauthorized", "printable ASCII"),
        ("GET", "/api/v1/projects", {"Authorization": b"Bearer \xc3\xa9"}, None, 401, "unauthorized",
         "printable ASCII"),
        ("GET", "/api/v1/projects", {"Authorization": b"Bearer a\x7fb"}, None, 401, "unauthorized",
         "printable ASCII"),
        ("POST", "/api/v1/internal/capture", {"Authorization": b"Bearer \xe9"}, b"{}", 401, "unauthorized",
         "printable ASCII"),
        ("POST", "/api/v1/internal/capture", {"Authorization": b"Bearer demo.ep.\xc3\xa9"}, b"{}", 401,
         "unauthorized", "printable ASCII"),
        ("POST", "/api/v1/internal/capture", {"Authorization": "Bearer demo.ep.abc"}, b"{}", 401, "unauthorized",
         "capture token"),
    ],
    ids=["unknown-route", "wrong-method", "no-token", "bad-token", "body-too-large", "malformed-json",
         "latin-1-token", "utf-8-token", "control-char-token", "latin-1-capture-token", "utf-8-capture-token",
         "forged-capture-token"],
)
def test_refusals_are_json_with_a_message(client, method, path, headers, body, status, reason, says):
    answer = client.request(method, path, headers={"content-type": "application/json", **headers}, content=body)
    assert answer.status_code == status
    assert answer.json()["reason"] == reason and says in answer.json()["message"]


def test_health_needs_no_token(client):
    assert client.get("/api/v1/health").json() == {"status": "ok"}
