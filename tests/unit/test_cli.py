"""The ``loopml`` command against an in-process fake REST API: no platform, no Ray."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from loopml.cli import main
from loopml.client import Client
from tests.unit.payloads import NOTEBOOK, job_json, loop_json

pytestmark = pytest.mark.usefixtures("no_ambient_config")
HEAVY = ("ray", "mlflow", "papermill", "pandas", "fastapi", "sqlalchemy")


@dataclass
class FakePlatform:
    """The REST routes the CLI uses, answering from plain data; ``fail`` answers every call with an error."""

    projects: list[str] = field(default_factory=lambda: ["demo"])
    jobs: list[dict[str, Any]] = field(default_factory=list)
    # statuses GET /jobs/{id} walks through, one per poll; the last one repeats
    polls: list[dict[str, Any]] = field(default_factory=list)
    loop: dict[str, Any] = field(default_factory=loop_json)
    fail: tuple[int, dict[str, Any]] | None = None
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail:
            return httpx.Response(self.fail[0], json=self.fail[1])
        route = f"{request.method} {request.url.path.removeprefix('/api/v1')}"
        project = {"name": "demo", "members": ["alice"], "max_concurrent_jobs": 2, "created_at": "2025-01-01T10:00:00Z"}
        answers = [
            (r"GET /projects", lambda: [project | {"name": n} for n in self.projects]),
            (r"GET /projects/([^/]+)", lambda p: project | {"name": p}),
            (r"GET /projects/([^/]+)/loop", lambda p: self.loop | {"project": p}),
            (r"PATCH /projects/([^/]+)", lambda p: project | {"name": p} | self.body()),
            (r"POST /projects/([^/]+)/jobs", lambda p: (201, job_json(project=p))),
            (r"GET /projects/[^/]+/jobs", lambda: self.jobs),
            (r"GET /projects/[^/]+/jobs/([^/]+)", lambda j: self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]),
            (r"GET /projects/[^/]+/jobs/[^/]+/logs", lambda: "line 1\nline 2\n"),
            (r"GET /projects/[^/]+/jobs/[^/]+/output", lambda: NOTEBOOK),
            (r"POST /projects/[^/]+/jobs/([^/]+)/cancel", lambda j: job_json(j, status="CANCELLED")),
            (r"POST /projects/[^/]+/jobs/([^/]+)/requeue", lambda j: (201, job_json("j2", parent_id=j, trigger="requeue"))),
            (r"DELETE /projects/[^/]+/schedules/[^/]+", lambda: (204, None)),
        ]
        for pattern, answer in answers:
            match = re.fullmatch(pattern, route)
            if match:
                result = answer(*match.groups())
                status, body = result if isinstance(result, tuple) else (200, result)
                if isinstance(body, str):
                    return httpx.Response(status, text=body)
                return httpx.Response(status) if body is None else httpx.Response(status, json=body)
        return httpx.Response(404, json={"message": f"no route {route}", "reason": "not_found"})

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def client(platform) -> Client:
    return Client("http://fake", "tok", transport=httpx.MockTransport(platform))


@pytest.fixture
def notebook(tmp_path) -> Path:
    path = tmp_path / "train.ipynb"
    path.write_text(json.dumps(NOTEBOOK))
    return path


def test_submit_sends_p_values_as_text_split_on_the_first_equals(run, platform, notebook):
    result = run("submit", str(notebook), "-p", "alpha=0.5", "-p", "query=a=b", "-p", "empty=", "--cpus", "2",
                 "--resource", "node2=1", "--timeout", "60", "--retries", "1")
    assert result.exit_code == 0, result.output
    assert "submitted job j1 (train.ipynb) to project demo: QUEUED" in result.stdout
    body = platform.body()
    assert body["parameters"] == {"alpha": "0.5", "query": "a=b", "empty": ""}
    assert body["resources"] == {"cpus": 2.0, "custom": {"node2": 1.0}}
    assert (body["name"], body["timeout_s"], body["max_retries"]) == ("train.ipynb", 60.0, 1)


@pytest.mark.parametrize("bad", ["noequals", "=value"])
def test_a_p_without_key_equals_value_is_a_usage_error(run, platform, notebook, bad):
    result = run("submit", str(notebook), "-p", bad)
    assert result.exit_code == 2
    assert "is not KEY=VALUE" in result.stderr
    assert platform.requests == []


def test_the_only_project_is_the_default(run, platform):
    platform.jobs = [job_json()]
    result = run("jobs", "list")
    assert result.exit_code == 0, result.output
    assert platform.requests[-1].url.path == "/api/v1/projects/demo/jobs"


def test_several_projects_without_p_is_a_usage_error_listing_them(run, platform):
    platform.projects = ["alpha", "beta"]
    result = run("jobs", "list")
    assert result.exit_code == 2
    assert "several projects (alpha, beta)" in result.stderr and "-P/--project" in result.stderr
    assert run("jobs", "list", "-P", "beta").exit_code == 0


def test_loopml_project_env_is_used_without_asking_the_server(run, platform, monkeypatch):
    platform.projects = ["alpha", "beta"]
    monkeypatch.setenv("LOOPML_PROJECT", "beta")
    assert run("jobs", "list").exit_code == 0
    assert [r.url.path for r in platform.requests] == ["/api/v1/projects/beta/jobs"]


def test_a_platform_error_is_one_line_on_stderr_and_exit_1(run, platform):
    platform.fail = (403, {"message": "user 'bob' is not a member of project 'demo'", "reason": "forbidden"})
    result = run("jobs", "show", "j1", "-P", "demo")
    assert result.exit_code == 1
    assert result.stderr == "error: user 'bob' is not a member of project 'demo'\n"
    assert result.stdout == "" and "Traceback" not in result.output


def test_no_configured_platform_is_one_line_too():
    result = CliRunner().invoke(main, ["jobs", "list", "-P", "demo"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no loopml platform configured: run `loopml up`")
    assert result.stderr.count("\n") == 1


def test_jobs_list_table_and_json(run, platform):
    platform.jobs = [job_json("j2", status="RUNNING", done=3, total=5), job_json("j1", status="SUCCEEDED", done=5, total=5)]
    table = run("jobs", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "STATUS", "PROGRESS", "ATTEMPT", "TRIGGER", "CREATED"]
    assert table[1].split()[:6] == ["j2", "train.ipynb", "RUNNING", "3/5", "1", "user"]
    data = json.loads(run("jobs", "list", "--json").stdout)
    assert [j["id"] for j in data] == ["j2", "j1"] and data[0]["progress"] == {"cells_done": 3, "cells_total": 5}


def test_jobs_list_passes_the_status_filter(run, platform):
    assert run("jobs", "list", "--status", "failed").exit_code == 0
    assert platform.requests[-1].url.params["status"] == "FAILED"


def test_jobs_show_json_is_the_model_dump(run, platform):
    platform.polls = [job_json(status="FAILED", error={"reason": "cell_error", "cell_index": 2, "ename": "ValueError",
                                                       "evalue": "bad alpha"})]
    data = json.loads(run("jobs", "show", "j1", "--json").stdout)
    assert data["status"] == "FAILED" and data["error"]["ename"] == "ValueError"
    text = run("jobs", "show", "j1").stdout
    assert re.search(r"^failed cell: +2$", text, re.M) and "ValueError: bad alpha" in text


@pytest.mark.parametrize(
    "final, code", [pytest.param("SUCCEEDED", 0, id="succeeded-exit-0"), pytest.param("FAILED", 1, id="failed-exit-1"),
                    pytest.param("CANCELLED", 1, id="cancelled-exit-1")],
)
def test_submit_wait_shows_progress_and_exits_0_only_on_success(run, platform, notebook, final, code):
    platform.polls = [job_json(status="RUNNING", done=1, total=2), job_json(status=final, done=2, total=2)]
    result = run("submit", str(notebook), "--wait")
    assert result.exit_code == code, result.output
    assert f"job j1 {final} (2/2 cells)" in result.stdout
    assert "RUNNING" in result.stderr and "2/2" in result.stderr  # the tqdm bar


def test_requeue_merges_p_and_can_wait_with_json(run, platform):
    platform.polls = [job_json("j2", status="SUCCEEDED", done=1, total=1)]
    result = run("jobs", "requeue", "j1", "-p", "alpha=2", "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert platform.body(1) == {"parameters": {"alpha": "2"}}
    assert json.loads(result.stdout)["id"] == "j2"


def test_jobs_logs_output_cancel(run, platform, tmp_path):
    assert run("jobs", "logs", "j1").stdout == "line 1\nline 2\n"
    target = tmp_path / "out.ipynb"
    result = run("jobs", "output", "j1", "-o", str(target))
    assert result.stdout.strip() == str(target) and json.loads(target.read_text()) == NOTEBOOK
    assert "CANCELLED" in run("jobs", "cancel", "j1").stdout


def test_projects_and_schedules(run, platform, notebook):
    assert run("projects", "list").stdout.splitlines()[1].split()[:3] == ["demo", "alice", "2"]
    assert json.loads(run("projects", "show", "--json").stdout)["name"] == "demo"
    result = run("schedules", "delete", "s1")
    assert result.exit_code == 0 and platform.requests[-1].method == "DELETE"
    updated = run("projects", "update", "demo", "--member", "bob", "--remove-member", "alice", "--no-quota")
    assert updated.exit_code == 0, updated.output
    assert platform.body() == {"members": ["bob"], "clear_quota": True}
    assert "updated project demo: members bob" in updated.stdout
    assert run("projects", "update", "demo", "--max-concurrent-jobs", "2", "--no-quota").exit_code == 2


def test_projects_show_says_where_the_project_stands_in_the_loop(run, platform):
    platform.loop = loop_json(code_submitted={"kind": "job", "id": "j3", "detail": "train.ipynb, RUNNING"},
                              trained={"kind": "job", "id": "j1", "detail": "train.ipynb, SUCCEEDED"},
                              versioned={"note": "cannot be told now: the MLflow server did not answer"})
    result = run("projects", "show", "demo")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "loop:                reached trained" in lines
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["STAGE", "REACHED", "BY", "WHEN"]
    rows = {line[:len("model code submitted")].strip(): line for line in table[1:]}
    assert list(rows) == ["workspace opened", "model code submitted", "trained", "versioned", "live", "monitored",
                          "feedback received"]
    assert "yes" in rows["trained"] and "job j1 (train.ipynb, SUCCEEDED)" in rows["trained"]
    assert rows["model code submitted"].split()[3:6] == ["yes", "job", "j3"]
    assert rows["versioned"].split()[1] == "no" and "cannot be told now: the MLflow server" in rows["versioned"]
    assert rows["live"].split() == ["live", "no", "-", "-"]
    shown = json.loads(run("projects", "show", "--json").stdout)
    assert shown["name"] == "demo" and shown["loop"]["furthest"] == "trained"
    assert [s["name"] for s in shown["loop"]["stages"]][:2] == ["workspace_opened", "code_submitted"]


def test_a_project_without_a_stage_says_so(run):
    assert "loop:                no stage reached yet" in run("projects", "show").stdout.splitlines()


def test_up_prints_each_step_then_how_to_connect_without_the_token(monkeypatch, tmp_path):
    from loopml.launcher import UpResult

    calls: list[Any] = []

    def up(settings, *, on_step=None):
        calls.append(settings)
        on_step("started Ray head")
        return UpResult(url="http://127.0.0.1:9000", admin_token="tok-123", client_config=tmp_path / "client.json",
                        how_to_authenticate="the CLI uses ~/.loopml/client.json", ray_address="auto",
                        mlflow_url="http://127.0.0.1:5050", logs=tmp_path / "logs", started=["platform"],
                        ray_env={"RAY_AUTH_MODE": "token"})

    fake = types.SimpleNamespace(up=up, down=lambda home: ["ray"], status=lambda home: {"ray": {"pid": 1}})
    monkeypatch.setitem(sys.modules, "loopml.launcher", fake)
    monkeypatch.setattr("loopml.launcher", fake, raising=False)
    result = CliRunner().invoke(main, ["up", "--data-dir", str(tmp_path), "--port", "9000", "--ray-address", "auto"])
    assert result.exit_code == 0, result.output
    assert "headless" not in result.stdout and "  started Ray head" in result.stdout
    assert calls[0].hub
    assert "http://127.0.0.1:9000" in result.stdout and "client.json" in result.stdout
    assert "tok-123" not in result.stdout and "export RAY_AUTH_MODE=token" in result.stdout
    assert (calls[0].port, calls[0].ray_address, calls[0].home) == (9000, "auto", tmp_path.resolve())
    assert "(headless: no hub)" in CliRunner().invoke(main, ["up", "--no-hub"]).stdout and not calls[-1].hub
    assert CliRunner().invoke(main, ["down"]).stdout == "stopped ray\n"


def test_status_reports_local_processes_and_an_unreachable_platform(monkeypatch):
    fake = types.SimpleNamespace(status=lambda home: {"ray": {"pid": 42, "running": True}})
    monkeypatch.setitem(sys.modules, "loopml.launcher", fake)
    monkeypatch.setattr("loopml.launcher", fake, raising=False)
    client = Client("http://fake", "t", transport=httpx.MockTransport(lambda r: (_ for _ in ()).throw(httpx.ConnectError("no"))))
    result = CliRunner().invoke(main, ["status", "--json"], obj=client)
    data = json.loads(result.stdout)
    assert result.exit_code == 1
    assert data["local"] == {"ray": {"pid": 42, "running": True}} and data["platform"] is None
    assert "cannot reach the platform" in data["error"]
    healthy = {"platform": {"ok": True}, "ray": {"ok": True, "address": "x"}}
    client = Client("http://fake", "t", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=healthy)))
    result = CliRunner().invoke(main, ["status"], obj=client)
    assert result.exit_code == 0 and re.search(r"^ray +ok +x$", result.stdout, re.M), result.stdout


def test_status_reads_as_tables_in_human_units(monkeypatch):
    """Ray's resources in GiB with what is free, its per-node markers left out, no key=value dumps."""
    local = {"ray": {"state": "running", "pid": 42, "url": "http://127.0.0.1:8265", "log": "/d/logs/ray.log",
                     "env": {"RAY_AUTH_MODE": "token"}},
             "mlflow": {"state": "stopped", "pid": None, "url": None, "log": None}}
    fake = types.SimpleNamespace(status=lambda home: local)
    monkeypatch.setitem(sys.modules, "loopml.launcher", fake)
    monkeypatch.setattr("loopml.launcher", fake, raising=False)
    ray = {"ok": True, "address": "127.0.0.1:6379", "nodes": 1,
           "resources": {"CPU": 2.0, "memory": 17139404800.0, "node:__internal_head__": 1.0, "node:127.0.0.1": 1.0},
           "available": {"CPU": 1.5, "memory": 8 * 2**30, "node:__internal_head__": 0.999}}
    answer = {"platform": {"ok": True, "url": "http://127.0.0.1:9000", "user": "ana", "admin": True}, "ray": ray,
              "mlflow": {"ok": False, "error": "no answer within 5 s"}, "db": {"ok": True, "backend": "sqlite"}}
    client = Client("http://fake", "t", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=answer)))
    result = CliRunner().invoke(main, ["status"], obj=client)
    out = result.stdout
    assert result.exit_code == 1, out  # mlflow is down
    assert re.search(r"^PROCESS +STATE +PID +URL +LOG$", out, re.M) and re.search(r"^ray +running +42 ", out, re.M)
    assert re.search(r"^mlflow +stopped +- +- +-$", out, re.M), out
    assert "Ray drivers connect with: export RAY_AUTH_MODE=token" in out
    assert re.search(r"^ray +ok +127.0.0.1:6379; 1 node; CPU 1.5 of 2 free, memory 8.0 GiB of 16.0 GiB free$", out, re.M), out
    assert re.search(r"^platform +ok +http://127.0.0.1:9000 as ana \(admin\)$", out, re.M), out
    assert re.search(r"^mlflow +DOWN +no answer within 5 s$", out, re.M) and re.search(r"^db +ok +sqlite$", out, re.M)
    assert "node:" not in out and "=" not in out.replace("RAY_AUTH_MODE=token", "")


LAZY_CHECK = """
import sys, httpx
from loopml.cli import main
from loopml.client import Client
project = {"name": "demo", "members": [], "max_concurrent_jobs": None, "created_at": "2025-01-01T00:00:00Z"}
answer = lambda r: httpx.Response(200, json=[project] if r.url.path.endswith("/projects") else [])
client = Client("http://fake", "t", transport=httpx.MockTransport(answer))
for args in (["--help"], ["jobs", "list"]):
    try:
        main(args, obj=client, standalone_mode=False)
    except SystemExit:
        pass
heavy = sorted(m for m in %r if m in sys.modules)
assert not heavy, heavy
"""


def test_help_and_jobs_list_do_not_import_heavy_packages():
    check = subprocess.run([sys.executable, "-c", LAZY_CHECK % (HEAVY,)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "ID  NAME" in check.stdout


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    """`loopml ... | head`: output into a pipe nobody reads any more is no error line."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        done = subprocess.run([str(Path(sys.executable).with_name("loopml")), "status", "--data-dir", str(tmp_path)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert "Broken pipe" not in done.stderr and "error:" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
