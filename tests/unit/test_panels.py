"""The ipywidgets panels and their poller, over a real ``loopml.Client`` whose transport is a fake platform.

The fake (``httpx.MockTransport``) answers the platform's REST routes with canned JSON and
keeps every request, so tests check both what a panel shows and what it asked for.
"""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import ipywidgets
import pytest

from loopml.client import Client
from loopml.errors import InvalidInput, Unauthorized
from loopml.jupyter_ext import context, poller
from loopml.jupyter_ext.panels import (
    EndpointPanel,
    JobPanel,
    JobsPanel,
    LoopPanel,
    ModelsPanel,
    MonitorPanel,
    dashboard,
)
from loopml.jupyter_ext.panels.job import LOG_LINES
from tests.unit.payloads import job_json, loop_json
from tests.unit.test_cli_endpoints import KEY, endpoint_json
from tests.unit.test_cli_models import model_json, version_json
from tests.unit.test_cli_monitor import drift, report_json

URL = "http://platform.test"
RED = "#c62828"
NOW = "2025-01-01T10:00:00Z"


def alert_json(alert_id: str = "a1", kind: str = "drift", **fields: Any) -> dict[str, Any]:
    return {"id": alert_id, "project": "demo", "endpoint": "iris-api", "kind": kind, "version": 2, "window": "15m",
            "value": 0.5, "threshold": None, "detail": {"features": ["petal width (cm)"]}, "status": "open",
            "action": "alert", "opened_at": NOW, "closed_at": None, "job_id": None, "produced_version": None,
            "evaluation": None, **fields}


@dataclass
class FakePlatform:
    """The REST routes the panels use, over project ``demo``; ``fail`` answers every request with
    ``(status, body)``, ``raise_`` raises from the transport instead. ``job_script`` lists the
    states job ``j1`` goes through, one per GET (the last one stays)."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=lambda: {"j1": job_json("j1", "RUNNING", 2, 5)})
    logs: dict[str, str] = field(default_factory=dict)
    job_script: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=lambda: report_json(name="iris-api"))
    alerts: list[dict[str, Any]] = field(default_factory=list)
    loop: dict[str, Any] = field(default_factory=loop_json)
    mlflow_uri: str = "http://mlflow.test:5000"
    fail: tuple[int, dict[str, Any]] | None = None
    raise_: Exception | None = None
    hold: threading.Event | None = None  # POSTs wait for it: a slow platform
    requests: list[httpx.Request] = field(default_factory=list)
    request: httpx.Request | None = None  # the one being answered
    threads: list[threading.Thread] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.request = request
        self.threads.append(threading.current_thread())
        if self.raise_ is not None:
            raise self.raise_
        if self.fail is not None:
            return httpx.Response(self.fail[0], json=self.fail[1])
        if self.hold is not None and request.method == "POST":
            self.hold.wait(5)
        route = f"{request.method} {request.url.path.removeprefix('/api/v1')}"
        body = json.loads(request.content) if request.content else None
        for pattern, handler in self.routes:
            match = re.fullmatch(pattern, route)
            if match:
                status, answer = handler(self, body, *match.groups())
                if isinstance(answer, str):
                    return httpx.Response(status, text=answer)
                return httpx.Response(status, json=answer)
        return httpx.Response(404, json={"message": f"no route {route}", "reason": "not_found"})

    # -- routes ---------------------------------------------------------------------------

    def _projects(self, body):
        return 200, [{"name": "demo", "members": ["alice"], "max_concurrent_jobs": None, "created_at": NOW}]

    def _status(self, body):
        return 200, {"platform": {"ok": True}, "mlflow": {"ok": True, "uri": self.mlflow_uri}}

    def _jobs(self, body):
        return 200, list(self.jobs.values())

    def _job(self, body, job_id):
        if job_id == "j1" and self.job_script:
            self.jobs["j1"] = self.job_script.pop(0) if len(self.job_script) > 1 else self.job_script[0]
        if job_id not in self.jobs:
            return 404, {"message": f"job {job_id} does not exist", "reason": "not_found"}
        return 200, self.jobs[job_id]

    def _logs(self, body, job_id):
        return 200, self.logs.get(job_id, "")

    def _cancel(self, body, job_id):
        self.jobs[job_id] = {**self.jobs[job_id], "status": "CANCELLED", "message": "cancelled by alice"}
        return 200, self.jobs[job_id]

    def _requeue(self, body, job_id):
        self.jobs["j2"] = job_json("j2", "QUEUED", trigger="requeue", parent_id=job_id, message="waiting for a slot")
        return 201, self.jobs["j2"]

    def _models(self, body):
        return 200, list(self.models.values())

    def _model(self, body, name):
        name = name.removeprefix("demo.")
        if name not in self.models:
            return 404, {"message": f"model {name} does not exist", "reason": "not_found"}
        return 200, self.models[name]

    def _alias(self, body, name):
        model = self.models[name.removeprefix("demo.")]
        for version in model["versions"]:
            aliases = [a for a in version["aliases"] if a != body["alias"]]
            if version["version"] == body["version"]:
                aliases = [a for a in aliases if not (body["alias"] == "champion" and a == "challenger")]
                aliases.append(body["alias"])
            version["aliases"] = aliases
        model["aliases"] = {a: v["version"] for v in model["versions"] for a in v["aliases"]}
        return 200, model

    def _deploy(self, body):
        name, version = body["model"].split("/")
        created = body["name"] not in self.endpoints
        self.endpoints[body["name"]] = endpoint_json(body["name"], int(version), None)
        return 201, {"endpoint": self.endpoints[body["name"]], "key": KEY if created else None}

    def _endpoints(self, body):
        return 200, list(self.endpoints.values())

    def _endpoint(self, body, name):
        if name not in self.endpoints:
            return 404, {"message": f"endpoint demo/{name} does not exist", "reason": "not_found"}
        return 200, self.endpoints[name]

    def _rollback(self, body, name):
        self.endpoints[name].update(canary_version=None, canary_percent=None)
        return 200, self.endpoints[name]

    def _promote_canary(self, body, name):
        endpoint = self.endpoints[name]
        endpoint.update(version=endpoint["canary_version"], canary_version=None, canary_percent=None)
        return 200, endpoint

    def _monitor(self, body, name):
        return 200, {**self.report, "endpoint": name, "window": self.request.url.params["window"]}

    def _requeue_endpoint(self, body, name):
        self.jobs["j9"] = job_json("j9", "QUEUED", trigger="user")
        return 200, {"job": self.jobs["j9"], "alert": alert_json("a9", "manual", status="closed", job_id="j9")}

    def _alerts(self, body):
        return 200, self.alerts

    def _loop(self, body):
        return 200, self.loop

    routes = [
        (r"GET /projects", _projects),
        (r"GET /status", _status),
        (r"GET /projects/demo/jobs", _jobs),
        (r"GET /projects/demo/jobs/([^/]+)", _job),
        (r"GET /projects/demo/jobs/([^/]+)/logs", _logs),
        (r"POST /projects/demo/jobs/([^/]+)/cancel", _cancel),
        (r"POST /projects/demo/jobs/([^/]+)/requeue", _requeue),
        (r"GET /projects/demo/models", _models),
        (r"GET /projects/demo/models/([^/]+)", _model),
        (r"POST /projects/demo/models/([^/]+)/aliases", _alias),
        (r"POST /projects/demo/endpoints", _deploy),
        (r"GET /projects/demo/endpoints", _endpoints),
        (r"GET /projects/demo/endpoints/([^/]+)", _endpoint),
        (r"POST /projects/demo/endpoints/([^/]+)/rollback", _rollback),
        (r"POST /projects/demo/endpoints/([^/]+)/promote", _promote_canary),
        (r"GET /projects/demo/endpoints/([^/]+)/monitor", _monitor),
        (r"POST /projects/demo/endpoints/([^/]+)/requeue", _requeue_endpoint),
        (r"GET /projects/demo/alerts", _alerts),
        (r"GET /projects/demo/loop", _loop),
    ]

    @property
    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix('/api/v1')}" for r in self.requests]

    def posted(self, path: str) -> Any:
        """The JSON body of the last POST to ``path`` (``None`` for an empty one); fails if none was sent."""
        found = [r for r in self.requests if r.method == "POST" and r.url.path.removeprefix("/api/v1") == path]
        assert found, f"no POST {path} in {self.paths}"
        return json.loads(found[-1].content) if found[-1].content else None


@pytest.fixture(autouse=True)
def no_ambient_project(monkeypatch):
    monkeypatch.delenv(context.PROJECT_ENV, raising=False)


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def client(platform) -> Client:
    with Client(URL, "tok", transport=httpx.MockTransport(platform)) as client:
        yield client


@pytest.fixture
def opened():
    """Panels a test opened; all closed at the end, and then the poller must be gone."""
    panels: list = []
    yield panels
    for panel in panels:
        panel.close()
    assert poller.wait_stopped(5), "the poller thread outlived the panels"


def until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def poller_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == poller.THREAD_NAME]


# -- JobPanel -------------------------------------------------------------------------------


def test_job_panel_shows_status_progress_log_tail_and_links(client, platform, opened):
    platform.jobs["j1"] = job_json("j1", "RUNNING", 2, 5, message="cell 3 running", mlflow_run_id="run42",
                                   name="train <v2>.ipynb")
    platform.logs["j1"] = "".join(f"line {i}\n" for i in range(80))
    panel = JobPanel("j1", client, "demo", poll_s=None)
    opened.append(panel)
    assert not panel.polling and platform.requests == []  # the constructor fetches nothing

    panel.refresh()

    assert panel.job.id == "j1" and panel.error.value == ""
    assert "RUNNING" in panel.status.value and "cell 3 running" in panel.status.value
    assert "train &lt;v2&gt;.ipynb" in panel.status.value and "<v2>" not in panel.status.value
    assert (panel.progress.value, panel.progress.max) == (2, 5)
    lines = panel.log.value.splitlines()
    assert len(lines) == LOG_LINES and lines[0] == "line 30" and lines[-1] == "line 79"
    assert f'href="{URL}/api/v1/projects/demo/jobs/j1/output"' in panel.links.value
    assert 'href="http://mlflow.test:5000/#/runs/run42"' in panel.links.value
    assert not panel.cancel_button.disabled and not panel.requeue_button.disabled


@pytest.mark.parametrize("status, done, total, bar, text", [
    pytest.param("QUEUED", 0, 0, (0, 1), "QUEUED", id="queued-no-cells-yet"),
    pytest.param("RUNNING", 3, 7, (3, 7), "RUNNING", id="running"),
    pytest.param("SUCCEEDED", 7, 7, (7, 7), "SUCCEEDED", id="succeeded-full"),
    pytest.param("SUCCEEDED", 6, 7, (7, 7), "SUCCEEDED", id="succeeded-is-full-even-if-a-cell-was-skipped"),
    pytest.param("SUCCEEDED", 0, 0, (1, 1), "SUCCEEDED", id="succeeded-empty-notebook"),
    pytest.param("FAILED", 1, 4, (1, 4), "cell_error in cell 1: ValueError: bad alpha", id="failed"),
])
def test_job_progress_bar_and_status_follow_the_job(client, platform, opened, status, done, total, bar, text):
    error = {"reason": "cell_error", "cell_index": 1, "ename": "ValueError", "evalue": "bad alpha"}
    platform.jobs["j1"] = job_json("j1", status, done, total, error=error if status == "FAILED" else None)
    panel = JobPanel("j1", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    assert (panel.progress.value, panel.progress.max) == bar
    assert text in panel.status.value
    assert panel.cancel_button.disabled is (status in ("SUCCEEDED", "FAILED"))


def test_a_terminal_job_stops_polling_after_its_final_refresh(client, platform, opened):
    platform.job_script = [job_json("j1", "RUNNING", 1, 3), job_json("j1", "RUNNING", 2, 3),
                           job_json("j1", "SUCCEEDED", 3, 3)]
    platform.logs["j1"] = "done\n"
    panel = JobPanel("j1", client, "demo", poll_s=0.01)
    opened.append(panel)
    assert panel.polling
    assert until(lambda: not panel.polling)
    assert poller.wait_stopped(5) and poller_threads() == []
    gets = platform.paths.count("GET /projects/demo/jobs/j1")
    assert gets == 3  # RUNNING, RUNNING, SUCCEEDED: then no more
    assert (panel.progress.value, panel.progress.max) == (3, 3) and "SUCCEEDED" in panel.status.value
    assert panel.log.value == "done" and panel.cancel_button.disabled


def test_a_platform_error_shows_red_and_clears_on_recovery(client, platform, opened):
    panel = JobPanel("j1", client, "demo", poll_s=None)
    opened.append(panel)
    platform.fail = (503, {"message": "the platform is restarting", "reason": "unavailable"})
    panel.refresh()  # never raises
    assert "the platform is restarting" in panel.error.value and RED in panel.error.value
    platform.fail = None
    panel.refresh()
    assert panel.error.value == "" and "RUNNING" in panel.status.value


def test_an_unexpected_exception_is_one_line_in_the_panel(client, platform, opened):
    panel = JobsPanel(client, "demo", poll_s=None)
    opened.append(panel)
    platform.raise_ = RuntimeError("socket exploded\nsecond line")
    panel.refresh()
    assert "RuntimeError: socket exploded" in panel.error.value and "second line" not in panel.error.value
    platform.raise_ = None
    panel.refresh()
    assert panel.error.value == ""


def test_cancel_and_requeue_call_the_platform_and_show_the_new_job_in_place(client, platform, opened):
    panel = JobPanel("j1", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()

    panel.cancel_button.click()
    assert panel.wait_actions(5)
    assert platform.posted("/projects/demo/jobs/j1/cancel") is None
    assert "CANCELLED" in panel.status.value and panel.cancel_button.disabled

    panel.requeue_button.click()
    assert panel.wait_actions(5)
    assert platform.posted("/projects/demo/jobs/j1/requeue") == {"parameters": {}}
    child = panel.child_panel
    assert isinstance(child, JobPanel) and child.job_id == "j2" and child in panel.requeued.children
    assert "QUEUED" in child.status.value and "waiting for a slot" in child.status.value
    assert panel.error.value == ""


def test_a_click_returns_at_once_and_the_action_runs_off_the_main_thread(client, platform, opened):
    panel = JobPanel("j1", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    platform.hold = threading.Event()
    started = time.perf_counter()
    panel.cancel_button.click()
    assert time.perf_counter() - started < 0.5  # the platform has not answered yet
    assert panel.busy and panel.cancel_button.disabled and panel.requeue_button.disabled
    platform.hold.set()
    assert panel.wait_actions(5) and not panel.busy
    cancel = platform.paths.index("POST /projects/demo/jobs/j1/cancel")
    assert platform.threads[cancel] is not threading.main_thread()


def test_a_failed_action_shows_red_with_what_failed(client, platform, opened):
    panel = JobPanel("j1", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    platform.fail = (409, {"message": "job j1 already ended", "reason": "conflict"})
    panel.cancel_button.click()
    assert panel.wait_actions(5)
    assert "Cancel failed: job j1 already ended" in panel.error.value and RED in panel.error.value


# -- JobsPanel ------------------------------------------------------------------------------


def test_jobs_panel_tables_the_jobs_and_filters_by_status(client, platform, opened):
    platform.jobs = {"j2": job_json("j2", "RUNNING", 2, 5, name="<b>evil</b>", user="bob"),
                     "j1": job_json("j1", "SUCCEEDED", 3, 3)}
    panel = JobsPanel(client, "demo", status="running", poll_s=None)
    opened.append(panel)
    panel.refresh()
    assert [j.id for j in panel.jobs] == ["j2", "j1"]
    assert dict(platform.requests[-1].url.params) == {"limit": "50", "status": "RUNNING"}
    cells = re.findall(r"<td[^>]*>(.*?)</td>", panel.table.value)
    assert cells[:6] == ["<code>j2</code>", "&lt;b&gt;evil&lt;/b&gt;", cells[2], "2/5", "bob", cells[5]]
    assert "RUNNING" in cells[2] and cells[5].startswith("20")
    assert "SUCCEEDED" in cells[8] and cells[9] == "3/3"


def test_jobs_panel_refuses_an_unknown_status(client):
    with pytest.raises(InvalidInput, match="unknown job status 'DONE'"):
        JobsPanel(client, "demo", status="DONE", poll_s=None)


# -- ModelsPanel ----------------------------------------------------------------------------


@pytest.fixture
def iris(platform) -> dict[str, Any]:
    platform.models["iris"] = model_json(
        version_json(2, {"accuracy": 0.95, "f1": 0.9}, {"C": "0.05"}, aliases=["challenger"]),
        version_json(1, {"accuracy": 0.9, "loss": 0.3}, {"C": "1.0"}, aliases=["champion"]))
    platform.models["wine"] = model_json(version_json(1), name="wine")
    return platform.models["iris"]


def test_models_panel_lists_models_with_their_aliases(client, platform, iris, opened):
    panel = ModelsPanel(client=client, project="demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    assert [m.name for m in panel.models] == ["iris", "wine"] and panel.model is None
    assert "iris" in panel.table.value and "champion" in panel.table.value and "challenger" in panel.table.value
    assert [value for _, value in panel.picker.options] == ["", "iris", "wine"]
    assert panel.deploy_button.disabled and panel.controls.layout.display == "none"


def test_models_panel_shows_one_models_versions_side_by_side(client, platform, iris, opened):
    panel = ModelsPanel("iris", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    assert panel.model.name == "iris"
    head = re.findall(r"<th>(.*?)</th>", panel.table.value)
    assert head == ["", "v2", "v1"]
    rows = {m[0]: m[1:] for m in (re.findall(r"<td[^>]*>(.*?)</td>", row)
                                  for row in re.findall(r"<tr>(.*?)</tr>", panel.table.value)) if m}
    assert rows["metric accuracy"] == ["0.95", "0.9"]
    assert rows["metric loss"] == ["—", "0.3"] and rows["param C"] == ["0.05", "1.0"]
    assert "challenger" in rows["aliases"][0] and "champion" in rows["aliases"][1]
    assert panel.deploy_version.value == 1 and panel.promote_version.value == 2  # champion / challenger
    assert not panel.deploy_button.disabled and not panel.promote_button.disabled


def test_deploy_and_promote_call_the_platform(client, platform, iris, opened):
    panel = ModelsPanel("iris", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    panel.endpoint_name.value = "iris-api"
    panel.deploy_version.value = 2
    panel.deploy_button.click()
    assert panel.wait_actions(5) and panel.error.value == ""
    assert platform.posted("/projects/demo/endpoints") == {"name": "iris-api", "model": "iris/2", "public": False}
    assert KEY in panel.deploy_result.value and "iris-api" in panel.deploy_result.value

    panel.promote_version.value = 2
    panel.promote_button.click()
    assert panel.wait_actions(5) and panel.error.value == ""
    assert platform.posted("/projects/demo/models/iris/aliases") == {"alias": "champion", "version": 2}
    assert panel.model.aliases == {"champion": 2}


def test_deploy_without_an_endpoint_name_says_so(client, platform, iris, opened):
    panel = ModelsPanel("iris", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    panel.deploy_button.click()
    assert panel.wait_actions(5)
    assert "Deploy failed: give an endpoint name" in panel.error.value
    assert "POST /projects/demo/endpoints" not in platform.paths


def test_picking_a_model_shows_it(client, platform, iris, opened):
    panel = ModelsPanel(client=client, project="demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    panel.picker.value = "iris"
    assert panel.wait_actions(5)
    assert panel.model is not None and panel.model.name == "iris" and "v2" in panel.table.value
    assert panel.controls.layout.display is None


# -- EndpointPanel --------------------------------------------------------------------------


def test_endpoint_panel_shows_versions_traffic_history_and_rolls_back(client, platform, opened):
    platform.endpoints["iris-api"] = endpoint_json("iris-api", 2, "champion", history=[
        {"at": "2025-01-01T09:00:00Z", "user": "alice", "action": "create with demo.iris/2", "version": 2,
         "kind": "stable"},
        {"at": "2025-01-01T09:30:00Z", "user": "bob", "action": "canary demo.iris/3 at 20%", "version": 3,
         "kind": "canary"}]) | {"canary_version": 3, "canary_percent": 20.0}
    panel = EndpointPanel("iris-api", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    assert panel.endpoint.canary_version == 3
    assert "demo.iris v2 (@champion), canary v3 at 20%" in panel.summary.value
    assert "v2 80%" in panel.traffic.value and "v3 canary 20%" in panel.traffic.value
    actions = [re.findall(r"<td[^>]*>(.*?)</td>", row)[2] for row in re.findall(r"<tr>(.*?)</tr>", panel.history.value)
               if "<td" in row]
    assert actions == ["canary demo.iris/3 at 20%", "create with demo.iris/2"]  # newest first
    assert not panel.rollback_button.disabled and not panel.promote_canary_button.disabled

    panel.rollback_button.click()
    assert panel.wait_actions(5) and panel.error.value == ""
    assert platform.posted("/projects/demo/endpoints/iris-api/rollback") is None
    assert "canary" not in panel.traffic.value and "v2 100%" in panel.traffic.value
    assert panel.promote_canary_button.disabled


def test_promote_canary_gives_it_all_traffic(client, platform, opened):
    platform.endpoints["iris-api"] = endpoint_json() | {"canary_version": 3, "canary_percent": 10.0}
    panel = EndpointPanel("iris-api", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    panel.promote_canary_button.click()
    assert panel.wait_actions(5)
    assert platform.posted("/projects/demo/endpoints/iris-api/promote") is None
    assert panel.endpoint.version == 3 and "v3 100%" in panel.traffic.value


def test_an_unknown_endpoint_is_a_red_not_found(client, platform, opened):
    panel = EndpointPanel("nope", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    assert "endpoint demo/nope does not exist" in panel.error.value and panel.rollback_button.disabled


# -- MonitorPanel ---------------------------------------------------------------------------


@pytest.fixture
def monitored(platform, iris) -> FakePlatform:
    iris["versions"][0]["version"], iris["versions"][1]["version"] = 3, 2  # v3 challenger, v2 champion
    iris["aliases"] = {"challenger": 3, "champion": 2}
    platform.endpoints["iris-api"] = endpoint_json("iris-api", 2, "champion")
    platform.report = report_json(name="iris-api", drift=[drift("<script>x</script>"),
                                                          drift("petal width (cm)", drifted=True)])
    platform.alerts = [alert_json("a1", "drift", value=0.5), alert_json("a2", "accuracy", value=0.81, threshold=0.9)]
    return platform


def test_monitor_panel_charts_alerts_and_challenger(client, monitored, opened):
    panel = MonitorPanel("iris-api", client, "demo", window="15m", poll_s=None)
    opened.append(panel)
    panel.refresh()
    assert panel.error.value == ""
    assert panel.report.window == "15m" and panel.challenger == 3
    assert "window=15m" in str(monitored.requests[0].url)
    assert dict(monitored.requests[1].url.params) == {"endpoint": "iris-api", "status": "open"}
    charts = panel.charts.value
    assert charts.count("<svg") == 5
    for title in ("requests per bucket", "latency p50 (ms)", "error rate", "drift per feature (PSI)", "accuracy"):
        assert title in charts
    assert "p95 8 ms" in charts  # the window's p95 as a guide on the latency chart
    assert "&lt;script&gt;x&lt;/script&gt;" in charts and "<script>" not in charts
    assert "petal width (cm)" in charts and "0.96" in charts  # the accuracy sample
    assert "412 requests" in panel.summary.value and "drifted: petal width (cm)" in panel.summary.value
    assert "challenger v3" in panel.summary.value
    assert "drift" in panel.alerts_html.value and "accuracy" in panel.alerts_html.value
    assert len(panel.alerts) == 2
    assert not panel.promote_button.disabled and not panel.requeue_button.disabled


def test_the_panel_draws_estimated_vs_realized_and_the_data_quality_table(client, monitored, opened):
    from tests.unit.test_cli_monitor import DATA_QUALITY, ESTIMATED, TREND_ESTIMATES

    monitored.report = monitored.report | {"estimated": ESTIMATED, "data_quality": DATA_QUALITY}
    monitored.report["trend"] = monitored.report["trend"] | TREND_ESTIMATES
    panel = MonitorPanel("iris-api", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    charts, summary = panel.charts.value, panel.summary.value
    assert charts.count("<svg") == 6 and "accuracy: estimated vs realized" in charts
    assert charts.count("r=\"2\" fill=\"#2e7d32\"") == 2  # the accuracy sample, and the realized point beside the estimate
    assert "estimated accuracy 0.62 [0.58–0.66] over 400 rows (held-out 0.81)" in summary
    assert "realized 0.6 on 400 labelled rows, estimate off by +0.020" in summary
    assert "covariate shift" in summary and "concept drift" in summary  # the help text says what it assumes
    assert "12 of 412 requests" in summary
    assert "out_of_range" in panel.quality_html.value and "unseen_category" in panel.quality_html.value


def test_accuracy_over_time_is_sampled_at_each_refresh(client, monitored, opened):
    panel = MonitorPanel("iris-api", client, "demo", poll_s=None)
    opened.append(panel)
    for accuracy in (0.96, 0.91, 0.84):
        monitored.report = {**monitored.report, "quality": {"task": "classification", "n": 100,
                                                              "accuracy": accuracy}}
        panel.refresh()
    accuracy_chart = panel.charts.value.split("<svg")[-1]
    assert "0.84" in accuracy_chart and "max 0.96" in accuracy_chart


def test_requeue_training_shows_the_new_job_in_place(client, monitored, opened):
    panel = MonitorPanel("iris-api", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    panel.requeue_button.click()
    assert panel.wait_actions(5) and panel.error.value == ""
    assert monitored.posted("/projects/demo/endpoints/iris-api/requeue") == {"parameters": {}, "alert_id": None}
    assert isinstance(panel.job_panel, JobPanel) and panel.job_panel.job_id == "j9"
    assert panel.job_panel in panel.job_box.children and "QUEUED" in panel.job_panel.status.value


def test_promote_challenger_makes_it_champion_and_serves_it(client, monitored, opened):
    panel = MonitorPanel("iris-api", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    panel.promote_button.click()
    assert panel.wait_actions(5) and panel.error.value == ""
    assert monitored.posted("/projects/demo/models/iris/aliases") == {"alias": "champion", "version": 3}
    assert monitored.posted("/projects/demo/endpoints") == {"name": "iris-api", "model": "iris/3", "public": False}
    assert "iris-api serves v3" in panel.result.value
    assert panel.challenger is None and panel.promote_button.disabled  # v3 is champion now


@pytest.mark.parametrize("registry", ["no-challenger-alias", "model-deleted"])
def test_promote_is_disabled_without_a_challenger(client, monitored, opened, registry):
    if registry == "model-deleted":
        del monitored.models["iris"]
    else:
        monitored.models["iris"]["aliases"] = {"champion": 2}
    panel = MonitorPanel("iris-api", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    assert panel.error.value == "" and "412 requests" in panel.summary.value
    assert panel.challenger is None and panel.promote_button.disabled


def test_monitor_panel_refuses_a_bad_window(client, monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(InvalidInput, match="invalid window '2w'"):
        MonitorPanel("iris-api", client, "demo", window="2w", poll_s=None)
    gc.collect()  # Widget.__del__ closes the half-built panel
    assert [u.exc_value for u in unraisable] == []


# -- poller, closing and the dashboard --------------------------------------------------------


def test_closing_panels_unregisters_them_and_the_last_one_ends_the_poller(client, platform, opened):
    platform.jobs["j1"] = job_json("j1", "RUNNING", 1, 3)
    panels = [JobPanel("j1", client, "demo", poll_s=0.02), JobsPanel(client, "demo", poll_s=0.02),
              EndpointPanel("iris-api", client, "demo", poll_s=0.02)]
    assert all(p.polling for p in panels)
    assert until(lambda: "GET /projects/demo/jobs" in platform.paths and "GET /projects/demo/jobs/j1" in platform.paths)
    assert len(poller_threads()) == 1  # one thread for all
    panels[0].close()
    panels[1].close()
    assert not panels[0].polling and panels[2].polling and len(poller_threads()) == 1
    panels[2].close()
    assert poller.wait_stopped(5)
    assert poller_threads() == []
    assert panels[0].progress.comm is None and panels[2].error.comm is None  # the widgets closed too
    count = len(platform.requests)
    time.sleep(0.1)
    assert len(platform.requests) == count  # nothing polls any more


def test_one_failing_or_slow_target_does_not_stop_the_others():
    class Target:
        def __init__(self, behaviour):
            self.behaviour, self.calls = behaviour, 0

        def refresh(self):
            self.calls += 1
            self.behaviour()

    def fail():
        raise RuntimeError("boom")

    scheduler = poller.Poller(duty=1.0)
    failing, slow, healthy = Target(fail), Target(lambda: time.sleep(0.05)), Target(lambda: None)
    for target in (failing, slow, healthy):
        scheduler.register(target, 0.01)
    assert until(lambda: healthy.calls >= 5 and failing.calls >= 5 and slow.calls >= 2)
    for target in (failing, slow, healthy):
        scheduler.unregister(target)
    assert scheduler.wait_stopped(5) and scheduler.thread() is None


def test_the_poller_keeps_to_its_duty_cycle():
    class Busy:
        calls = 0

        def refresh(self):
            self.calls += 1
            end = time.thread_time() + 0.01  # 10 ms of CPU per refresh
            while time.thread_time() < end:
                pass

    scheduler = poller.Poller(duty=0.25)
    target = Busy()
    scheduler.register(target, 0.001)
    time.sleep(0.5)
    scheduler.unregister(target)
    assert scheduler.wait_stopped(5)
    # unthrottled: ~45 refreshes in 0.5 s; at 25% duty each 10 ms refresh rests 30 ms: ~12
    assert 3 <= target.calls <= 20


def test_the_cap_applies_while_a_cell_runs_and_lifts_between_cells():
    class Events:
        def __init__(self):
            self.callbacks = {}

        def register(self, event, callback):
            self.callbacks.setdefault(event, []).append(callback)

        def trigger(self, event):
            for callback in self.callbacks.get(event, []):
                callback(None)

    class Shell:
        events = Events()

    class Busy:
        calls = 0

        def refresh(self):
            self.calls += 1
            end = time.thread_time() + 0.005
            while time.thread_time() < end:
                pass

    shell, target = Shell(), Busy()
    scheduler = poller.Poller(duty=0.05, idle_duty=1.0)
    scheduler.watch_cells(shell)
    scheduler.watch_cells(shell)  # idempotent
    assert [len(c) for c in shell.events.callbacks.values()] == [1, 1]
    shell.events.trigger("pre_run_cell")
    scheduler.register(target, 0.001)
    time.sleep(0.3)
    in_cell = target.calls  # 5 ms of CPU, then a 95 ms rest: ~3
    shell.events.trigger("post_run_cell")
    time.sleep(0.3)
    between_cells = target.calls - in_cell  # no cap: ~40
    scheduler.unregister(target)
    assert scheduler.wait_stopped(5)
    assert in_cell <= 6 and between_cells >= 3 * max(in_cell, 1)


def test_registration_is_thread_safe_and_leaves_no_thread():
    class Idle:
        def refresh(self):
            pass

    scheduler = poller.Poller()
    targets = [Idle() for _ in range(200)]

    def churn(part):
        for target in part:
            scheduler.register(target, 0.01)
            scheduler.unregister(target)

    workers = [threading.Thread(target=churn, args=(targets[i::4],)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not any(scheduler.is_registered(t) for t in targets)
    assert scheduler.wait_stopped(5)


def test_dashboard_tabs_and_closing_it_closes_its_panels(client, platform, iris, opened):
    platform.endpoints["iris-api"] = endpoint_json("iris-api")
    board = dashboard(client=client)  # project: the caller's only one
    tab = board.tabs
    assert board.children == (board.loop, tab) and isinstance(board.loop, LoopPanel) and board.loop.project == "demo"
    assert isinstance(tab, ipywidgets.Tab)
    assert [tab.get_title(i) for i in range(4)] == ["Jobs", "Models", "Endpoints", "Monitor"]
    jobs, models, endpoints, monitor = tab.children
    assert isinstance(jobs, JobsPanel) and isinstance(models, ModelsPanel) and jobs.project == "demo"
    assert until(lambda: isinstance(endpoints.panel, EndpointPanel) and isinstance(monitor.panel, MonitorPanel))
    assert endpoints.panel.name == "iris-api" and monitor.panel.endpoint_name == "iris-api"
    inner = [endpoints.panel, monitor.panel]
    assert until(lambda: inner[0].endpoint is not None and jobs.jobs and board.loop.state is not None)
    board.close()
    assert not any(p.polling for p in [board.loop, *tab.children, *inner])
    assert poller.wait_stopped(5) and poller_threads() == []


def test_a_hundred_panels_share_one_thread(client, platform, opened):
    panels = [JobPanel("j1", client, "demo", poll_s=0.5) for _ in range(100)]
    opened.extend(panels)
    assert len(poller_threads()) == 1
    for panel in panels:
        panel.close()
    assert poller.wait_stopped(5) and poller_threads() == []


# -- context ----------------------------------------------------------------------------------


def test_default_project_is_the_env_else_the_only_project(client, platform, monkeypatch):
    assert context.default_project(client) == "demo"
    monkeypatch.setenv("LOOPML_PROJECT", "other")
    assert context.default_project(client) == "other"
    assert JobsPanel(client, poll_s=None).project == "other"


def test_several_projects_name_the_choices(monkeypatch):
    def projects(request):
        return httpx.Response(200, json=[{"name": n, "members": [], "max_concurrent_jobs": None, "created_at": NOW}
                                         for n in ("b", "a")])

    with Client(URL, "tok", transport=httpx.MockTransport(projects)) as client:
        with pytest.raises(InvalidInput, match=r"several projects \(a, b\).*LOOPML_PROJECT") as caught:
            context.default_project(client)
    assert caught.value.details["choices"] == ["a", "b"]


def test_importing_the_panels_pulls_in_nothing_heavy():
    code = ("import sys; import loopml.jupyter_ext.panels; "
            "heavy = [m for m in ('ray', 'mlflow', 'pandas', 'scipy', 'sklearn', 'fastapi', 'sqlalchemy') "
            "if m in sys.modules]; assert not heavy, heavy")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert done.returncode == 0, done.stderr


def test_the_workspace_client_is_shared_and_renewed_when_closed_or_reconfigured(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))
    monkeypatch.setenv("LOOPML_URL", "http://a.test")
    monkeypatch.setenv("LOOPML_TOKEN", "t")
    monkeypatch.setenv("LOOPML_PROJECT", "demo")
    first = context.workspace_client()
    panel = JobsPanel(poll_s=None)
    assert panel.client is first and context.workspace_client() is first and panel.project == "demo"
    panel.close()
    assert not first._http.is_closed  # a panel never closes the shared client
    first.close()
    second = context.workspace_client()
    assert second is not first and second.url == "http://a.test"
    monkeypatch.setenv("LOOPML_URL", "http://b.test")
    assert context.workspace_client().url == "http://b.test"
    monkeypatch.delenv("LOOPML_URL")
    monkeypatch.delenv("LOOPML_TOKEN")
    with pytest.raises(Unauthorized, match="no loopml platform configured"):
        context.workspace_client()


def test_the_endpoint_tabs_say_when_there_is_no_endpoint(client, platform, opened):
    board = dashboard("demo", client)
    opened.append(board)
    endpoints = board.tabs.children[2]
    endpoints.refresh()
    assert endpoints.panel is None and endpoints.empty.layout.display is None
    platform.endpoints["iris-api"] = endpoint_json("iris-api")
    endpoints.refresh()
    assert isinstance(endpoints.panel, EndpointPanel) and endpoints.empty.layout.display == "none"
    del platform.endpoints["iris-api"]
    endpoints.refresh()
    assert endpoints.panel is None and endpoints.empty.layout.display is None


# -- LoopPanel --------------------------------------------------------------------------------


def test_the_loop_row_shows_each_stage_with_what_reached_it(client, platform, opened):
    platform.loop = loop_json(trained={"kind": "job", "id": "j1", "detail": "train <v2>.ipynb, SUCCEEDED"},
                              live={"kind": "endpoint", "id": "iris-api", "detail": "serving iris v2"},
                              versioned={"note": "cannot be told now: MLflow is away"})
    panel = LoopPanel(client, "demo", poll_s=None)
    opened.append(panel)
    assert platform.requests == []  # the constructor fetches nothing
    panel.refresh()
    assert platform.paths == ["GET /projects/demo/loop"] and panel.error.value == ""
    html = panel.row.value
    headers = re.findall(r"<th>(.*?)</th>", html)
    assert headers == ["workspace opened", "model code submitted", "trained", "versioned", "live", "monitored",
                       "feedback received"]
    cells = dict(zip(headers, re.findall(r"<td>(.*?)</td>", html), strict=True))
    assert "✓" in cells["trained"] and "job j1 (train &lt;v2&gt;.ipynb, SUCCEEDED)" in cells["trained"]
    assert "<v2>" not in html and "2025-01-01" in cells["trained"]
    assert "endpoint iris-api (serving iris v2)" in cells["live"]
    assert "cannot be told now: MLflow is away" in cells["versioned"] and "✓" not in cells["versioned"]
    assert "not yet" in cells["monitored"] and "✓" not in cells["monitored"]
    assert panel.state.furthest.value == "live"


def test_the_loop_row_shows_a_platform_error_in_red(client, platform, opened):
    platform.fail = (403, {"message": "user 'alice' is not a member of project 'demo'", "reason": "forbidden"})
    panel = LoopPanel(client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    assert RED in panel.error.value and "not a member" in panel.error.value and panel.row.value == "loading…"
