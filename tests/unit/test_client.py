"""loopml.Client against an in-process fake of the REST API (httpx.MockTransport): no platform needed."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from loopml import Client
from loopml import client as client_module
from loopml.errors import Conflict, Forbidden, InvalidInput, LoopMLError, NotFound, Unauthorized, Unavailable
from loopml.executor.models import Job, JobStatus, Resources, Schedule
from tests.unit.payloads import NOTEBOOK, job_json

TOKEN = "s3cret-token-value"
URL = "http://platform.test/services/loopml"


def schedule_json(**fields: Any) -> dict[str, Any]:
    data = {
        "id": "s1", "project": "demo", "user": "alice", "name": "nightly", "cron": "0 3 * * *",
        "parameters": {}, "next_run_at": "2025-01-02T03:00:00Z", "last_run_at": None,
        "last_job_id": None, "created_at": "2025-01-01T10:00:00Z",
    }
    return data | fields


def project_json(name: str = "demo") -> dict[str, Any]:
    return {"name": name, "members": ["alice"], "max_concurrent_jobs": None, "created_at": "2025-01-01T10:00:00Z"}


class Recorder:
    """A MockTransport handler answering from ``answers`` (callables or responses) and keeping the requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def body(self) -> Any:
        return json.loads(self.requests[-1].content)


def make(*answers: httpx.Response | Exception) -> tuple[Client, Recorder]:
    recorder = Recorder(*answers)
    return Client(URL, TOKEN, transport=httpx.MockTransport(recorder)), recorder


def test_requests_go_under_api_v1_with_the_bearer_token():
    client, rec = make(httpx.Response(200, json=[project_json()]))
    assert client.project_names() == ["demo"]
    request = rec.requests[0]
    assert request.url == "http://platform.test/services/loopml/api/v1/projects"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_config_comes_from_env_over_client_json(tmp_path, monkeypatch):
    (tmp_path / "client.json").write_text(json.dumps({"url": "http://file:1/", "token": "file-token"}))
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))
    monkeypatch.delenv("LOOPML_TOKEN", raising=False)
    monkeypatch.delenv("LOOPML_URL", raising=False)
    assert Client().url == "http://file:1"
    monkeypatch.setenv("LOOPML_URL", "http://env:2")
    assert Client().url == "http://env:2"


def test_no_config_tells_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))
    monkeypatch.delenv("LOOPML_URL", raising=False)
    monkeypatch.delenv("LOOPML_TOKEN", raising=False)
    with pytest.raises(Unauthorized, match="loopml up.*LOOPML_URL and LOOPML_TOKEN"):
        Client()


def test_a_broken_client_json_is_invalid_input_not_a_traceback(tmp_path, monkeypatch):
    (tmp_path / "client.json").write_text("{oops")
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))
    monkeypatch.delenv("LOOPML_URL", raising=False)
    with pytest.raises(InvalidInput, match="client config .* is not valid"):
        Client()


ERRORS = [
    pytest.param(401, Unauthorized, id="401-unauthorized"),
    pytest.param(403, Forbidden, id="403-forbidden"),
    pytest.param(404, NotFound, id="404-not-found"),
    pytest.param(409, Conflict, id="409-conflict"),
    pytest.param(422, InvalidInput, id="422-invalid"),
    pytest.param(503, Unavailable, id="503-unavailable"),
    pytest.param(500, Unavailable, id="500-other-5xx"),
    pytest.param(400, LoopMLError, id="400-other-4xx"),
    pytest.param(418, LoopMLError, id="418-other-4xx"),
]


@pytest.mark.parametrize("status, error_class", ERRORS)
def test_error_status_maps_to_one_class_with_message_reason_and_details(status, error_class):
    body = {"message": "project 'x' is busy", "reason": "quota", "project": "x"}
    client, _ = make(httpx.Response(status, json=body))
    with pytest.raises(error_class) as caught:
        client.job("x", "j1")
    assert type(caught.value) is error_class
    assert caught.value.message == "project 'x' is busy"
    assert caught.value.reason == "quota"
    assert caught.value.details == {"project": "x"}


def test_fastapi_validation_body_becomes_a_message_naming_the_field():
    detail = [{"loc": ["body", "resources", "cpus"], "msg": "Input should be greater than 0", "type": "greater_than"}]
    client, _ = make(httpx.Response(422, json={"detail": detail}))
    with pytest.raises(InvalidInput, match=r"^resources\.cpus: Input should be greater than 0$") as caught:
        client.submit("demo", NOTEBOOK)
    assert caught.value.reason == "invalid"


def test_answer_without_json_body_names_the_status_and_hints_at_the_url():
    client, _ = make(httpx.Response(404, text="<html>not here</html>"))
    with pytest.raises(NotFound, match=r"answered 404 Not Found to GET /services/loopml/api/v1/projects.*LOOPML_URL"):
        client.projects()
    client, _ = make(httpx.Response(502, text="bad gateway"))
    with pytest.raises(Unavailable, match="502"):
        client.status()


def test_a_success_that_is_not_the_documented_shape_is_a_clear_error():
    client, _ = make(httpx.Response(200, text="<html>hub login</html>"))
    with pytest.raises(LoopMLError, match="not JSON") as caught:
        client.job("demo", "j1")
    assert caught.value.reason == "bad_response"
    client, _ = make(httpx.Response(200, json={"id": "j1"}))
    with pytest.raises(LoopMLError, match="not a Job"):
        client.job("demo", "j1")


@pytest.mark.parametrize(
    "exc, text",
    [
        pytest.param(httpx.ConnectError("refused"), "cannot reach the platform at", id="refused"),
        pytest.param(httpx.ReadTimeout("slow"), "did not answer within 30 s", id="read-timeout"),
    ],
)
def test_network_failures_are_unavailable_and_never_show_the_token(exc, text):
    client, _ = make(exc)
    with pytest.raises(Unavailable) as caught:
        client.jobs("demo")
    assert text in caught.value.message
    assert URL in caught.value.message and "`loopml status`" in caught.value.message
    assert TOKEN not in caught.value.message and TOKEN not in repr(client)


def test_the_token_is_not_logged(caplog):
    caplog.set_level("DEBUG")
    client, _ = make(httpx.Response(200, json=job_json()))
    client.job("demo", "j1")
    assert caplog.records and TOKEN not in caplog.text


def test_submit_reads_a_path_and_names_the_job_after_the_file(tmp_path):
    path = tmp_path / "train.ipynb"
    path.write_text(json.dumps(NOTEBOOK))
    client, rec = make(httpx.Response(201, json=job_json()))
    job = client.submit(
        "demo", str(path), parameters={"alpha": "0.5"}, resources=Resources(cpus=2, custom={"node2": 1}),
        timeout_s=60, max_retries=2,
    )
    assert isinstance(job, Job) and job.status is JobStatus.QUEUED
    assert rec.requests[0].method == "POST" and rec.requests[0].url.path.endswith("/api/v1/projects/demo/jobs")
    assert rec.body == {
        "notebook": NOTEBOOK, "name": "train.ipynb", "parameters": {"alpha": "0.5"},
        "resources": {"cpus": 2.0, "gpus": 0.0, "custom": {"node2": 1.0}}, "timeout_s": 60, "max_retries": 2,
    }


def test_submit_of_json_sends_only_what_was_given():
    client, rec = make(httpx.Response(201, json=job_json()))
    client.submit("demo", NOTEBOOK, resources={"gpus": 1}, name="adhoc", kernel_name="python3")
    assert rec.body == {
        "notebook": NOTEBOOK, "name": "adhoc", "parameters": {}, "resources": {"gpus": 1},
        "max_retries": 0, "kernel_name": "python3",
    }


@pytest.mark.parametrize(
    "content, match",
    [pytest.param(None, "does not exist", id="missing"), pytest.param("{not json", "invalid JSON", id="not-json"),
     pytest.param("[1]", "JSON object", id="not-an-object")],
)
def test_submit_of_a_bad_file_is_invalid_input_before_any_request(tmp_path, content, match):
    path = tmp_path / "nb.ipynb"
    if content is not None:
        path.write_text(content)
    client, rec = make(httpx.Response(201, json=job_json()))
    with pytest.raises(InvalidInput, match=match) as caught:
        client.submit("demo", path)
    assert caught.value.details == {"field": "notebook"} and rec.requests == []


def test_jobs_filters_by_status_and_limit():
    client, rec = make(httpx.Response(200, json=[job_json("j2"), job_json("j1")]))
    jobs = client.jobs("demo", status="running", limit=5)
    assert [j.id for j in jobs] == ["j2", "j1"]
    assert dict(rec.requests[0].url.params) == {"limit": "5", "status": "RUNNING"}
    with pytest.raises(InvalidInput, match="unknown job status 'DONE'"):
        client.jobs("demo", status="DONE")


def test_logs_output_cancel_and_delete_schedule():
    client, rec = make(
        httpx.Response(200, text="cell 1\n"),
        httpx.Response(200, json=NOTEBOOK, headers={"content-type": "application/x-ipynb+json"}),
        httpx.Response(200, json=job_json(status="CANCELLED")),
        httpx.Response(204),
    )
    assert client.logs("demo", "j1") == "cell 1\n"
    assert client.output("demo", "j1") == NOTEBOOK
    assert client.cancel("demo", "j1").status is JobStatus.CANCELLED
    assert client.delete_schedule("demo", "s1") is None
    assert [(r.method, r.url.path.removeprefix("/services/loopml/api/v1")) for r in rec.requests] == [
        ("GET", "/projects/demo/jobs/j1/logs"),
        ("GET", "/projects/demo/jobs/j1/output"),
        ("POST", "/projects/demo/jobs/j1/cancel"),
        ("DELETE", "/projects/demo/schedules/s1"),
    ]


def test_requeue_sends_only_the_overrides():
    client, rec = make(httpx.Response(201, json=job_json("j2", trigger="requeue", parent_id="j1")))
    job = client.requeue("demo", "j1", parameters={"alpha": "1"}, max_retries=1)
    assert job.parent_id == "j1"
    assert rec.body == {"parameters": {"alpha": "1"}, "max_retries": 1}


def test_create_schedule_wraps_the_job_in_a_template(tmp_path):
    path = tmp_path / "train.ipynb"
    path.write_text(json.dumps(NOTEBOOK))
    client, rec = make(httpx.Response(201, json=schedule_json()), httpx.Response(200, json=[schedule_json()]))
    schedule = client.create_schedule("demo", "0 3 * * *", path, parameters={"n": "3"})
    assert isinstance(schedule, Schedule)
    assert rec.body == {
        "name": None, "cron": "0 3 * * *",
        "template": {"notebook": NOTEBOOK, "name": "train.ipynb", "parameters": {"n": "3"}, "max_retries": 0},
    }
    assert [s.id for s in client.schedules("demo")] == ["s1"]


def test_projects_are_models_and_update_sends_only_changes():
    from loopml.projects import Project

    client, rec = make(httpx.Response(200, json=[project_json()]), httpx.Response(200, json=project_json()))
    projects = client.projects()
    assert [p.name for p in projects] == ["demo"] and isinstance(projects[0], Project)
    project = client.update_project("demo", clear_quota=True)
    assert isinstance(project, Project)
    assert rec.requests[-1].method == "PATCH" and rec.body == {"clear_quota": True}
    client.create_project("new", members=("bob",))
    assert rec.body == {"name": "new", "members": ["bob"], "max_concurrent_jobs": None}


def test_wait_polls_until_terminal_and_reports_every_poll():
    client, rec = make(
        httpx.Response(200, json=job_json(status="QUEUED")),
        httpx.Response(200, json=job_json(status="RUNNING", done=1, total=3)),
        httpx.Response(200, json=job_json(status="RUNNING", done=2, total=3)),
        httpx.Response(200, json=job_json(status="SUCCEEDED", done=3, total=3)),
        httpx.Response(500, json={"message": "must not be polled after the end"}),
    )
    seen: list[tuple[str, int]] = []
    job = client.wait("demo", "j1", poll_s=0, on_update=lambda j: seen.append((j.status.value, j.progress.cells_done)))
    assert job.status is JobStatus.SUCCEEDED
    assert seen == [("QUEUED", 0), ("RUNNING", 1), ("RUNNING", 2), ("SUCCEEDED", 3)]
    assert len(rec.requests) == 4


def test_wait_gives_up_after_timeout_and_the_job_keeps_running():
    client, _ = make(httpx.Response(200, json=job_json(status="RUNNING")))
    with pytest.raises(LoopMLError, match="did not finish within 0.05 s") as caught:
        client.wait("demo", "j1", timeout=0.05, poll_s=0.01)
    assert caught.value.reason == "timeout"


def test_wait_rides_out_a_short_outage_but_not_a_long_one(monkeypatch):
    client, _ = make(
        httpx.ConnectError("restarting"),
        httpx.Response(200, json=job_json(status="FAILED", error={"reason": "cell_error"})),
    )
    assert client.wait("demo", "j1", poll_s=0).status is JobStatus.FAILED
    monkeypatch.setattr(client_module, "WAIT_OUTAGE_S", 0.0)
    client, _ = make(httpx.ConnectError("down"))
    with pytest.raises(Unavailable):
        client.wait("demo", "j1", poll_s=0.001)


def test_listings_are_read_page_by_page_until_a_short_page():
    from loopml.paging import DEFAULT_LIMIT, MAX_LIMIT

    assert (client_module.FIRST_PAGE, client_module.PAGE) == (DEFAULT_LIMIT, MAX_LIMIT)  # the routes' own
    pages = [[project_json(f"p{i}") for i in range(start, start + size)]
             for start, size in ((0, DEFAULT_LIMIT), (DEFAULT_LIMIT, MAX_LIMIT), (DEFAULT_LIMIT + MAX_LIMIT, 3))]
    client, rec = make(*(httpx.Response(200, json=page) for page in pages))

    assert len(client.project_names()) == DEFAULT_LIMIT + MAX_LIMIT + 3
    assert [dict(r.url.params) for r in rec.requests] == [
        {}, {"limit": str(MAX_LIMIT), "offset": str(DEFAULT_LIMIT)},
        {"limit": str(MAX_LIMIT), "offset": str(DEFAULT_LIMIT + MAX_LIMIT)}]
