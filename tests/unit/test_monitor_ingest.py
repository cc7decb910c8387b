"""Capture ingestion: only the capture token is accepted; a batch sent twice is stored once."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from loopml.db import Database, migrate
from loopml.errors import InvalidInput, Unauthorized
from loopml.monitor.ingest import CaptureService, capture_token
from loopml.monitor.models import CaptureBatch
from loopml.monitor.orm import PredictionRow
from loopml.projects import ProjectCreate, ProjectService
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
    yield CaptureService(db, capture_token(settings))
    db.engine.dispose()


def batch(*ids: str, dropped: int = 0, endpoint: str = "ep") -> CaptureBatch:
    now = dt.datetime.now(dt.timezone.utc)
    return CaptureBatch(dropped=dropped, records=[
        {"project": "demo", "endpoint": endpoint, "request_id": i, "version": 1, "at": now, "status": 200,
         "latency_ms": 1.5, "features": {"columns": ["x"], "data": [[1.0]]}, "prediction": [0]} for i in ids])


def stored(service) -> int:
    with service.db.session() as session:
        return session.scalar(select(func.count()).select_from(PredictionRow))


def test_the_capture_token_is_derived_from_the_admin_token_and_hides_it(settings):
    token = capture_token(settings)
    assert token == capture_token(settings) and "admin-secret" not in token and len(token) == 64
    assert capture_token(settings.model_copy(update={"admin_token": None})) is None


@pytest.mark.parametrize("given", [None, "", "admin-secret", "wrong"], ids=["none", "empty", "admin", "wrong"])
def test_anything_but_the_capture_token_is_refused(service, given):
    with pytest.raises(Unauthorized):
        service.check(given)


def test_a_batch_sent_twice_is_stored_once_and_drops_are_counted(service):
    service.check(service.token)
    assert service.store(batch("a", "b", dropped=3)) == 2
    assert service.store(batch("a", "b", "c")) == 1
    assert stored(service) == 3 and service.dropped[("demo", "ep")] == 3


def test_a_record_with_a_bad_endpoint_name_stores_nothing(service):
    with pytest.raises(InvalidInput):
        service.store(batch("a", endpoint="../x"))
    assert stored(service) == 0
