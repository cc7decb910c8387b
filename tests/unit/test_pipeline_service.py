"""PipelineService on a real SQLite DB with the real JobService; MLflow (artifacts kept in memory)
and the job backend are the fakes at the edge. Jobs end when a test reports their attempt, as the
backend would; :func:`poll` is one pass of the driver loop."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import nbformat
import pytest
from nbformat import v4

from loopml.db import Database
from loopml.errors import Conflict, InvalidInput, NotFound
from loopml.executor.models import JobFailure, JobStatus, Trigger
from loopml.executor.pipelines.models import PipelineRun
from loopml.executor.pipelines.orm import PipelineRunRow
from loopml.executor.pipelines.run_state import RunStatus, StepStatus
from loopml.executor.pipelines.service import PipelineService
from loopml.executor.service import JobService
from loopml.registry import tags as tag
from tests.unit.test_job_files_service import ArtifactTracking
from tests.unit.test_service import (  # noqa: F401 (fixtures)
    KERNELSPEC,
    FakeBackend,
    backend,
    db,
    finished,
    follow,
    record,
    service,
    settings,
)

PIPELINE = """
name: demo-pipe
parameters: {threshold: 0.5}
steps:
  prepare: {notebook: prepare.ipynb, outputs: [data.csv]}
  train:
    notebook: train.ipynb
    parameters: {rows: "{{ steps.prepare.outputs.rows }}"}
  gate:
    notebook: train.ipynb
    when: "steps.train.outputs.accuracy >= params.threshold"
"""


def notebook(*cells: str, parameters: str | None = None) -> bytes:
    nb = v4.new_notebook(metadata=KERNELSPEC)
    if parameters is not None:
        nb.cells.append(v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells += [v4.new_code_cell(cell) for cell in cells]
    return nbformat.writes(nb).encode()


FILES = {"prepare.ipynb": notebook("open('data.csv', 'w').write('a\\n')"),
         "train.ipynb": notebook("print(rows)", parameters="rows = 0")}


class PipelineTracking(ArtifactTracking):
    """The fake MLflow of the job tests, with the pipeline runs' calls."""

    def start_pipeline_run(self, **fields: Any) -> str:
        self.calls.append(("start_pipeline_run", fields))
        return f"prun-{fields['pipeline_run_id']}"

    def end_pipeline_run(self, run_id: str, status: str) -> None:
        self.calls.append(("end_pipeline_run", {"run_id": run_id, "status": status}))

    def reopen_pipeline_run(self, run_id: str) -> None:
        self.calls.append(("reopen_pipeline_run", {"run_id": run_id}))


@pytest.fixture
def tracking() -> PipelineTracking:
    return PipelineTracking()


@pytest.fixture
def pipelines(settings, db: Database, service: JobService, tracking: PipelineTracking) -> PipelineService:
    return PipelineService(settings, db, service, tracking)


def start(pipelines: PipelineService, content: str = PIPELINE, files: dict[str, bytes] | None = None,
          **options: Any) -> PipelineRun:
    return asyncio.run(pipelines.run("alice", "demo", "demo.pipeline.yaml", content,
                                     FILES if files is None else files, **options))


def poll(pipelines: PipelineService, run: PipelineRun) -> PipelineRun:
    asyncio.run(pipelines.poll())
    return pipelines.get("demo", run.id)


def steps(run: PipelineRun) -> dict[str, StepStatus]:
    return {step.id: step.status for step in run.steps}


def job_of(run: PipelineRun, step_id: str) -> str:
    return next(step.job_id for step in run.steps if step.id == step_id)


def end_job(jobs: JobService, backend: FakeBackend, job_id: str, state: str = "succeeded", **fields: Any) -> None:
    follow(jobs, backend, record(jobs.get("demo", job_id), state, **finished(state, **fields)))


def test_a_run_launches_the_ready_steps_and_finishing_jobs_moves_it_on(
        pipelines: PipelineService, service: JobService, backend: FakeBackend, tracking: PipelineTracking) -> None:
    run = start(pipelines)

    assert (run.status, steps(run)) == (RunStatus.RUNNING, {"prepare": StepStatus.RUNNING, "train": StepStatus.QUEUED,
                                                            "gate": StepStatus.QUEUED})
    assert run.mlflow_run_id == f"prun-{run.id}"
    [opened] = tracking.called("start_pipeline_run")
    assert (opened["name"], opened["source"], opened["parameters"]) == ("demo-pipe", "demo.pipeline.yaml",
                                                                         {"threshold": 0.5})
    assert tracking.artifacts[(run.mlflow_run_id, "pipeline/train.ipynb")] == FILES["train.ipynb"]
    prepare = service.get("demo", job_of(run, "prepare"))
    assert (prepare.trigger, prepare.name, prepare.output_files) == (Trigger.PIPELINE, "demo-pipe/prepare",
                                                                     ["data.csv"])
    [job_run] = tracking.called("start_run")
    assert job_run["parent_run_id"] == run.mlflow_run_id
    assert job_run["tags"] == {tag.PIPELINE_RUN_ID: run.id, tag.PIPELINE_STEP: "prepare"}

    end_job(service, backend, prepare.id, outputs={"rows": 3}, files={"data.csv": b"a\n"})
    run = poll(pipelines, run)
    assert steps(run)["prepare"] == StepStatus.SUCCEEDED
    [prepared] = [step for step in run.steps if step.id == "prepare"]
    assert prepared.files["data.csv"].run_id == prepare.mlflow_run_id
    train = service.get("demo", job_of(run, "train"))
    assert (train.parameters, train.input_files) == ({"rows": 3}, ["data.csv"])
    assert tracking.artifacts[(train.mlflow_run_id, "inputs/data.csv")] == b"a\n"  # passed on through MLflow

    end_job(service, backend, train.id, outputs={"accuracy": 0.2})
    run = poll(pipelines, run)
    assert (run.status, steps(run)["gate"]) == (RunStatus.SUCCEEDED, StepStatus.SKIPPED)
    assert "condition is false" in run.steps[2].message
    assert run.finished_at is not None
    assert tracking.called("end_pipeline_run") == [{"run_id": run.mlflow_run_id, "status": "SUCCEEDED"}]
    assert pipelines.list("demo") == [run]


def test_the_state_survives_a_new_service_and_the_new_one_goes_on(
        settings, db: Database, pipelines: PipelineService, service: JobService, backend: FakeBackend,
        tracking: PipelineTracking) -> None:
    run = start(pipelines)
    end_job(service, backend, job_of(run, "prepare"), outputs={"rows": 3}, files={"data.csv": b"a\n"})

    restarted = PipelineService(settings, db, service, tracking)  # fetches the pipeline's files from MLflow
    run = poll(restarted, run)
    assert steps(run) == {"prepare": StepStatus.SUCCEEDED, "train": StepStatus.RUNNING, "gate": StepStatus.QUEUED}
    assert service.get("demo", job_of(run, "train")).parameters == {"rows": 3}


def test_a_step_half_started_when_the_platform_stopped_fails_and_retry_restarts_it(
        settings, db: Database, pipelines: PipelineService, service: JobService, tracking: PipelineTracking) -> None:
    run = start(pipelines)
    with db.session() as session:  # as if the process died between storing the state and the job's id
        row = session.get(PipelineRunRow, run.id)
        state = json.loads(row.state)
        state["steps"]["prepare"]["job_id"] = None
        row.state = json.dumps(state)

    run = poll(PipelineService(settings, db, service, tracking), run)
    assert (run.status, steps(run)["prepare"]) == (RunStatus.FAILED, StepStatus.FAILED)
    assert "the platform restarted" in run.steps[0].message


def test_cancel_cancels_the_running_jobs_and_ends_the_run(
        pipelines: PipelineService, service: JobService, tracking: PipelineTracking) -> None:
    run = start(pipelines)
    cancelled = asyncio.run(pipelines.cancel("bob", "demo", run.id))

    assert (cancelled.status, set(steps(cancelled).values())) == (RunStatus.CANCELLED, {StepStatus.CANCELLED})
    assert service.get("demo", job_of(run, "prepare")).status == JobStatus.CANCELLED
    assert tracking.called("end_pipeline_run") == [{"run_id": run.mlflow_run_id, "status": "CANCELLED"}]
    with pytest.raises(Conflict, match="already ended"):
        asyncio.run(pipelines.cancel("bob", "demo", run.id))
    with pytest.raises(NotFound, match="does not exist in project 'demo'"):
        asyncio.run(pipelines.cancel("bob", "demo", "nope"))


def test_retry_reruns_only_the_failed_step_and_keeps_what_succeeded(
        pipelines: PipelineService, service: JobService, backend: FakeBackend, tracking: PipelineTracking) -> None:
    run = start(pipelines)
    prepare_job = job_of(run, "prepare")
    end_job(service, backend, prepare_job, outputs={"rows": 3}, files={"data.csv": b"a\n"})
    run = poll(pipelines, run)
    with pytest.raises(Conflict, match="this one is RUNNING"):
        asyncio.run(pipelines.retry("alice", "demo", run.id))
    failed_job = job_of(run, "train")
    end_job(service, backend, failed_job, "failed",
            error=JobFailure(reason="cell_error", cell_index=1, ename="ValueError", evalue="boom"))
    run = poll(pipelines, run)
    assert (run.status, steps(run)) == (RunStatus.FAILED, {"prepare": StepStatus.SUCCEEDED,
                                                           "train": StepStatus.FAILED, "gate": StepStatus.SKIPPED})
    assert "ValueError: boom" in run.steps[1].message

    again = asyncio.run(pipelines.retry("alice", "demo", run.id))
    assert (again.status, again.attempt) == (RunStatus.RUNNING, 2)
    assert job_of(again, "prepare") == prepare_job
    assert job_of(again, "train") not in (None, failed_job)
    assert steps(again)["gate"] == StepStatus.QUEUED
    assert tracking.called("reopen_pipeline_run") == [{"run_id": run.mlflow_run_id}]
    assert again.finished_at is None


def test_a_rerun_with_the_same_inputs_is_served_from_the_cache(
        pipelines: PipelineService, service: JobService, backend: FakeBackend) -> None:
    run = start(pipelines)
    end_job(service, backend, job_of(run, "prepare"), outputs={"rows": 3}, files={"data.csv": b"a\n"})
    run = poll(pipelines, run)
    end_job(service, backend, job_of(run, "train"), outputs={"accuracy": 0.9})
    run = poll(pipelines, run)
    end_job(service, backend, job_of(run, "gate"), outputs={"accuracy": 0.9})
    assert poll(pipelines, run).status == RunStatus.SUCCEEDED
    jobs = len(service.list("demo"))

    cached = start(pipelines)
    assert (cached.status, set(steps(cached).values())) == (RunStatus.SUCCEEDED, {StepStatus.CACHED})
    assert cached.steps[0].files == run.steps[0].files
    assert len(service.list("demo")) == jobs
    uncached = start(pipelines, no_cache=True)
    assert steps(uncached)["prepare"] == StepStatus.RUNNING
    changed = start(pipelines, files={**FILES, "prepare.ipynb": notebook("print('other')")})
    assert steps(changed)["prepare"] == StepStatus.RUNNING  # another notebook, another key


@pytest.mark.parametrize(("content", "files", "expected"), [
    pytest.param(PIPELINE.replace('rows: "{{ steps.prepare.outputs.rows }}"', "epochs: 3"), FILES,
                 r"step 'train': parameters\.epochs: 'train.ipynb' defines no parameter 'epochs'", id="parameter"),
    pytest.param(PIPELINE, {"prepare.ipynb": FILES["prepare.ipynb"]}, r"step 'train': notebook: 'train.ipynb' is not",
                 id="missing-notebook"),
    pytest.param(PIPELINE.replace("when: \"steps.train", "when: \"steps.trian"), FILES,
                 r"step 'gate': when: steps\.trian\.outputs\.accuracy: there is no step 'trian'", id="reference"),
    pytest.param(PIPELINE.replace("  prepare: {", "  prepare: {retries: 2, "), FILES,
                 r"step 'prepare': retries: unknown key 'retries' \(did you mean 'max_retries'\?\)", id="unknown-key"),
])
def test_a_bad_pipeline_is_refused_naming_the_step_and_field_and_creates_nothing(
        pipelines: PipelineService, tracking: PipelineTracking, content: str, files: dict[str, bytes],
        expected: str) -> None:
    with pytest.raises(InvalidInput, match=expected) as refused:
        start(pipelines, content, files)
    assert refused.value.details["problems"][0]["step"] is not None
    assert tracking.called("start_pipeline_run") == []
    assert pipelines.list("demo") == []


def test_an_unknown_override_is_refused(pipelines: PipelineService) -> None:
    with pytest.raises(InvalidInput, match="unknown pipeline parameter 'thresold'"):
        start(pipelines, overrides={"thresold": "0.1"})
    run = start(pipelines, overrides={"threshold": "0.1"})
    assert run.parameters == {"threshold": 0.1}


def test_a_script_step_runs_as_a_one_cell_notebook_with_its_environment(
        pipelines: PipelineService, service: JobService, tracking: PipelineTracking) -> None:
    content = """
name: scripted
steps:
  clean: {script: tools/clean.py, env: {MODE: fast}, dependencies: [tools/lib.py]}
"""
    files = {"tools/clean.py": b"import lib\nprint(lib.X)\n", "tools/lib.py": b"X = 1\n"}
    run = start(pipelines, content, files)

    job = service.get("demo", job_of(run, "clean"))
    assert job.input_files == ["clean.py", "lib.py"]  # in the script's folder, its working dir
    [started] = tracking.called("start_run")
    cells = nbformat.reads(started["notebook"], as_version=4).cells
    assert "os.environ.update" in cells[0].source and '"MODE": "fast"' in cells[0].source
    assert "runpy.run_path('clean.py', run_name='__main__')" in cells[1].source


def test_a_step_whose_job_is_refused_fails_with_the_reason(pipelines: PipelineService, service: JobService) -> None:
    service.settings = service.settings.model_copy(update={"max_queued_jobs_per_project": 0})
    run = start(pipelines)
    assert (run.status, steps(run)["prepare"]) == (RunStatus.FAILED, StepStatus.FAILED)
    assert "could not be submitted" in run.steps[0].message and "max_queued_jobs_per_project" in run.steps[0].message


def test_check_answers_the_steps_as_they_would_run(pipelines: PipelineService) -> None:
    check = pipelines.check("demo", "demo.pipeline.yaml", PIPELINE, FILES)
    assert [(step.id, step.after, step.status) for step in check.steps] == [
        ("prepare", [], StepStatus.QUEUED), ("train", ["prepare"], StepStatus.QUEUED),
        ("gate", ["train"], StepStatus.QUEUED)]
    with pytest.raises(InvalidInput, match="ends with .pipeline.yaml"):
        pipelines.check("demo", "demo.json", PIPELINE, FILES)


@pytest.fixture
def api(settings, db: Database, pipelines: PipelineService):
    """The REST app (no lifespan) on these services, as alice; bob is no member of demo."""
    import warnings

    from loopml.auth import StaticTokenAuthenticator
    from loopml.projects import ProjectService
    from loopml.server.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from loopml.settings import load_settings

    settings = load_settings(data_dir=settings.data_dir, tokens={"alice-token": {"name": "alice"},
                                                                 "bob-token": {"name": "bob"}})
    app = create_app(settings)
    app.state.services.authenticator = StaticTokenAuthenticator(settings)
    app.state.services.projects = ProjectService(db)
    app.state.services.pipelines = pipelines
    return TestClient(app, raise_server_exceptions=False, headers={"Authorization": "Bearer alice-token"})


def rest_body(content: str = PIPELINE, files: dict[str, bytes] | None = None) -> dict[str, Any]:
    import base64

    return {"source_name": "demo.pipeline.yaml", "content": content,
            "files": {path: base64.b64encode(data).decode() for path, data in (files or FILES).items()}}


def test_rest_runs_shows_and_refuses_as_the_error_table_says(api, service: JobService, backend: FakeBackend) -> None:
    bad = api.post("/api/v1/projects/demo/pipelines/validate", json=rest_body(PIPELINE.replace("rows:", "epochs:")))
    assert bad.status_code == 422
    assert "step 'train': parameters.epochs" in bad.json()["message"]
    assert bad.json()["problems"][0]["step"] == "train"
    assert api.post("/api/v1/projects/demo/pipelines/validate", json=rest_body()).status_code == 200

    created = api.post("/api/v1/projects/demo/pipelines", json=rest_body())
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    assert api.get(f"/api/v1/projects/demo/pipelines/{run_id}").json()["steps"][0]["status"] == "RUNNING"
    assert [run["id"] for run in api.get("/api/v1/projects/demo/pipelines").json()] == [run_id]
    assert api.post(f"/api/v1/projects/demo/pipelines/{run_id}/retry").status_code == 409
    assert api.post(f"/api/v1/projects/demo/pipelines/{run_id}/cancel").json()["status"] == "CANCELLED"
    assert api.post(f"/api/v1/projects/demo/pipelines/{run_id}/cancel").status_code == 409
    assert api.get("/api/v1/projects/demo/pipelines/nope").status_code == 404
    assert api.get("/api/v1/projects/demo/pipelines", headers={"Authorization": "Bearer bob-token"}).status_code == 403
    refused = api.post("/api/v1/projects/demo/pipelines", json={**rest_body(), "files": {"../x": "eA=="}})
    assert refused.status_code == 422 and "'..'" in refused.json()["message"]


def test_built_in_steps_run_through_the_actions_the_platform_hands_in(
        settings, db: Database, service: JobService, tracking: PipelineTracking, backend: FakeBackend) -> None:
    calls = []

    def register(call):
        calls.append(call)
        return {"model": call.arguments["model"], "version": 7}

    def promote(call):
        calls.append(call)
        return {"model": call.arguments["model"], "version": call.registered[call.arguments["model"]],
                "alias": call.arguments["alias"]}

    pipelines = PipelineService(settings, db, service, tracking, actions={"register": register, "promote": promote})
    content = """
name: ship
steps:
  train: {notebook: train.ipynb}
  register: {register: {model: wine, run_id: "{{ steps.train.outputs.run_id }}"}}
  promote: {after: [register], promote: {model: wine, alias: champion}}
  deploy: {after: [promote], deploy: {model: wine, endpoint: wine}}
"""
    run = start(pipelines, content, {"train.ipynb": FILES["train.ipynb"]})
    end_job(service, backend, job_of(run, "train"), outputs={"run_id": "abc"})
    run = poll(pipelines, run)

    assert [(call.kind, call.arguments.get("run_id")) for call in calls] == [("register", "abc"), ("promote", None)]
    assert calls[1].registered == {"wine": 7}
    assert (calls[0].pipeline_run_id, calls[0].mlflow_run_id, calls[0].user) == (run.id, run.mlflow_run_id, "alice")
    assert steps(run) == {"train": StepStatus.SUCCEEDED, "register": StepStatus.SUCCEEDED,
                          "promote": StepStatus.SUCCEEDED, "deploy": StepStatus.FAILED}
    assert run.steps[2].outputs == {"model": "wine", "version": 7, "alias": "champion"}
    assert run.steps[3].message == "this platform runs no deploy steps"


def test_a_deploy_without_version_takes_the_version_the_picked_child_of_a_grid_registered(
        settings, db: Database, service: JobService, tracking: PipelineTracking, backend: FakeBackend,
        monkeypatch: pytest.MonkeyPatch) -> None:
    registers: dict[str, list[dict[str, Any]]] = {}  # what each job's run registers when it finishes
    monkeypatch.setattr(tracking, "finish_run", lambda run_id, status, **fields: registers.get(run_id, []))
    calls = []
    pipelines = PipelineService(settings, db, service, tracking, actions={
        "deploy": lambda call: calls.append(call) or {"model": "wine", "version": call.registered["wine"],
                                                       "endpoint": "wine"}})
    content = """
name: ship
steps:
  train: {notebook: train.ipynb, foreach: {rows: [1, 2, 3]}, select: {max: accuracy}}
  deploy: {after: [train], deploy: {model: wine, endpoint: wine}}
"""
    run = start(pipelines, content)
    [train] = [step for step in run.steps if step.id == "train"]
    for child, accuracy in zip(train.children, (0.5, 0.9, 0.7), strict=True):
        registers[service.get("demo", child.job_id).mlflow_run_id] = [
            {"name": "demo.wine", "version": child.index + 1}]
        end_job(service, backend, child.job_id, outputs={"accuracy": accuracy})
    run = poll(pipelines, run)

    assert [call.registered for call in calls] == [{"wine": 2}]  # child 1's version, not the newest (3)
    assert steps(run) == {"train": StepStatus.SUCCEEDED, "deploy": StepStatus.SUCCEEDED}
    assert run.steps[0].job_id == train.children[1].job_id


def test_the_platform_actions_take_the_version_a_register_step_of_the_run_registered() -> None:
    from loopml.executor.pipelines.actions import ActionCall
    from loopml.server.pipeline_actions import pipeline_actions

    moved = []

    class Registry:
        def set_alias(self, project, name, alias, version, *, user):
            moved.append((project, name, alias, version, user))

    promote = pipeline_actions(lambda: Registry(), lambda: None)["promote"]
    call = ActionCall(user="alice", project="demo", pipeline_run_id="r1", step="promote", kind="promote",
                      arguments={"model": "wine", "version": None, "alias": "champion"}, mlflow_run_id="m1",
                      registered={"wine": 4})
    assert promote(call) == {"model": "wine", "version": 4, "alias": "champion"}
    assert promote(ActionCall(**{**call.__dict__, "arguments": {**call.arguments, "version": "2"}}))["version"] == 2
    assert moved == [("demo", "wine", "champion", 4, "alice"), ("demo", "wine", "champion", 2, "alice")]
    with pytest.raises(InvalidInput, match="no step upstream of it registered one"):
        promote(ActionCall(**{**call.__dict__, "registered": {}}))


def test_a_rerun_runs_the_same_files_and_parameters_afresh_with_the_overrides_on_top(
        pipelines: PipelineService, tracking: PipelineTracking) -> None:
    first = start(pipelines, overrides={"threshold": 0.7})
    rerun = asyncio.run(pipelines.rerun("policy", "demo", first.id, {"threshold": 0.2}, trigger=Trigger.POLICY))
    assert (rerun.parent_id, rerun.trigger, rerun.no_cache) == (first.id, Trigger.POLICY, True)
    assert rerun.parameters == {"threshold": 0.2} and rerun.source_name == first.source_name
    def files(run: PipelineRun) -> dict[str, bytes]:
        return {path: data for (run_id, path), data in tracking.artifacts.items() if run_id == run.mlflow_run_id}

    assert files(rerun) == files(first) and len(files(first)) == 3  # the pipeline file and its two notebooks
    assert pipelines.rerun_blocking("policy", "demo", first.id).parameters == {"threshold": 0.7}
    with pytest.raises(NotFound):
        asyncio.run(pipelines.rerun("policy", "demo", "0123456789abcdef"))


def test_registered_versions_are_what_the_gate_let_through(settings, db: Database, service: JobService,
                                                            tracking: PipelineTracking, backend: FakeBackend) -> None:
    pipelines = PipelineService(settings, db, service, tracking, actions={
        "deploy": lambda call: {"model": "wine", "version": 3, "endpoint": "wine"}})
    content = """
name: ship
parameters: {min_accuracy: 0.9}
steps:
  train: {notebook: train.ipynb}
  deploy: {after: [train], when: "steps.train.outputs.accuracy >= params.min_accuracy",
           deploy: {model: wine, endpoint: wine, version: 3}}
"""
    passed = start(pipelines, content, {"train.ipynb": FILES["train.ipynb"]})
    end_job(service, backend, job_of(passed, "train"), outputs={"accuracy": 0.95})
    passed = poll(pipelines, passed)
    assert pipelines.registered_versions("demo", passed.id, "wine") == ([3], None)

    held = start(pipelines, content, {"train.ipynb": FILES["train.ipynb"]}, no_cache=True)
    end_job(service, backend, job_of(held, "train"), outputs={"accuracy": 0.5})
    held = poll(pipelines, held)
    versions, why = pipelines.registered_versions("demo", held.id, "wine")
    assert versions == [] and why.startswith("the pipeline's gate held the new version back (deploy: ")
    assert "0.5" in why


def test_a_schedule_runs_the_pipeline_at_every_tick_after_checking_it_once(
        pipelines: PipelineService, service: JobService, db: Database) -> None:
    import datetime as dt

    from loopml.executor.models import PipelineSubmit, ScheduleCreate
    from loopml.executor.orm import ScheduleRow
    from loopml.executor.schedules import ScheduleService

    schedules = ScheduleService(db, service, pipelines=pipelines)
    files = {path: base64.b64encode(data).decode() for path, data in FILES.items()}
    submit = PipelineSubmit(source_name="demo.pipeline.yaml", content=PIPELINE, files=files,
                            parameters={"threshold": "0.9"})
    created = schedules.create("alice", "demo", ScheduleCreate(cron="0 3 * * *", pipeline=submit))
    assert (created.name, created.pipeline, created.parameters) == ("demo-pipe", "demo.pipeline.yaml",
                                                                    {"threshold": "0.9"})
    with db.session() as session:  # due now
        session.get(ScheduleRow, created.id).next_run_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    [fired] = schedules.fire_due()
    run = pipelines.get("demo", fired)
    assert (run.trigger, run.parameters["threshold"], steps(run)["prepare"]) == (Trigger.SCHEDULE, 0.9,
                                                                                  StepStatus.RUNNING)
    assert schedules.get("demo", created.id).last_pipeline_run_id == run.id

    with pytest.raises(InvalidInput, match="unknown"):
        schedules.create("alice", "demo", ScheduleCreate(cron="0 3 * * *", pipeline=submit.model_copy(
            update={"parameters": {"nope": 1}})))
    with pytest.raises(InvalidInput, match="train.ipynb"):
        schedules.create("alice", "demo", ScheduleCreate(cron="0 3 * * *", pipeline=submit.model_copy(
            update={"files": {"prepare.ipynb": files["prepare.ipynb"]}})))
    with pytest.raises(ValueError, match="exactly one of template"):
        ScheduleCreate(cron="0 3 * * *")
