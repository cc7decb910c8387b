"""JobService on a real SQLite DB and real projects; only MLflow and the backend are fakes.

The background loops are driven one pass at a time: :func:`dispatch` is one pass of the
dispatch loop, :func:`follow` one pass of the update loop.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat import v4

from loopml.db import Database, migrate
from loopml.errors import Conflict, InvalidInput, NotFound, Unavailable
from loopml.executor.attempts import AttemptOptions, AttemptRecord, AttemptSpec, Updates
from loopml.executor.backend import JobBackend
from loopml.executor.models import Job, JobRequeue, JobStatus, JobSubmit, Resources, Trigger
from loopml.executor.service import JobService
from loopml.projects import ProjectCreate, ProjectService
from loopml.settings import load_settings

STARTED_AT = "2025-01-01T10:00:00+00:00"
KERNELSPEC = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
NOTEBOOK = json.loads(nbformat.writes(v4.new_notebook(metadata=KERNELSPEC, cells=[
    v4.new_code_cell("epochs = 3\nlr = 0.1\nlabel = 'baseline'", metadata={"tags": ["parameters"]}),
    v4.new_code_cell("print(epochs * lr)"),
])))
SUBMITTED = nbformat.reads(json.dumps(NOTEBOOK), as_version=4)
EXECUTED = nbformat.writes(v4.new_notebook(cells=[v4.new_code_cell("print(1)", outputs=[
    v4.new_output("stream", name="stdout", text="1\n")])]))


class FakeTracking:
    """Stands in for :class:`loopml.registry.tracking.JobTracking`; records every call."""

    tracking_uri = "http://mlflow.test"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.start_error: Exception | None = None

    def experiment_id(self, project: str) -> str:
        return f"exp-{project}"

    def start_run(self, **fields: Any) -> str:
        self.calls.append(("start_run", fields))
        if self.start_error is not None:
            raise self.start_error
        return f"run-{fields['job_id']}"

    def finish_run(self, run_id: str, status: str, *, output: str | None, log_text: str, attempt: int) -> None:
        self.calls.append(("finish_run", {"run_id": run_id, "status": status, "output": output,
                                          "log_text": log_text, "attempt": attempt}))

    def delete_run(self, run_id: str) -> None:
        self.calls.append(("delete_run", {"run_id": run_id}))

    def called(self, method: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.calls if name == method]


class FakeBackend(JobBackend):
    """Holds what it was given; ``updates`` hands out the records a test scripted."""

    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []
        self.scripted: list[AttemptRecord] = []
        self.acked: list[str] = []
        self.cancelled: list[tuple[str, int]] = []
        self.on_cancel: Callable[[str, int], None] | None = None
        self.seq = 0

    async def submit(self, spec: AttemptSpec, options: AttemptOptions, timeout_s: float | None) -> None:
        self.submitted.append({"spec": spec, "options": options, "timeout_s": timeout_s})

    async def updates(self, since: int, wait_s: float) -> Updates:
        records, self.scripted = self.scripted, []
        self.seq += len(records)
        return Updates(seq=self.seq, records=records)

    async def cancel(self, job_id: str, attempt: int) -> bool:
        self.cancelled.append((job_id, attempt))
        if self.on_cancel is not None:
            self.on_cancel(job_id, attempt)
        return True

    async def ack(self, keys: list[str]) -> None:
        self.acked.extend(keys)

    async def known(self) -> list[str]:
        held = {s["spec"].key for s in self.submitted}
        return sorted(held - set(self.acked))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.upper().startswith("LOOPML_"):
            monkeypatch.delenv(name)
    return load_settings(data_dir=tmp_path)


@pytest.fixture
def db(settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    migrate(database.engine)
    yield database
    database.engine.dispose()


@pytest.fixture
def tracking() -> FakeTracking:
    return FakeTracking()


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def service(settings, db: Database, tracking: FakeTracking, backend: FakeBackend) -> JobService:
    projects = ProjectService(db)
    projects.create(ProjectCreate(name="demo", members=["alice"]))
    projects.create(ProjectCreate(name="solo", members=["alice"], max_concurrent_jobs=1))
    return JobService(settings, db, tracking, backend)


def submit(service: JobService, project: str = "demo", **spec: Any) -> Job:
    return service.submit("alice", project, JobSubmit(notebook=spec.pop("notebook", NOTEBOOK), **spec))


def dispatch(service: JobService, backend: FakeBackend) -> list[str]:
    """One pass of the dispatch loop; returns the ``job_id:attempt`` keys handed to the backend."""
    async def one_pass() -> list[str]:
        ready = await asyncio.to_thread(service._next_to_dispatch)
        for spec, options, timeout_s in ready:
            await backend.submit(spec, options, timeout_s)
        return [spec.key for spec, _, _ in ready]

    return asyncio.run(one_pass())


def follow(service: JobService, backend: FakeBackend, *records: AttemptRecord) -> None:
    """One pass of the update loop: the backend reports ``records``, the service stores and acknowledges them."""
    backend.scripted.extend(records)

    async def one_pass() -> None:
        batch = await backend.updates(0, 0)
        await service._apply(batch.records)

    asyncio.run(one_pass())


def record(job: Job, state: str, *, attempt: int | None = None, **fields: Any) -> AttemptRecord:
    """A backend record of ``job``'s attempt, as the dispatcher reports it."""
    return AttemptRecord(job_id=job.id, attempt=attempt or job.attempt, state=state, **fields)


def finished(state: str, **fields: Any) -> dict[str, Any]:
    """Fields of a finished attempt that ran both cells."""
    return {"output": EXECUTED, "log": "1\n", "progress": {"cells_done": 2, "cells_total": 2},
            "started_at": STARTED_AT} | fields


# ---- submit -----------------------------------------------------------------------------


def test_submit_stores_a_queued_job_with_converted_parameters_and_an_open_run(
        service: JobService, tracking: FakeTracking) -> None:
    job = submit(service, parameters={"epochs": "5", "lr": "0.5"}, name="train.ipynb")

    assert (job.status, job.attempt, job.trigger, job.parent_id) == (JobStatus.QUEUED, 1, Trigger.USER, None)
    assert job.parameters == {"epochs": 5, "lr": 0.5}
    assert job.mlflow_run_id == f"run-{job.id}"
    assert service.get("demo", job.id) == job
    [run] = tracking.called("start_run")
    assert run | {"notebook": None} == {"project": "demo", "job_id": job.id, "name": "train.ipynb", "user": "alice",
                                        "trigger": "user", "parameters": {"epochs": 5, "lr": 0.5},
                                        "notebook": None, "parent_id": None}
    assert nbformat.reads(run["notebook"], as_version=4) == SUBMITTED


no_code = json.loads(nbformat.writes(v4.new_notebook(cells=[v4.new_markdown_cell("# notes")])))


@pytest.mark.parametrize(
    "notebook, parameters, field, says",
    [
        ({}, {}, "notebook", "not a valid nbformat v4 document"),
        (NOTEBOOK | {"cells": "not a list"}, {}, "notebook", "not a valid nbformat v4 document"),
        (NOTEBOOK | {"nbformat": 5}, {}, "notebook", "not a valid nbformat v4 document"),
        (NOTEBOOK | {"cells": [{"cell_type": "code"}]}, {}, "notebook", "not a valid nbformat v4 document"),
        (no_code, {}, "notebook", "no code cell"),
        (NOTEBOOK, {"epochs": "many"}, "parameters.epochs", "expects int"),
        (NOTEBOOK, {"batch": 32}, "parameters.batch", "unknown parameter 'batch'"),
    ],
    ids=["empty-document", "cells-not-a-list", "unknown-nbformat-version", "cell-without-fields", "no-code-cell",
         "wrong-parameter-type", "unknown-parameter"],
)
def test_invalid_submit_creates_nothing(service: JobService, tracking: FakeTracking, notebook: dict[str, Any],
                                        parameters: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        submit(service, notebook=notebook, parameters=parameters)

    assert says in caught.value.message
    assert caught.value.details["field"] == field
    assert tracking.calls == []
    assert service.list("demo") == []


def test_submit_refuses_a_notebook_over_the_size_limit(service: JobService, tracking: FakeTracking) -> None:
    service.settings.max_notebook_mb = 0.001

    with pytest.raises(InvalidInput, match="larger than 0.001 MiB"):
        submit(service, notebook=NOTEBOOK | {"metadata": KERNELSPEC | {"padding": "x" * 2000}})
    assert tracking.calls == []


def test_mlflow_down_leaves_no_job(service: JobService, tracking: FakeTracking) -> None:
    tracking.start_error = Unavailable("the MLflow tracking server did not answer", component="mlflow")

    with pytest.raises(Unavailable):
        submit(service)

    assert service.list("demo") == []


def test_job_that_cannot_be_stored_deletes_its_run(service: JobService, tracking: FakeTracking) -> None:
    with pytest.raises(Exception, match="FOREIGN KEY"):
        submit(service, project="ghost")

    [run] = tracking.called("start_run")
    assert tracking.called("delete_run") == [{"run_id": f"run-{run['job_id']}"}]


# ---- dispatch ---------------------------------------------------------------------------


def test_quota_dispatches_one_job_and_tells_the_other_why_it_waits(service: JobService, backend: FakeBackend) -> None:
    first, second = submit(service, project="solo"), submit(service, project="solo")
    unlimited = submit(service, project="demo")

    assert dispatch(service, backend) == [f"{first.id}:1", f"{unlimited.id}:1"]
    waiting = service.get("solo", second.id)
    assert waiting.status == JobStatus.QUEUED
    assert waiting.message == ("waiting for a free slot: project 'solo' runs at most 1 job(s) at once "
                               "(max_concurrent_jobs)")
    assert dispatch(service, backend) == []

    follow(service, backend, record(first, "succeeded", **finished("succeeded")))

    assert dispatch(service, backend) == [f"{second.id}:1"]


def test_dispatched_spec_carries_notebook_parameters_resources_and_mlflow_run(
        service: JobService, backend: FakeBackend) -> None:
    job = submit(service, parameters={"lr": "0.5"}, resources=Resources(cpus=2, gpus=0.5, memory_mb=512,
                                                                        custom={"node2": 1}), timeout_s=60)

    dispatch(service, backend)

    [given] = backend.submitted
    spec = given["spec"]
    assert (spec.job_id, spec.attempt, spec.parameters, spec.kernel_name) == (job.id, 1, {"lr": 0.5}, "python3")
    assert nbformat.reads(spec.notebook, as_version=4) == SUBMITTED
    assert {k: spec.env[k] for k in ("LOOPML_JOB_ID", "LOOPML_PROJECT", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")} == {
        "LOOPML_JOB_ID": job.id, "LOOPML_PROJECT": "demo", "MLFLOW_RUN_ID": f"run-{job.id}",
        "MLFLOW_EXPERIMENT_ID": "exp-demo"}
    assert given["options"].ray_options() == {"num_cpus": 2, "num_gpus": 0.5, "memory": 512 * 1024 * 1024,
                                              "resources": {"node2": 1}}
    assert given["timeout_s"] == 60


# ---- what the backend reports -----------------------------------------------------------


@pytest.mark.parametrize(
    "state, fields, status, error, message, run_status",
    [
        ("succeeded", {}, JobStatus.SUCCEEDED, None, "finished", "SUCCEEDED"),
        ("failed", {"error": {"reason": "cell_error", "cell_index": 1, "ename": "ValueError", "evalue": "bad lr"}},
         JobStatus.FAILED, {"reason": "cell_error", "cell_index": 1, "ename": "ValueError", "evalue": "bad lr"},
         "cell 1 raised ValueError: bad lr", "FAILED"),
        ("failed", {"error": {"reason": "kernel_died", "message": "the kernel died while running the notebook"}},
         JobStatus.FAILED, {"reason": "kernel_died", "message": "the kernel died while running the notebook"},
         "the kernel died while running the notebook", "FAILED"),
        ("timeout", {}, JobStatus.FAILED, {"reason": "timeout", "message": "stopped after timeout_s=30 s"},
         "stopped after timeout_s=30 s", "FAILED"),
        ("cancelled", {}, JobStatus.CANCELLED, None, "cancelled", "CANCELLED"),
    ],
    ids=["succeeded", "failed-cell-error", "failed-kernel-died", "timeout", "cancelled"],
)
def test_finished_attempt_sets_final_status_and_closes_the_run_with_the_output(
        service: JobService, backend: FakeBackend, tracking: FakeTracking, state: str, fields: dict[str, Any],
        status: JobStatus, error: dict[str, Any] | None, message: str, run_status: str) -> None:
    job = submit(service, timeout_s=30)
    dispatch(service, backend)

    follow(service, backend, record(job, state, **finished(state, **fields)))

    done = service.get("demo", job.id)
    assert (done.status, done.message) == (status, message)
    assert (done.error.model_dump(exclude_none=True) if done.error else None) == error
    assert (done.progress.cells_done, done.progress.cells_total) == (2, 2)
    assert done.finished_at is not None
    assert (service.output("demo", job.id), service.logs("demo", job.id)) == (EXECUTED, "1\n")
    assert tracking.called("finish_run") == [{"run_id": f"run-{job.id}", "status": run_status, "output": EXECUTED,
                                              "log_text": "1\n", "attempt": 1}]
    assert backend.acked == [f"{job.id}:1"]


def test_running_attempt_marks_the_job_running_without_closing_the_run(
        service: JobService, backend: FakeBackend, tracking: FakeTracking) -> None:
    job = submit(service)
    dispatch(service, backend)

    follow(service, backend, record(job, "running", started_at=STARTED_AT, node="node-1", log="epoch 1\n",
                                    progress={"cells_done": 1, "cells_total": 2}))

    running = service.get("demo", job.id)
    assert (running.status, running.node, running.message) == (JobStatus.RUNNING, "node-1", "running (attempt 1)")
    assert running.started_at.isoformat() == STARTED_AT
    assert (running.progress.cells_done, running.progress.cells_total) == (1, 2)
    assert service.logs("demo", job.id) == "epoch 1\n"
    assert tracking.called("finish_run") == []
    assert backend.acked == []


def test_pending_attempt_shows_why_it_waits(service: JobService, backend: FakeBackend) -> None:
    job = submit(service)
    dispatch(service, backend)

    follow(service, backend, record(job, "pending", message="waiting for free resources: needs CPU 1, free now CPU 0"))

    assert service.get("demo", job.id).message == "waiting for free resources: needs CPU 1, free now CPU 0"


def test_lost_attempt_is_retried_then_fails_as_system_error(
        service: JobService, backend: FakeBackend, tracking: FakeTracking) -> None:
    job = submit(service, max_retries=1)
    dispatch(service, backend)

    follow(service, backend, record(job, "lost", message="the runner's worker or node died (NodeDiedError)"))

    retried = service.get("demo", job.id)
    assert (retried.status, retried.attempt) == (JobStatus.QUEUED, 2)
    assert retried.message == ("attempt 1 failed: the runner's worker or node died (NodeDiedError); "
                               "retrying (attempt 2 of 2)")
    assert tracking.called("finish_run") == []
    assert backend.acked == [f"{job.id}:1"]
    assert dispatch(service, backend) == [f"{job.id}:2"]

    follow(service, backend, record(job, "lost", attempt=2, message="the runner failed: RuntimeError: boom"))

    failed = service.get("demo", job.id)
    assert (failed.status, failed.attempt) == (JobStatus.FAILED, 2)
    assert failed.error.model_dump(exclude_none=True) == {"reason": "system",
                                                          "message": "the runner failed: RuntimeError: boom"}
    assert [(c["status"], c["attempt"]) for c in tracking.called("finish_run")] == [("FAILED", 2)]


@pytest.mark.parametrize(
    "state, acked",
    [("succeeded", True), ("lost", True), ("running", False)],
    ids=["finished-is-acked", "lost-is-acked", "unfinished-is-not-acked"],
)
def test_records_of_a_stale_attempt_are_ignored(service: JobService, backend: FakeBackend, state: str,
                                                acked: bool) -> None:
    job = submit(service, max_retries=2)
    dispatch(service, backend)
    follow(service, backend, record(job, "lost", message="worker died"))
    dispatch(service, backend)
    follow(service, backend, record(job, "running", attempt=2, started_at=STARTED_AT))
    backend.acked.clear()
    before = service.get("demo", job.id)

    follow(service, backend, record(job, state, attempt=1, **finished(state)))

    assert service.get("demo", job.id) == before
    assert backend.acked == ([f"{job.id}:1"] if acked else [])


def test_records_of_an_unknown_job_are_acknowledged(service: JobService, backend: FakeBackend) -> None:
    follow(service, backend, AttemptRecord(job_id="gone", attempt=1, state="succeeded", output=EXECUTED))

    assert backend.acked == ["gone:1"]


@pytest.mark.parametrize(
    "max_retries, status, attempt",
    [(0, JobStatus.FAILED, 1), (1, JobStatus.QUEUED, 2)],
    ids=["no-retries-left", "retried"],
)
def test_dispatched_jobs_the_backend_does_not_know_are_lost(service: JobService, backend: FakeBackend,
                                                            max_retries: int, status: JobStatus, attempt: int) -> None:
    lost, held = submit(service, max_retries=max_retries), submit(service)
    dispatch(service, backend)
    queued = submit(service)

    assert service._mark_lost({f"{held.id}:1"}) == [lost.id]

    after = service.get("demo", lost.id)
    assert (after.status, after.attempt) == (status, attempt)
    assert "the runner was lost" in after.message
    assert (after.error.reason if after.error else None) == ("system" if status == JobStatus.FAILED else None)
    assert service.get("demo", held.id).status == JobStatus.QUEUED
    assert service.get("demo", queued.id).status == JobStatus.QUEUED


# ---- requeue ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, parameters, timeout_s, cpus",
    [
        (JobRequeue(), {"epochs": 5, "label": "first"}, 60, 2),
        (JobRequeue(parameters={"label": "second", "lr": "0.01"}), {"epochs": 5, "label": "second", "lr": 0.01}, 60, 2),
        (JobRequeue(timeout_s=5, resources=Resources(cpus=4)), {"epochs": 5, "label": "first"}, 5, 4),
    ],
    ids=["same-again", "parameters-merged-and-converted", "limits-overridden"],
)
def test_requeue_reruns_the_snapshot_with_overrides(service: JobService, backend: FakeBackend,
                                                    tracking: FakeTracking, change: JobRequeue,
                                                    parameters: dict[str, Any], timeout_s: float, cpus: float) -> None:
    original = submit(service, parameters={"epochs": 5, "label": "first"}, timeout_s=60, resources=Resources(cpus=2))
    dispatch(service, backend)
    follow(service, backend, record(original, "failed", **finished("failed")))

    again = service.requeue("alice", "demo", original.id, change)

    assert (again.status, again.trigger, again.parent_id) == (JobStatus.QUEUED, Trigger.REQUEUE, original.id)
    assert (again.parameters, again.timeout_s, again.resources.cpus) == (parameters, timeout_s, cpus)
    first_run, second_run = tracking.called("start_run")
    assert second_run["notebook"] == first_run["notebook"]
    assert second_run["parent_id"] == original.id


@pytest.mark.parametrize(
    "project, job_id, change, error",
    [("demo", "nope", JobRequeue(), NotFound), ("solo", None, JobRequeue(), NotFound),
     ("demo", None, JobRequeue(parameters={"epochs": "many"}), InvalidInput)],
    ids=["unknown-job", "job-of-another-project", "bad-override"],
)
def test_requeue_refusals(service: JobService, project: str, job_id: str | None, change: JobRequeue,
                          error: type[Exception]) -> None:
    original = submit(service)

    with pytest.raises(error):
        service.requeue("alice", project, job_id or original.id, change)

    assert service.list("demo") == [original]


# ---- cancel -----------------------------------------------------------------------------


def test_cancel_before_dispatch_ends_the_job_at_once(service: JobService, backend: FakeBackend,
                                                     tracking: FakeTracking) -> None:
    job = submit(service)

    cancelled = asyncio.run(service.cancel("bob", "demo", job.id))

    assert (cancelled.status, cancelled.message) == (JobStatus.CANCELLED, "cancelled by bob before it started")
    assert backend.cancelled == []
    assert [c["status"] for c in tracking.called("finish_run")] == ["CANCELLED"]
    assert dispatch(service, backend) == []


def test_cancel_of_a_running_job_stops_its_attempt(service: JobService, backend: FakeBackend) -> None:
    job = submit(service)
    dispatch(service, backend)
    follow(service, backend, record(job, "running", started_at=STARTED_AT))
    backend.on_cancel = lambda job_id, attempt: service._store([record(job, "cancelled", attempt=attempt)])

    cancelled = asyncio.run(service.cancel("alice", "demo", job.id))

    assert cancelled.status == JobStatus.CANCELLED
    assert backend.cancelled == [(job.id, 1)]


def test_attempt_lost_after_cancel_is_cancelled_not_retried(service: JobService, backend: FakeBackend) -> None:
    job = submit(service, max_retries=3)
    dispatch(service, backend)
    backend.on_cancel = lambda job_id, attempt: service._store([record(job, "lost", message="worker died")])

    cancelled = asyncio.run(service.cancel("alice", "demo", job.id))

    assert (cancelled.status, cancelled.attempt, cancelled.error) == (JobStatus.CANCELLED, 1, None)


@pytest.mark.parametrize("state", ["succeeded", "failed", "cancelled"])
def test_cancel_of_a_finished_job_is_a_conflict(service: JobService, backend: FakeBackend, state: str) -> None:
    job = submit(service)
    dispatch(service, backend)
    follow(service, backend, record(job, state, **finished(state)))

    with pytest.raises(Conflict, match=f"already ended \\({service.get('demo', job.id).status.value}\\)"):
        asyncio.run(service.cancel("alice", "demo", job.id))

    assert backend.cancelled == []
