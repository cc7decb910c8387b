"""``GET /status`` answers any authenticated caller: no password or token of a backing
service's URL may be in it."""

from __future__ import annotations

import time
import types
import warnings

import pytest

from loopml.auth import StaticTokenAuthenticator
from loopml.server.app import _without_credentials, create_app
from loopml.settings import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRET = "s3cret-pw"
MLFLOW = f"http://platform:{SECRET}@mlflow.example:5000/?token={SECRET}"


class FakeBackend:
    def status(self) -> dict:
        return {"ok": False, "address": f"ray://u:{SECRET}@head:10001", "error": f"cannot reach ray://u:{SECRET}@head"}


@pytest.fixture
def client(tmp_path):
    settings = load_settings(data_dir=tmp_path, admin_token="admin-token", mlflow_uri=MLFLOW,
                             tokens={"alice-token": {"name": "alice"}})
    app = create_app(settings)
    app.state.services.authenticator = StaticTokenAuthenticator(settings)  # no lifespan: fakes stand in below
    app.state.services.settings = settings
    app.state.services.backend = FakeBackend()
    app.state.services.tracking = types.SimpleNamespace(ping=lambda: True, tracking_uri=MLFLOW)
    app.state.services.db = types.SimpleNamespace(engine=types.SimpleNamespace(dialect=types.SimpleNamespace(name="sqlite")))
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("token", ["alice-token", "admin-token"], ids=["member", "admin"])
def test_status_holds_no_credential_of_mlflow_or_ray(client, token):
    answer = client.get("/api/v1/status", headers={"Authorization": f"Bearer {token}"})

    assert answer.status_code == 200, answer.text
    assert SECRET not in answer.text
    assert answer.json()["mlflow"]["uri"] == "http://mlflow.example:5000/"
    assert answer.json()["ray"]["address"] == "ray://head:10001"


@pytest.mark.parametrize(
    "text, shown",
    [("http://u:p@h:5/x?token=1#f", "http://h:5/x"), ("http://127.0.0.1:5050", "http://127.0.0.1:5050"),
     ("failed: http://x:y@h/ down", "failed: http://h/ down"), ("postgresql+psycopg://u:pw@db/m", "postgresql+psycopg://db/m"),
     ("http://h/a@b", "http://h/a@b"), ("no url here", "no url here")],
    ids=["userinfo-query-fragment", "plain", "in-a-sentence", "database-url", "at-in-path", "no-url"],
)
def test_credentials_are_cut_from_urls(text, shown):
    assert _without_credentials(text) == shown


def test_cutting_is_linear_on_hostile_text():
    started = time.perf_counter()
    _without_credentials("://" * 100_000 + "http://" + "a" * 200_000)
    assert time.perf_counter() - started < 1.0
