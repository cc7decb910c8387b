"""The loop's state tracker: where each fact lives, and how a project's stages are composed.

Projects and captured requests are read from a real SQLite platform DB and registered versions
from a real MLflow store (SQLite, no server); the jobs, endpoints and alerts the tracker reads
are fakes with the services' own answers (their models), set on the services container as the
app's lifespan sets the real ones.
"""

from __future__ import annotations

import datetime as dt
import warnings
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from loopml.auth import StaticTokenAuthenticator
from loopml.db import Database, migrate
from loopml.errors import NotFound, Unavailable
from loopml.executor.models import Job
from loopml.loop_state import LoopObject, LoopStageName, LoopState
from loopml.monitor.ingest import CaptureService
from loopml.monitor.models import Alert
from loopml.monitor.orm import PredictionRow
from loopml.monitor.service import MonitorService
from loopml.projects import ProjectCreate, ProjectService
from loopml.registry.models import RegisteredVersion
from loopml.registry.service import RegistryService
from loopml.registry.tags import JOB_ID
from loopml.server.app import create_app
from loopml.serving.models import Endpoint
from loopml.settings import load_settings
from tests.unit.payloads import job_json

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

T0 = dt.datetime(2025, 1, 1, 10, 0, tzinfo=dt.timezone.utc)
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def job(job_id: str, status: str, created: int, finished: int | None = None) -> Job:
    return Job.model_validate(job_json(job_id, status, created_at=at(created).isoformat(),
                                       finished_at=at(finished).isoformat() if finished is not None else None))


def endpoint(name: str, status: str = "RUNNING", created: int = 0, **change) -> Endpoint:
    return Endpoint(project="demo", name=name, model="demo.iris", version=2, url=f"http://serve/demo/{name}",
                    public=False, replicas=1, status=status, created_at=at(created), updated_at=at(created),
                    history=[], **change)


def alert(alert_id: str, opened: int) -> Alert:
    return Alert(id=alert_id, project="demo", endpoint="iris-api", kind="drift", version=2, window="1h", value=0.4,
                 threshold=0.2, detail={}, status="open", action="requeue", opened_at=at(opened), closed_at=None,
                 job_id="j9", produced_version=None, evaluation=None)


class FakeJobs:
    """:meth:`JobService.list`: newest first, optionally one status."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs

    def list(self, project, status=None, limit=50, offset=0):
        found = [j for j in sorted(self.jobs, key=lambda j: j.created_at, reverse=True)
                 if status is None or j.status == status]
        return found[offset:offset + limit]


class FakeRegistry:
    def __init__(self, newest: RegisteredVersion | None = None, down: bool = False) -> None:
        self.newest, self.down = newest, down

    def newest_version(self, project):
        if self.down:
            raise Unavailable("the MLflow server at http://mlflow:5000 did not answer (ConnectError)",
                              component="mlflow")
        return self.newest


class FakeEndpoints:
    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = endpoints

    def list(self, project):
        return [e for e in self.endpoints if e.project == project]


class FakePolicies:
    def __init__(self, alerts: list[Alert]) -> None:
        self.found = alerts

    def alerts(self, project, endpoint=None, status=None, job_id=None):
        return sorted(self.found, key=lambda a: a.opened_at, reverse=True)


class FakeMonitor:
    def __init__(self, capture=None, feedback=None) -> None:
        self.capture, self.feedback = capture, feedback

    def last_capture(self, project):
        return self.capture

    def last_feedback(self, project):
        return self.feedback


@pytest.fixture
def app(tmp_path):
    settings = load_settings(data_dir=tmp_path, admin_token="admin-token",
                             tokens={"alice-token": {"name": "alice"}, "bob-token": {"name": "bob"}})
    app = create_app(settings)  # no lifespan: the services the tracker reads are set here
    state = app.state.services
    state.authenticator = StaticTokenAuthenticator(settings)
    db = Database(settings.database_url)
    migrate(db.engine)
    state.db, state.projects = db, ProjectService(db)
    state.projects.create(ProjectCreate(name="demo", members=["alice"]))
    state.projects.create(ProjectCreate(name="other", members=["bob"]))
    state.jobs, state.registry, state.endpoints = FakeJobs([]), FakeRegistry(), FakeEndpoints([])
    state.policies, state.monitor = FakePolicies([]), FakeMonitor()
    return app


@pytest.fixture
def http(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def objects(state: LoopState) -> dict[str, tuple[str, str, dt.datetime | None] | None]:
    return {s.name.value: (s.object.kind, s.object.id, s.at) if s.object else None for s in state.stages}


# -- composition ------------------------------------------------------------------------------


def test_a_new_project_has_reached_no_stage(app):
    state = app.state.services.loop.of("demo")
    assert [s.name for s in state.stages] == list(LoopStageName)
    assert not any(s.reached for s in state.stages) and state.furthest is None
    assert all(s.object is None and s.at is None and s.note is None for s in state.stages)


def test_each_stage_shows_the_newest_object_that_reached_it(app):
    state = app.state.services
    state.projects.workspace_opened("demo", "alice")
    state.jobs = FakeJobs([job("j1", "SUCCEEDED", 0, 5), job("j2", "FAILED", 10, 12), job("j3", "RUNNING", 20)])
    state.registry = FakeRegistry(RegisteredVersion(name="iris", version=2, created_at=at(6), job_id="j1"))
    state.endpoints = FakeEndpoints([endpoint("old", created=7), endpoint("iris-api", created=8, canary_version=3,
                                                                          canary_percent=10.0),
                                     endpoint("broken", status="FAILED", created=9)])
    state.policies = FakePolicies([alert("a1", 15), alert("a2", 25)])
    state.monitor = FakeMonitor(capture=("iris-api", at(30)), feedback=("iris-api", at(31)))

    loop = state.loop.of("demo")
    workspace_at = loop.stage("workspace_opened").at
    assert workspace_at is not None and workspace_at > T0
    assert objects(loop) == {
        "workspace_opened": ("workspace", "alice", workspace_at),
        "code_submitted": ("job", "j3", at(20)),  # the newest job, whatever its state
        "trained": ("job", "j1", at(5)),  # the newest that succeeded, when it finished
        "versioned": ("model_version", "iris/2", at(6)),
        "live": ("endpoint", "iris-api", at(8)),  # the newest that runs: not the FAILED one
        "monitored": ("alert", "a2", at(25)),
        "feedback_received": ("endpoint", "iris-api", at(31)),
    }
    assert loop.furthest is LoopStageName.FEEDBACK_RECEIVED
    assert str(loop.stage("code_submitted").object) == "job j3 (train.ipynb, RUNNING)"
    assert str(loop.stage("versioned").object) == "model version iris/2 (by job j1)"
    assert str(loop.stage("live").object) == "endpoint iris-api (serving iris v2, canary v3)"
    assert str(loop.stage("monitored").object) == "alert a2 (drift on iris-api v2, open)"
    assert str(loop.stage("workspace_opened").object) == "workspace alice"


def test_monitored_without_an_alert_is_the_endpoint_whose_requests_are_captured(app):
    state = app.state.services
    state.monitor = FakeMonitor(capture=("iris-api", at(3)))
    stage = state.loop.of("demo").stage(LoopStageName.MONITORED)
    assert stage.reached and stage.object == LoopObject(kind="endpoint", id="iris-api",
                                                        detail="requests captured, no alert yet")
    assert stage.at == at(3)


def test_a_stage_mlflow_cannot_tell_says_why_and_the_others_still_show(app):
    state = app.state.services
    state.jobs = FakeJobs([job("j1", "SUCCEEDED", 0, 5)])
    state.registry = FakeRegistry(down=True)
    loop = state.loop.of("demo")
    versioned = loop.stage("versioned")
    assert not versioned.reached and versioned.object is None
    assert versioned.note.startswith("cannot be told now: the MLflow server at http://mlflow:5000 did not answer")
    assert loop.stage("trained").reached and loop.furthest is LoopStageName.TRAINED


def test_the_furthest_stage_is_the_last_reached_in_the_loops_order(app):
    state = app.state.services
    state.monitor = FakeMonitor(feedback=("iris-api", at(1)))  # headless: no workspace, yet feedback came
    assert app.state.services.loop.of("demo").furthest is LoopStageName.FEEDBACK_RECEIVED


def test_a_loop_state_round_trips_as_json_with_its_furthest_stage():
    state = LoopState(project="demo", stages=[
        {"name": "workspace_opened", "reached": True, "object": {"kind": "workspace", "id": "alice"}, "at": T0},
        {"name": "code_submitted", "reached": False}])
    data = state.model_dump(mode="json")
    assert data["furthest"] == "workspace_opened"
    assert LoopState.model_validate(data) == state
    with pytest.raises(KeyError, match="trained"):
        state.stage("trained")


# -- the routes -------------------------------------------------------------------------------


def test_members_read_the_loop_and_others_are_refused(http):
    answer = http.get("/api/v1/projects/demo/loop", headers=ALICE)
    assert answer.status_code == 200, answer.text
    assert [s["name"] for s in answer.json()["stages"]] == [s.value for s in LoopStageName]
    assert http.get("/api/v1/projects/demo/loop", headers=BOB).status_code == 403
    assert http.get("/api/v1/projects/demo/loop").status_code == 401
    assert http.get("/api/v1/projects/nope/loop", headers={"Authorization": "Bearer admin-token"}).status_code == 404


def test_a_workspace_that_reports_its_start_is_the_workspace_stage(http):
    opened = http.post("/api/v1/projects/demo/workspaces", headers=ALICE)
    assert opened.status_code == 200, opened.text
    assert (opened.json()["project"], opened.json()["user"]) == ("demo", "alice")
    stage = http.get("/api/v1/projects/demo/loop", headers=ALICE).json()["stages"][0]
    assert stage["reached"] and stage["object"]["id"] == "alice" and stage["at"] == opened.json()["opened_at"]
    assert http.post("/api/v1/projects/demo/workspaces", headers=BOB).status_code == 403


# -- where each fact lives ---------------------------------------------------------------------


def test_a_workspace_start_is_kept_per_member_newest_first(app):
    projects: ProjectService = app.state.services.projects
    assert projects.last_workspace("demo") is None
    first = projects.workspace_opened("demo", "alice")
    bob = projects.workspace_opened("demo", "bob")
    assert projects.last_workspace("demo") == bob and projects.last_workspace("other") is None
    again = projects.workspace_opened("demo", "alice")  # the same workspace started again: one row, the newest time
    assert again.opened_at >= first.opened_at and projects.last_workspace("demo") == again
    with pytest.raises(NotFound):
        projects.workspace_opened("nope", "alice")


def test_the_newest_capture_and_feedback_of_the_projects_endpoints(app):
    state = app.state.services
    endpoints = FakeEndpoints([endpoint("a"), endpoint("b")])
    monitor = MonitorService(state.db, state.settings, endpoints, None, CaptureService(state.db, None),
                             references=lambda model, version: None)
    assert monitor.last_capture("demo") is None and monitor.last_feedback("demo") is None
    rows = [("a", "r1", at(1), None), ("b", "r2", at(2), at(5)), ("a", "r3", at(3), at(4)),
            ("gone", "r4", at(9), at(9))]  # an endpoint deleted since: not the project's any more
    with state.db.session() as session:
        session.add_all(PredictionRow(project="demo", endpoint=name, request_id=rid, version=1, at=when, status=200,
                                      latency_ms=1.0, features=None, prediction=[0], label=0 if labelled else None,
                                      labelled_at=labelled)
                        for name, rid, when, labelled in rows)
    assert monitor.last_capture("demo") == ("a", at(3))
    assert monitor.last_feedback("demo") == ("b", at(5))
    assert monitor.last_capture("other") is None


def test_the_newest_registered_version_of_the_project_only(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow = MlflowClient(tracking_uri=uri, registry_uri=uri)
    registry = RegistryService(uri)
    # "_" is LIKE's one-character wildcard: project a_b must not see a model of project axb
    assert registry.newest_version("a_b") is None
    for name in ("a_b.iris", "a_b.wine", "axb.other"):
        mlflow.create_registered_model(name)
    mlflow.create_model_version("a_b.iris", source=str(tmp_path), tags={JOB_ID: "j1"})
    newest = mlflow.create_model_version("a_b.wine", source=str(tmp_path))
    mlflow.create_model_version("axb.other", source=str(tmp_path))
    found = registry.newest_version("a_b")
    assert (found.name, found.version, found.job_id) == ("wine", 1, None)
    assert found.created_at == dt.datetime.fromtimestamp(newest.creation_timestamp / 1000, dt.timezone.utc)
    mlflow.create_model_version("a_b.iris", source=str(tmp_path), tags={JOB_ID: "j2"})
    assert registry.newest_version("a_b").model_dump(exclude={"created_at"}) == {"name": "iris", "version": 2,
                                                                                 "job_id": "j2"}


def test_the_workspace_server_reports_its_start_and_starts_anyway_when_it_cannot(monkeypatch):
    from loopml.jupyter_ext import extension

    told: list[str] = []

    class Client:
        def __init__(self, timeout):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def workspace_opened(self, project):
            if project == "down":
                raise Unavailable("cannot reach the platform at http://hub/services/loopml: is it running?")
            told.append(project)

    monkeypatch.setattr("loopml.client.Client", Client)
    assert extension.report_workspace_opened("demo") is True and told == ["demo"]
    assert extension.report_workspace_opened("down") is False


def test_the_extension_reports_only_a_workspace_of_a_project(monkeypatch):
    from loopml.jupyter_ext import extension

    reported: list[str] = []
    monkeypatch.setattr(extension, "report_workspace_opened", lambda project: reported.append(project) or True)
    app = extension.LoopmlExtension(autoload_magics=False, mlflow_from_platform=False)
    app.serverapp = SimpleNamespace(root_dir="/tmp")
    monkeypatch.delenv("LOOPML_PROJECT", raising=False)
    monkeypatch.setenv("LOOPML_URL", "http://hub/services/loopml")
    app.initialize_settings()
    assert reported == []
    monkeypatch.setenv("LOOPML_PROJECT", "demo")
    app.initialize_settings()
    assert reported == ["demo"]
    app.report_workspace_opened = False
    app.initialize_settings()
    assert reported == ["demo"]
