"""Capture ingestion: only an endpoint's own capture token posts its records; a batch sent twice is stored once."""

from __future__ import annotations

import datetime as dt
import hmac

import pytest
from sqlalchemy import func, select

from loopml.capture_wire import CaptureBatch
from loopml.db import Database, migrate
from loopml.errors import Forbidden, InvalidInput, Unauthorized
from loopml.monitor.ingest import CaptureService, capture_tokens
from loopml.monitor.orm import PredictionRow
from loopml.projects import ProjectCreate, ProjectService
from loopml.registry.service import RegistryService
from loopml.settings import load_settings


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.delenv("LOOPML_HOME", raising=False)
    return load_settings(data_dir=tmp_path, admin_token="admin-secret")


@pytest.fixture
def service(settings):
    db = Database(settings.database_url)
    migrate(db.engine)
    ProjectService(db).create(ProjectCreate(name="demo", members=["alice"]))
    yield CaptureService(db, capture_tokens(settings))
    db.engine.dispose()


def batch(*ids: str, dropped: int = 0, endpoint: str = "ep", project: str = "demo") -> CaptureBatch:
    now = dt.datetime.now(dt.timezone.utc)
    return CaptureBatch(dropped=dropped, records=[
        {"project": project, "endpoint": endpoint, "request_id": i, "version": 1, "at": now, "status": 200,
         "latency_ms": 1.5, "features": {"columns": ["x"], "data": [[1.0]]}, "prediction": [0]} for i in ids])


def stored(service) -> int:
    with service.db.session() as session:
        return session.scalar(select(func.count()).select_from(PredictionRow))


def test_each_endpoint_has_its_own_token_derived_from_the_admin_token_and_hiding_it(settings):
    tokens = capture_tokens(settings)
    token = tokens.token("demo", "ep")
    assert token == capture_tokens(settings).token("demo", "ep") and "admin-secret" not in token
    assert token.startswith("demo.ep.") and len(token.rsplit(".", 1)[1]) == 64
    assert len({token, tokens.token("demo", "other"), tokens.token("other", "ep")}) == 3
    assert tokens.endpoint_of(token) == ("demo", "ep")
    other = capture_tokens(settings.model_copy(update={"admin_token": "another-instance"}))
    assert other.token("demo", "ep") != token
    assert capture_tokens(settings.model_copy(update={"admin_token": None})) is None


def forged(service) -> dict[str, str]:
    """Tokens nobody issued, a few of them close to issued ones."""
    token = service.tokens.token("demo", "ep")
    mac = token.rsplit(".", 1)[1]
    return {"none": None, "empty": "", "admin": "admin-secret", "wrong": "wrong", "non-ascii": "demo.ep.é" + mac[1:],
            "retired all-endpoints token": hmac.new(b"admin-secret", b"loopml-capture", "sha256").hexdigest(),
            "other endpoint's mac": f"demo.other.{mac}", "other project's mac": f"other.ep.{mac}",
            "extra part": f"demo.ep.x.{mac}", "truncated mac": token[:-1], "no names": f"..{mac}"}


def test_anything_but_an_issued_capture_token_is_refused(service):
    for label, given in forged(service).items():
        with pytest.raises(Unauthorized):
            service.check(given)
            pytest.fail(f"accepted {label}")


def test_without_an_admin_token_capture_is_off(service):
    service.tokens = None
    with pytest.raises(Unauthorized, match="capture is off"):
        service.check("demo.ep.x")


def test_a_batch_sent_twice_is_stored_once_and_drops_are_counted(service):
    assert service.check(service.tokens.token("demo", "ep")) == ("demo", "ep")
    assert service.store(batch("a", "b", dropped=3), "demo", "ep") == 2
    assert service.store(batch("a", "b", "c"), "demo", "ep") == 1
    assert service.store(batch(dropped=2), "demo", "ep") == 0
    assert stored(service) == 3 and service.dropped[("demo", "ep")] == 5


@pytest.mark.parametrize(("project", "endpoint"), [("demo", "other"), ("other", "ep"), ("other", "other")])
def test_a_record_of_another_endpoint_than_the_tokens_stores_nothing_of_the_batch(service, project, endpoint):
    mixed = CaptureBatch(records=[*batch("mine").records, *batch("theirs", project=project, endpoint=endpoint).records],
                         dropped=4)
    with pytest.raises(Forbidden, match=f"cannot post records of {project}/{endpoint}"):
        service.store(mixed, "demo", "ep")
    assert stored(service) == 0 and not service.dropped


def test_a_record_with_a_bad_endpoint_name_stores_nothing(service):
    with pytest.raises(InvalidInput):
        service.store(batch("a", endpoint="../x"), "demo", "ep")
    assert stored(service) == 0


def test_each_endpoints_replicas_are_given_that_endpoints_token_the_route_accepts(settings, service):
    from loopml.serving.orm import EndpointRow
    from loopml.serving.service import EndpointService

    endpoints = EndpointService(settings, service.db, RegistryService("http://127.0.0.1:1"), capture_tokens=service.tokens)
    given = {}
    for project, name in [("demo", "ep"), ("demo", "other"), ("shop", "ep")]:
        row = EndpointRow(project=project, name=name, model=f"{project}.m", version=1, public=False, key_hash="h")
        given[(project, name)] = endpoints._config(row)["capture"]["token"]
    assert len(set(given.values())) == 3
    assert all(service.check(token) == endpoint for endpoint, token in given.items())
    off = EndpointService(settings, service.db, RegistryService("http://127.0.0.1:1"), capture_tokens=None)
    public = EndpointRow(project="demo", name="ep", model="demo.m", version=1, public=True)
    assert off._config(public)["capture"] is None


def test_platform_start_hands_running_endpoints_their_current_config_too(settings, service, monkeypatch):
    """Replicas that outlived the platform (Ray kept running) get their endpoint's own
    capture token at start: every endpoint is run again (a no-op for Serve when unchanged)."""
    from types import SimpleNamespace

    from ray import serve

    from loopml.serving.orm import EndpointRow
    from loopml.serving.service import EndpointService

    with service.db.session() as session:
        for name in ("running", "lost"):
            session.add(EndpointRow(project="demo", name=name, model="demo.m", version=1, public=True, history=[]))
    monkeypatch.setattr(serve, "start", lambda **kwargs: None)
    monkeypatch.setattr(serve, "status", lambda: SimpleNamespace(applications={"demo.running": None, "gone.ep": None}))
    deleted = []
    monkeypatch.setattr(serve, "delete", lambda name, _blocking=True: deleted.append(name))
    endpoints = EndpointService(settings, service.db, RegistryService("http://127.0.0.1:1"), capture_tokens=service.tokens)
    ran, at_once = [], []
    monkeypatch.setattr(endpoints, "_run",
                        lambda row: ran.append((row.name, endpoints._config(row)["capture"]["token"])))
    monkeypatch.setattr(serve, "run_many", lambda targets, **kwargs: at_once.append(
        ([(t.name, t.target._bound_deployment.user_config["capture"]["token"]) for t in targets], kwargs)))
    monkeypatch.setattr(endpoints, "_publish_limits", lambda: None)
    endpoints.start()
    # the lost one is deployed again and waited for; the running one reconfigured without waiting
    assert ran == [("lost", service.tokens.token("demo", "lost"))]
    assert at_once == [([("demo.running", service.tokens.token("demo", "running"))],
                        {"wait_for_ingress_deployment_creation": False, "wait_for_applications_running": False})]
    assert deleted == ["gone.ep"]
