"""``job_isolation``: `loopml up` refuses a machine that cannot sandbox, /status shows the mode."""

from __future__ import annotations

import types
import warnings

import pytest

from loopml import launcher, sandbox
from loopml.auth import StaticTokenAuthenticator
from loopml.errors import Unavailable
from loopml.server.app import create_app
from loopml.settings import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NO_BWRAP = "bubblewrap is not installed (Debian package 'bubblewrap': `make up` installs it)"


class Started(Exception):
    """Raised where `up` would create the data dir: it got past the sandbox check."""


@pytest.fixture
def no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "check", lambda: NO_BWRAP)

    def started(path):
        raise Started(path)

    monkeypatch.setattr(launcher, "make_private_dir", started)


def test_up_refuses_with_one_line_when_the_machine_cannot_sandbox(no_sandbox, tmp_path) -> None:
    with pytest.raises(Unavailable) as refused:
        launcher.up(load_settings(data_dir=tmp_path / "home"))

    assert refused.value.message == NO_BWRAP and "\n" not in refused.value.message


def test_up_starts_unsandboxed_only_when_told_to(no_sandbox, tmp_path) -> None:
    with pytest.raises(Started):
        launcher.up(load_settings(data_dir=tmp_path / "home", job_isolation="off"))


@pytest.mark.parametrize("mode", ["bwrap", "off"])
def test_status_shows_the_isolation_mode(tmp_path, mode: str) -> None:
    settings = load_settings(data_dir=tmp_path, admin_token="admin-token", job_isolation=mode,
                             tokens={"alice-token": {"name": "alice"}})
    app = create_app(settings)
    app.state.services.authenticator = StaticTokenAuthenticator(settings)  # no lifespan: fakes stand in below
    app.state.services.settings = settings
    app.state.services.backend = types.SimpleNamespace(status=lambda: {"ok": True})
    app.state.services.tracking = types.SimpleNamespace(ping=lambda: True, tracking_uri="http://127.0.0.1:5000")
    app.state.services.db = types.SimpleNamespace(engine=types.SimpleNamespace(dialect=types.SimpleNamespace(name="sqlite")))

    answer = TestClient(app).get("/api/v1/status", headers={"Authorization": "Bearer alice-token"})

    assert answer.status_code == 200, answer.text
    assert answer.json()["jobs"] == {"ok": True, "isolation": mode}


def test_an_unknown_mode_is_refused_naming_the_setting(tmp_path) -> None:
    with pytest.raises(Exception, match="job_isolation"):
        load_settings(data_dir=tmp_path, job_isolation="docker")
