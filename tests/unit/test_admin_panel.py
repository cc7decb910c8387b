"""The admin panel without a hub: who may read it, what its pages show, its form helpers.

The app is the real one with a real project DB; the hub's side (who a token belongs to,
the browser session) is the static-token authenticator and real :class:`BrowserSessions`,
read by bearer token. The forms (session + XSRF) are covered by tests/hub/test_admin_panel.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import warnings

import pytest

from loopml.auth import StaticTokenAuthenticator, User
from loopml.db import Database, migrate
from loopml.errors import InvalidInput, Unavailable
from loopml.executor.backend import JobBackend
from loopml.executor.models import Job, JobStatus
from loopml.executor.pipelines.models import PipelineRun
from loopml.hub_config.admin.actions import check_user_name, parse_quota
from loopml.hub_config.admin.pages import templates
from loopml.hub_config.admin.recent_logs import RecentLogs, redact
from loopml.hub_config.admin.sections import job_filters, resource_text, traffic
from loopml.monitor.models import Alert
from loopml.projects import ProjectCreate, ProjectService
from loopml.server.app import create_app
from loopml.server.service_auth import BrowserSessions
from loopml.serving.models import Endpoint
from loopml.settings import load_settings
from tests.unit.payloads import job_json

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADMIN = {"Authorization": "Bearer admin-token"}
ALICE = {"Authorization": "Bearer alice-token"}


def _app(tmp_path, *, hub: bool):
    """As the hub runs it, under /services/loopml/; headless, at the root."""
    settings = load_settings(data_dir=tmp_path, base_url="/services/loopml/" if hub else "/",
                             admin_token="admin-token", tokens={"alice-token": {"name": "alice"}})
    app = create_app(settings)  # no lifespan: the state the panel reads is set here
    state = app.state.services
    state.settings = settings
    state.authenticator = StaticTokenAuthenticator(settings)
    state.sessions = BrowserSessions(settings, "test-secret") if hub else None
    db = Database(settings.database_url)
    migrate(db.engine)
    state.projects = ProjectService(db)
    state.projects.create(ProjectCreate(name="demo", members=["alice"], max_concurrent_jobs=2))
    state.projects.create(ProjectCreate(name="fraud"))
    return app


@pytest.fixture
def panel(tmp_path):
    return TestClient(_app(tmp_path, hub=True), raise_server_exceptions=False, follow_redirects=False)


@pytest.fixture
def headless(tmp_path):
    return TestClient(_app(tmp_path, hub=False), raise_server_exceptions=False, follow_redirects=False)


@pytest.mark.parametrize(
    "path, headers, status, says",
    [
        ("/services/loopml/admin", ADMIN, 200, 'id="projects"'),
        ("/services/loopml/admin", ALICE, 403, "for hub admins"),
        ("/services/loopml/admin", {"Authorization": "Bearer wrong"}, 401, "not valid"),
        ("/services/loopml/admin/nope", ADMIN, 404, "no section"),
        ("/services/loopml/admin/nope", {}, 302, ""),
    ],
    ids=["admin-reads", "member-refused", "bad-token", "unknown-section", "unknown-section-anonymous"],
)
def test_who_may_read_the_panel(panel, path, headers, status, says):
    response = panel.get(path, headers=headers)
    assert response.status_code == status, response.text
    assert says in response.text
    assert response.headers["cache-control"] == "no-store"


def test_anonymous_is_sent_to_login_and_back(panel):
    response = panel.get("/services/loopml/admin/jobs?status=FAILED")
    assert response.status_code == 302
    assert response.headers["location"] == ("/services/loopml/login?next="
                                            "%2Fservices%2Floopml%2Fadmin%2Fjobs%3Fstatus%3DFAILED")


def test_a_refused_member_gets_a_way_back_to_the_hub(panel):
    refused = panel.get("/services/loopml/admin", headers=ALICE)
    assert "admin" in refused.text and 'href="/hub/home"' in refused.text


def test_headless_platform_explains_that_the_panel_needs_the_hub(headless):
    response = headless.get("/admin", headers=ADMIN)
    assert response.status_code == 403 and "needs JupyterHub" in response.text
    assert headless.get("/").headers["location"] == "/docs"


@pytest.mark.parametrize("headers, location",
                         [(ADMIN, "/services/loopml/admin"), (ALICE, "/hub/home"), ({}, "/hub/home")],
                         ids=["admin", "member", "anonymous"])
def test_the_service_root_sends_admins_to_the_panel(panel, headers, location):
    response = panel.get("/services/loopml/", headers=headers)
    assert (response.status_code, response.headers["location"]) == (302, location)
    assert panel.get("/services/loopml").headers["location"] == "http://testserver/services/loopml/"


def test_projects_page_lists_every_project_with_members_and_quota(panel):
    page = panel.get("/services/loopml/admin", headers=ADMIN).text
    assert '<tr data-project="demo">' in page and '<tr data-project="fraud">' in page
    assert 'data-member="alice"' in page and 'data-quota="2"' in page
    assert 'name="_xsrf" value=""' in page  # read by bearer token: the forms need a session


def test_actions_need_a_session_even_for_an_admin_token(panel):
    response = panel.post("/services/loopml/admin/projects", headers=ADMIN, data={"name": "other", "_xsrf": "x"})
    assert response.status_code == 403 and "browser session" in response.text
    assert [p.name for p in panel.app.state.services.projects.visible_to(User("admin", admin=True))] == ["demo", "fraud"]


def test_the_done_message_is_escaped(panel):
    page = panel.get("/services/loopml/admin?done=<script>alert(1)</script>", headers=ADMIN).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


class _Policies:
    """The monitoring slice's open alerts, as :meth:`PolicyService.alerts` answers them."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def alerts(self, project, endpoint=None, status=None, job_id=None):
        if self.fail:
            raise Unavailable("the platform DB is locked", component="db")
        if project != "demo":
            return []
        return [Alert(id="a1", project="demo", endpoint="iris", kind="drift", version=3, window="1h", value=0.31,
                      threshold=0.2, detail={}, status=status, action="alert",
                      opened_at=dt.datetime.now(dt.timezone.utc), closed_at=None, job_id=None, produced_version=None,
                      evaluation=None)]


def test_open_alerts_and_the_cluster_render_from_their_services(panel):
    panel.app.state.services.policies, panel.app.state.services.backend = _Policies(), JobBackend()
    alerts = panel.get("/services/loopml/admin/alerts", headers=ADMIN)
    assert alerts.status_code == 200 and '<tr data-alert="a1">' in alerts.text and "0.31" in alerts.text
    cluster = panel.get("/services/loopml/admin/cluster", headers=ADMIN)
    assert cluster.status_code == 200 and "not connected to a Ray cluster" in cluster.text


def test_a_failing_service_reads_as_an_error_on_its_section(panel):
    panel.app.state.services.policies = _Policies(fail=True)
    page = panel.get("/services/loopml/admin/alerts", headers=ADMIN)
    assert page.status_code == 503 and 'id="error"' in page.text and "the platform DB is locked" in page.text


class _Slices:
    """What the loop tracker reads of the other slices for project demo (fraud has nothing): a succeeded job,
    a registered version MLflow cannot tell now, a live endpoint, an alert."""

    class Jobs:
        def list(self, project, status=None, limit=50, offset=0):
            return [] if project != "demo" else [
                Job.model_validate(job_json("j1", "SUCCEEDED", finished_at="2025-01-01T10:05:00Z"))]

    class Endpoints:
        def list(self, project):
            return [_endpoint()] if project == "demo" else []

    class Registry:
        def newest_version(self, project):
            raise Unavailable("the MLflow server at http://mlflow:5000 did not answer", component="mlflow")

    class Monitor:
        def last_capture(self, project):
            return ("iris", dt.datetime(2025, 1, 1, 11, tzinfo=dt.timezone.utc)) if project == "demo" else None

        def last_feedback(self, project):
            return None

    class Policies(_Policies):
        def alerts(self, project, endpoint=None, status=None, job_id=None):
            return super().alerts(project, endpoint, status or "open", job_id)


def test_the_loop_section_has_a_row_of_stages_per_project(panel):
    state = panel.app.state.services
    state.jobs, state.endpoints, state.registry = _Slices.Jobs(), _Slices.Endpoints(), _Slices.Registry()
    state.monitor, state.policies = _Slices.Monitor(), _Slices.Policies()
    state.projects.workspace_opened("fraud", "bob")
    page = panel.get("/services/loopml/admin/loop", headers=ADMIN)
    assert page.status_code == 200, page.text
    assert 'id="loop"' in page.text and 'id="error"' not in page.text
    demo = page.text.split('<tr data-project="demo">')[1].split("</tr>")[0]
    assert '<td class="furthest">monitored</td>' in demo
    assert 'data-stage="trained" data-reached="yes" data-object="job:j1"' in demo
    assert 'href="/services/loopml/api/v1/projects/demo/jobs/j1/logs">job j1 (train.ipynb, SUCCEEDED)</a>' in demo
    assert 'data-stage="live" data-reached="yes" data-object="endpoint:iris"' in demo
    assert "endpoint iris (serving iris v3)" in demo
    assert 'data-object="alert:a1"' in demo and 'href="/services/loopml/admin/alerts"' in demo
    assert 'data-stage="versioned" data-reached="no"' in demo and "the MLflow server at http://mlflow:5000" in demo
    assert 'data-stage="workspace_opened" data-reached="no"' in demo
    fraud = page.text.split('<tr data-project="fraud">')[1].split("</tr>")[0]
    assert 'data-stage="workspace_opened" data-reached="yes"' in fraud and "workspace bob" in fraud
    assert '<td class="furthest">workspace opened</td>' in fraud


def _pipeline_run(run_id: str, project: str, minute: int, status: str = "SUCCEEDED") -> PipelineRun:
    created = f"2025-01-01T10:{minute:02d}:00Z"
    return PipelineRun.model_validate({
        "id": run_id, "project": project, "user": "alice", "name": "wine-retrain", "source_name": "wine.pipeline.yaml",
        "status": status, "attempt": 1, "parameters": {}, "no_cache": False, "mlflow_run_id": None,
        "created_at": created, "updated_at": created, "finished_at": None,
        "steps": [{"id": "prepare", "kind": "notebook", "after": [], "status": "SUCCEEDED", "job_id": "j7"},
                  {"id": "deploy", "kind": "deploy", "after": ["prepare"], "status": "SKIPPED",
                   "message": "steps.evaluate.outputs.accuracy >= 0.9 is false (0.8)"}]})


class _Pipelines:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int, int]] = []

    def list(self, project, limit=50, offset=0):
        self.asked.append((project, limit, offset))
        return {"demo": [_pipeline_run("p2", "demo", 30, "RUNNING"), _pipeline_run("p1", "demo", 10)],
                "fraud": [_pipeline_run("p3", "fraud", 20, "FAILED")]}[project]


def test_the_pipelines_section_lists_the_runs_of_every_project_newest_first(panel):
    panel.app.state.services.pipelines = pipelines = _Pipelines()
    page = panel.get("/services/loopml/admin/pipelines", headers=ADMIN)
    assert page.status_code == 200, page.text
    assert re.findall(r'<tr data-pipeline-run="([^"]+)"', page.text) == ["p2", "p3", "p1"]
    assert {project for project, _, _ in pipelines.asked} == {"demo", "fraud"}
    row = page.text.split('<tr data-pipeline-run="p3" data-status="FAILED">')[1].split("</tr>")[0]
    assert "fraud" in row and "wine.pipeline.yaml" in row and 'data-step="deploy"' in row
    assert "0.9 is false (0.8)" in row  # escaped: &gt;= in the page
    assert 'href="/services/loopml/api/v1/projects/fraud/jobs/j7/logs"' in row


@pytest.mark.parametrize("name", templates.list_templates())
def test_every_template_compiles(name):
    templates.get_template(name)


@pytest.mark.parametrize("value, expected", [(" alice ", "alice"), ("a.b@example.org", "a.b@example.org")])
def test_user_names_from_forms(value, expected):
    assert check_user_name(value) == expected


@pytest.mark.parametrize("value", ["", "   ", "two words", "x" * 201, "tab\there"])
def test_bad_user_names_are_refused_naming_the_field(value):
    with pytest.raises(InvalidInput, match="invalid user name"):
        check_user_name(value)


@pytest.mark.parametrize("value, expected", [("1", 1), (" 12 ", 12)])
def test_quotas_from_forms(value, expected):
    assert parse_quota(value) == expected


@pytest.mark.parametrize("value", ["", "0", "-1", "1.5", "many", "²"])
def test_bad_quotas_are_refused(value):
    with pytest.raises(InvalidInput, match="max_concurrent_jobs"):
        parse_quota(value)


def test_job_filters_name_what_is_wrong():
    assert job_filters({"status": "FAILED", "user": " bob "}, ["demo"]) == {"project": "", "status": "FAILED",
                                                                           "user": "bob"}
    with pytest.raises(InvalidInput, match="no project 'nope'"):
        job_filters({"project": "nope"}, ["demo"])
    with pytest.raises(InvalidInput, match="unknown job status 'DONE'"):
        job_filters({"status": "DONE"}, ["demo"])
    assert set(JobStatus.__members__) == {"QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"}


def _endpoint(**change) -> Endpoint:
    now = dt.datetime.now(dt.timezone.utc)
    return Endpoint(project="demo", name="iris", model="demo.iris", version=3, url="http://x", public=False,
                    replicas=1, status="RUNNING", created_at=now, updated_at=now, history=[], **change)


def test_traffic_splits_between_stable_and_canary():
    assert traffic(_endpoint()) == [(3, 100.0, "stable")]
    assert traffic(_endpoint(canary_version=4, canary_percent=10.0)) == [(3, 90.0, "stable"), (4, 10.0, "canary")]


def test_resources_read_as_people_read_them():
    text = resource_text({"memory": 8 * 2**30, "CPU": 4.0, "node:127.0.0.1": 1.0, "node2": 1.0, "GPU": 0.5})
    assert text == "CPU 4, GPU 0.5, memory 8.0 GiB, node2 1"


@pytest.mark.parametrize(
    "message, shown",
    [
        ("login with token=abc123", "login with token=[redacted]"),
        ("Authorization: Bearer abcdefghijklmnopqrstuv", "Authorization: Bearer [redacted]"),
        ('{"password": "demo"}', '{"password": "[redacted]"}'),
        ("the token expired", "the token expired"),
        ("exit code 1", "exit code 1"),
    ],
    ids=["assigned", "header", "json", "plain-words", "no-credential"],
)
def test_credentials_never_reach_the_recent_log(message, shown):
    assert redact(message) == shown


def test_recent_logs_keep_the_newest_warnings_without_tracebacks():
    handler = RecentLogs(capacity=2).install()
    log = logging.getLogger("loopml.test_admin_panel")
    try:
        log.info("not kept")
        log.warning("first")
        try:
            raise ValueError("bad value\nsecond line")
        except ValueError:
            log.exception("second")
        log.error("third, token=s3cret-value")
    finally:
        handler.uninstall()
    entries = handler.entries()
    assert [e.message for e in entries] == ["third, token=[redacted]", "second (ValueError: bad value)"]
    assert entries[0].level == "ERROR" and entries[0].logger == "loopml.test_admin_panel"
