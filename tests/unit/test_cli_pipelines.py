"""``loopml pipelines …`` against an in-process fake REST API: no platform, no Ray.

The fake answers ``validate`` with the platform's real checks (:func:`loopml.executor.pipelines.validate`
on the uploaded files), so the refusals the CLI prints are the platform's own; runs are plain data.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from loopml.cli import main
from loopml.cli.common import Caller, Listing
from loopml.cli.pipelines import LiveSteps
from loopml.client import Client
from loopml.errors import InvalidInput
from loopml.executor import PipelineCheck, PipelineRun, read_pipeline
from loopml.executor.pipelines import direct_upstream, validate
from tests.unit.payloads import NOTEBOOK

pytestmark = pytest.mark.usefixtures("no_ambient_config")
NOW = "2025-01-01T10:00:00Z"
ELYRA = Path(__file__).parent / "pipelines" / "wine.pipeline"
RETRAIN = """\
name: retrain
parameters: {C: 1.0, q: x}
steps:
  prepare: {notebook: prepare.ipynb, dependencies: ["data/*.csv"]}
  train: {notebook: train.ipynb, after: [prepare]}
  evaluate: {notebook: evaluate.ipynb, after: [train]}
"""


def step_json(step_id: str, status: str = "QUEUED", *, after: tuple[str, ...] = (), kind: str = "notebook",
              **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "kind": kind, "after": list(after), "status": status} | fields


def run_json(status: str = "RUNNING", steps: list[dict[str, Any]] | None = None, run_id: str = "r1",
             **fields: Any) -> dict[str, Any]:
    data = {
        "id": run_id, "project": "demo", "user": "alice", "name": "retrain", "source_name": "retrain.pipeline.yaml",
        "status": status, "attempt": 1, "parameters": {"C": 1.0}, "no_cache": False, "mlflow_run_id": "m1",
        "created_at": NOW, "updated_at": NOW, "finished_at": None,
        "steps": steps if steps is not None else [step_json("prepare", "RUNNING", job_id="j1"),
                                                   step_json("train", after=("prepare",))],
    }
    return PipelineRun.model_validate(data | fields).model_dump(mode="json")


@dataclass
class FakePipelines:
    """The pipeline routes of project ``demo``: ``validate`` runs the real checks, a run answers
    ``started``, then ``polls`` one per ``GET`` (the last repeats)."""

    started: dict[str, Any] = field(default_factory=run_json)
    polls: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = f"{request.method} {request.url.path.removeprefix('/api/v1')}"
        if route == "GET /projects":
            return httpx.Response(200, json=[{"name": "demo", "members": [], "max_concurrent_jobs": None,
                                              "created_at": NOW}])
        if route == "POST /projects/demo/pipelines/validate":
            return self.check(json.loads(request.content))
        if route == "POST /projects/demo/pipelines":
            return httpx.Response(201, json=self.started)
        if route == "GET /projects/demo/pipelines":
            return httpx.Response(200, json=self.runs)
        match = re.fullmatch(r"(GET|POST) /projects/demo/pipelines/([^/]+)(/cancel|/retry)?", route)
        if match and match[3] == "/cancel":
            return httpx.Response(200, json=run_json("CANCELLED", run_id=match[2]))
        if match and match[3] == "/retry":
            return httpx.Response(200, json=run_json("RUNNING", run_id=match[2], attempt=2))
        if match:
            return httpx.Response(200, json=self.polls.pop(0) if len(self.polls) > 1 else self.polls[0])
        return httpx.Response(404, json={"message": f"no route {route}", "reason": "not_found"})

    @staticmethod
    def check(body: dict[str, Any]) -> httpx.Response:
        files = {name: base64.b64decode(content) for name, content in body["files"].items()}
        try:
            pipeline = validate(read_pipeline(body["source_name"], body["content"]), files)
        except InvalidInput as exc:
            return httpx.Response(422, json=exc.to_json())
        graph = direct_upstream(pipeline)
        check = PipelineCheck(name=pipeline.name, parameters=pipeline.parameters, ignored=pipeline.ignored,
                              steps=[{"id": step_id, "kind": step.kind, "after": graph[step_id], "status": "QUEUED"}
                                     for step_id, step in pipeline.steps.items()])
        return httpx.Response(200, json=check.model_dump(mode="json"))

    def body(self, method: str = "POST") -> dict[str, Any]:
        return json.loads(next(r for r in reversed(self.requests) if r.method == method).content)


@pytest.fixture
def platform() -> FakePipelines:
    return FakePipelines()


@pytest.fixture
def client(platform) -> Client:
    return Client("http://fake", "tok", transport=httpx.MockTransport(platform))


@pytest.fixture
def folder(tmp_path) -> Path:
    """A pipeline's folder: its notebooks, dependency files, an unrelated file and two symlinks
    whose targets lie outside it (one matched by the glob, one named by a step)."""
    root = tmp_path / "work"
    (root / "data").mkdir(parents=True)
    for name in ("prepare.ipynb", "train.ipynb", "evaluate.ipynb"):
        (root / name).write_text(json.dumps(NOTEBOOK))
    (root / "data" / "a.csv").write_text("x\n1\n")
    (root / "data" / "b.csv").write_text("x\n2\n")
    (root / "notes.txt").write_text("not named by any step")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "key.csv").write_text("secret")
    (root / "data" / "leak.csv").symlink_to(outside / "key.csv")
    (root / "secret.txt").symlink_to(outside / "key.csv")
    (root / "retrain.pipeline.yaml").write_text(RETRAIN)
    return root


# -- run ------------------------------------------------------------------------------------


def test_run_sends_p_and_no_cache_and_only_the_files_its_steps_name(run, platform, folder):
    result = run("pipelines", "run", str(folder / "retrain.pipeline.yaml"), "-p", "C=2", "-p", "q=a=b", "--no-cache")
    assert result.exit_code == 0, result.output
    body = platform.body()
    assert (body["source_name"], body["content"]) == ("retrain.pipeline.yaml", RETRAIN)
    assert body["parameters"] == {"C": "2", "q": "a=b"} and body["no_cache"] is True
    # the notebooks and the glob's matches; not notes.txt, nor what a symlink leads out to
    assert sorted(body["files"]) == ["data/a.csv", "data/b.csv", "evaluate.ipynb", "prepare.ipynb", "train.ipynb"]
    assert base64.b64decode(body["files"]["data/b.csv"]) == b"x\n2\n"
    assert result.stdout.splitlines() == ["started pipeline run r1 (retrain) in project demo: RUNNING",
                                          "follow it with `loopml pipelines show r1 -P demo`"]


def test_a_symlink_out_of_the_folder_that_a_step_names_is_not_sent_so_the_platform_refuses_it(run, platform, folder):
    (folder / "retrain.pipeline.yaml").write_text(RETRAIN.replace("after: [prepare]}",
                                                                  "after: [prepare], dependencies: [secret.txt]}"))
    result = run("pipelines", "validate", str(folder / "retrain.pipeline.yaml"))
    assert "secret.txt" not in platform.body()["files"]
    assert result.exit_code == 1
    assert result.stderr == ("error: retrain.pipeline.yaml: step 'train': dependencies.0: 'secret.txt' is not among "
                             "the pipeline's files, and no upstream step declares it in outputs\n")


def test_run_without_flags_keeps_the_cache_and_the_pipelines_parameters(run, platform, folder):
    assert run("pipelines", "run", str(folder / "retrain.pipeline.yaml"), "-P", "demo").exit_code == 0
    assert platform.body()["parameters"] == {} and platform.body()["no_cache"] is False


def test_a_p_without_key_equals_value_is_a_usage_error(run, platform, folder):
    result = run("pipelines", "run", str(folder / "retrain.pipeline.yaml"), "-p", "C")
    assert result.exit_code == 2 and "is not KEY=VALUE" in result.stderr
    assert platform.requests == []


def test_timeout_without_wait_is_a_usage_error(run, folder):
    result = run("pipelines", "run", str(folder / "retrain.pipeline.yaml"), "--timeout", "5")
    assert result.exit_code == 2 and "--timeout limits --wait" in result.stderr


FINISHED = [
    step_json("prepare", "CACHED", job_id="j0", files={"data/train.csv": {"sha256": "ab"}}),
    step_json("train", "SUCCEEDED", after=("prepare",), job_id="j2", outputs={"accuracy": 0.93},
              children=[{"index": 0, "parameters": {"C": 0.1}, "status": "SUCCEEDED", "job_id": "j2", "value": 0.93},
                        {"index": 1, "parameters": {"C": 1}, "status": "SUCCEEDED", "job_id": "j3", "value": 0.9}]),
    step_json("deploy", "SKIPPED", after=("train",), kind="deploy", message="steps.train.outputs.accuracy is 0.93"),
]
POLLS = [
    run_json(steps=[step_json("prepare", "CACHED", job_id="j0", files={"data/train.csv": {"sha256": "ab"}}),
                    step_json("train", "RUNNING", after=("prepare",),
                              children=[{"index": 0, "parameters": {"C": 0.1}, "status": "RUNNING", "job_id": "j2"},
                                        {"index": 1, "parameters": {"C": 1}, "status": "RUNNING", "job_id": "j3"}]),
                    step_json("deploy", after=("train",), kind="deploy")]),
    run_json(steps=[FINISHED[0], FINISHED[1] | {"status": "RUNNING", "job_id": None, "outputs": {},
                                                "children": [FINISHED[1]["children"][0],
                                                             FINISHED[1]["children"][1] | {"status": "RUNNING"}]},
                    step_json("deploy", after=("train",), kind="deploy")]),
    run_json("SUCCEEDED", steps=FINISHED),
]


def test_run_wait_prints_one_line_per_step_change_when_not_a_tty(run, platform, folder):
    platform.started = run_json(steps=[step_json("prepare", "RUNNING", job_id="j1"),
                                       step_json("train", after=("prepare",)),
                                       step_json("deploy", after=("train",), kind="deploy")])
    platform.polls = list(POLLS)
    result = run("pipelines", "run", str(folder / "retrain.pipeline.yaml"), "--wait")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "started pipeline run r1 (retrain) in project demo: RUNNING",
        "prepare: RUNNING (job j1)",
        "prepare: CACHED (job j0): files: data/train.csv",
        "train: RUNNING: 2 children, 0 done",
        "train: RUNNING: 2 children, 1 done",
        "train: SUCCEEDED (job j2): 2 children, picked #0 · accuracy=0.93",
        "deploy: SKIPPED: steps.train.outputs.accuracy is 0.93",
    ]
    assert result.stdout == "pipeline run r1 SUCCEEDED (3/3 steps done)\n"
    assert "\x1b[" not in result.output


@pytest.mark.parametrize("final", ["FAILED", "CANCELLED"])
def test_run_wait_exits_1_with_one_error_line_naming_the_failed_steps(run, platform, folder, final):
    platform.polls = [run_json(final, steps=[
        step_json("prepare", "SUCCEEDED", job_id="j1"),
        step_json("train", final, after=("prepare",), job_id="j2", message="cell 3: ValueError: C must be > 0"),
        step_json("evaluate", "SKIPPED", after=("train",), message="step 'train' did not succeed"),
    ])]
    result = run("pipelines", "run", str(folder / "retrain.pipeline.yaml"), "--wait")
    assert result.exit_code == 1, result.output
    assert result.stdout == f"pipeline run r1 {final} (2/3 steps done)\n"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: pipeline run r1 {final}: step 'train' {final} (job j2): cell 3: ValueError: C must be > 0"]
    assert result.stderr.endswith(errors[0] + "\n") and "Traceback" not in result.output


def test_run_wait_json_prints_only_the_run_on_stdout(run, platform, folder):
    platform.polls = [run_json("FAILED", steps=[step_json("prepare", "FAILED", job_id="j1", message="boom")])]
    result = run("pipelines", "run", str(folder / "retrain.pipeline.yaml"), "--wait", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "FAILED"
    assert result.stderr.splitlines()[-1] == "error: pipeline run r1 FAILED: step 'prepare' FAILED (job j1): boom"


def test_run_wait_timeout_is_one_error_line(run, platform, folder):
    platform.polls = [run_json()]
    result = run("pipelines", "run", str(folder / "retrain.pipeline.yaml"), "--wait", "--timeout", "0.01")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "error: pipeline run r1 did not finish within 0.01 s; it keeps running"


def test_the_magic_gets_the_run_and_no_progress_lines(platform, client, folder):
    platform.polls = [run_json("SUCCEEDED", steps=FINISHED)]
    caller = Caller(connect=lambda: client, progress=False)
    result = CliRunner().invoke(main, ["pipelines", "run", str(folder / "retrain.pipeline.yaml"), "--wait"],
                                obj=caller, standalone_mode=False)
    assert result.exception is None, result.output
    assert isinstance(result.return_value, PipelineRun) and result.return_value.status == "SUCCEEDED"
    assert ":" not in result.stderr.replace("started pipeline run r1 (retrain) in project demo: RUNNING", "")


def test_on_a_tty_the_step_table_is_redrawn_in_place():
    stream = io.StringIO()
    live = LiveSteps(stream, tty=True)
    live.update(PipelineRun.model_validate(POLLS[0]))
    first = stream.getvalue()
    assert first.splitlines() == [
        "retrain r1: RUNNING, 1/3 steps done",
        "STEP     STATUS   JOB  DETAILS",
        "prepare  CACHED   j0   files: data/train.csv",
        "train    RUNNING  -    2 children, 0 done",
        "deploy   QUEUED   -",
    ]
    live.update(PipelineRun.model_validate(POLLS[2]))
    again = stream.getvalue()[len(first):]
    assert again.startswith("\x1b[5F\x1b[J")  # up to the first line drawn, then clear to the end
    assert again.splitlines()[0].endswith("retrain r1: SUCCEEDED, 3/3 steps done")


# -- validate -------------------------------------------------------------------------------


def test_validate_prints_the_steps_in_the_order_they_would_run(run, folder):
    result = run("pipelines", "validate", str(folder / "retrain.pipeline.yaml"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == ["retrain.pipeline.yaml: pipeline retrain is valid, 3 steps", "parameters: C=1.0, q=x"]
    assert [line.split() for line in lines[2:]] == [
        ["STAGE", "STEP", "KIND", "AFTER"], ["1", "prepare", "notebook", "-"], ["2", "train", "notebook", "prepare"],
        ["3", "evaluate", "notebook", "train"]]


def test_validate_an_elyra_file_lists_its_ignored_properties(run, tmp_path):
    shutil.copy(ELYRA, tmp_path / "wine.pipeline")
    for name in ("load_data.ipynb", "train.ipynb"):
        (tmp_path / name).write_text(json.dumps(NOTEBOOK))
    (tmp_path / "scripts").mkdir()
    for name in ("wine.csv", "scripts/report.py", "scripts/report_template.md"):
        (tmp_path / name).write_text("x")
    result = run("pipelines", "validate", str(tmp_path / "wine.pipeline"))
    assert result.exit_code == 0, result.output
    assert "ignored: node 'train': kubernetes_tolerations, runtime_image" in result.stdout.splitlines()
    assert re.search(r"^3 +write-report +script +train$", result.stdout, re.M), result.stdout


def test_validate_prints_each_of_the_platforms_problems_on_its_own_error_line(run, folder):
    (folder / "retrain.pipeline.yaml").write_text(RETRAIN.replace("after: [prepare]", "after: [prepar]")
                                                  .replace("notebook: evaluate.ipynb", "notebook: evaluat.ipynb"))
    result = run("pipelines", "validate", str(folder / "retrain.pipeline.yaml"))
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: retrain.pipeline.yaml: step '") for line in lines), lines
    assert "step 'train': after:" in lines[0] and "prepar" in lines[0]
    assert "step 'evaluate': notebook:" in lines[1] and "evaluat.ipynb" in lines[1]


def test_a_file_the_reader_refuses_lists_each_problem_before_anything_is_sent(run, platform, folder):
    (folder / "bad.pipeline.yaml").write_text("name: r\nsteps:\n  a: {notebook: a.ipynb, afterr: []}\n"
                                              "  b: {notebok: b.ipynb}\n")
    result = run("pipelines", "run", str(folder / "bad.pipeline.yaml"), "-P", "demo")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("error: bad.pipeline.yaml: step 'a': afterr: unknown key 'afterr'")
    assert lines[1].startswith("error: bad.pipeline.yaml: step 'b': notebok: unknown key 'notebok'")
    assert platform.requests == []


def test_one_problem_stays_the_usual_one_line_error(run, folder):
    (folder / "retrain.pipeline.yaml").write_text(RETRAIN.replace("after: [prepare]", "after: [prepar]"))
    result = run("pipelines", "validate", str(folder / "retrain.pipeline.yaml"), "--json")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


def test_validate_json_is_the_check(run, folder):
    data = json.loads(run("pipelines", "validate", str(folder / "retrain.pipeline.yaml"), "--json").stdout)
    assert data["name"] == "retrain" and [s["id"] for s in data["steps"]] == ["prepare", "train", "evaluate"]


# -- list, show, cancel, retry ----------------------------------------------------------------


def test_list_table_json_and_listing(run, platform, client):
    platform.runs = [run_json("SUCCEEDED", steps=FINISHED, run_id="r2"), run_json(run_id="r1")]
    result = run("pipelines", "list", "--limit", "5")
    assert platform.requests[-1].url.params["limit"] == "5"
    table = result.stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "STATUS", "STEPS", "CREATED", "USER"]
    assert table[1].split()[:4] == ["r2", "retrain", "SUCCEEDED", "3/3"] and table[1].split()[-1] == "alice"
    assert table[2].split()[:4] == ["r1", "retrain", "RUNNING", "0/2"]
    assert [r["id"] for r in json.loads(run("pipelines", "list", "--json").stdout)] == ["r2", "r1"]
    listed = CliRunner().invoke(main, ["pipelines", "list"], obj=client,
                                standalone_mode=False).return_value
    assert isinstance(listed, Listing) and listed.project == "demo" and [r.id for r in listed.items] == ["r2", "r1"]


def test_show_prints_the_fields_then_the_steps_with_outputs_and_children(run, platform):
    platform.polls = [run_json("SUCCEEDED", steps=FINISHED, ignored=["node 'a': runtime_image"], no_cache=True)]
    text = run("pipelines", "show", "r1").stdout
    assert re.search(r"^status: +SUCCEEDED$", text, re.M) and re.search(r"^steps done: +3/3$", text, re.M)
    assert re.search(r"^parameters: +C=1.0$", text, re.M) and re.search(r"^cache: +off", text, re.M)
    assert re.search(r"^ignored: +node 'a': runtime_image$", text, re.M)
    assert re.search(r"^STEP +KIND +STATUS +AFTER +JOB +DETAILS$", text, re.M)
    assert re.search(r"^train +notebook +SUCCEEDED +prepare +j2 +2 children, picked #0 · accuracy=0.93$", text, re.M)
    assert re.search(r"^  train #0 +child +SUCCEEDED +j2 +C=0.1 · value 0.93 · picked$", text, re.M), text
    assert re.search(r"^  train #1 +child +SUCCEEDED +j3 +C=1 · value 0.9$", text, re.M)
    assert re.search(r"^deploy +deploy +SKIPPED +train +- +steps.train.outputs.accuracy is 0.93$", text, re.M)
    assert json.loads(run("pipelines", "show", "r1", "--json").stdout)["steps"][1]["children"][0]["value"] == 0.93


def test_cancel_and_retry(run, platform):
    cancelled = run("pipelines", "cancel", "r1")
    assert cancelled.stdout == "pipeline run r1 CANCELLED (0/2 steps done)\n"
    assert platform.requests[-1].url.path == "/api/v1/projects/demo/pipelines/r1/cancel"
    platform.polls = [run_json("SUCCEEDED", steps=FINISHED)]
    retried = run("pipelines", "retry", "r1", "--wait")
    assert retried.exit_code == 0, retried.output
    assert "retrying pipeline run r1 (attempt 2): RUNNING" in retried.stderr
    assert retried.stdout == "pipeline run r1 SUCCEEDED (3/3 steps done)\n"


def test_a_run_that_ended_cannot_be_cancelled_is_one_error_line():
    def ended(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"message": "pipeline run r1 ended already (SUCCEEDED)", "reason": "conflict"})

    client = Client("http://fake", "tok", transport=httpx.MockTransport(ended))
    result = CliRunner().invoke(main, ["pipelines", "cancel", "r1", "-P", "demo"], obj=client)
    assert result.exit_code == 1 and result.stderr == "error: pipeline run r1 ended already (SUCCEEDED)\n"
