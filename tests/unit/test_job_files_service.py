"""JobService and a job's files and outputs: input files kept in the job's run and sent with its
attempt, outputs stored in the job, output files logged to the run (MLflow is a fake that
keeps artifacts in memory; the DB is real)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Mapping

import pytest

from loopml.errors import InvalidInput, NotFound, Unavailable
from loopml.executor.models import JobRequeue, JobStatus, JobSubmit
from loopml.executor.service import JobService
from tests.unit.test_service import (  # noqa: F401 (fixtures)
    NOTEBOOK,
    FakeBackend,
    FakeTracking,
    backend,
    db,
    finished,
    follow,
    record,
    service,
    settings,
    submit,
)


class ArtifactTracking(FakeTracking):
    """FakeTracking that keeps the artifacts logged to each run."""

    def __init__(self) -> None:
        super().__init__()
        self.artifacts: dict[tuple[str, str], bytes] = {}
        self.log_error: Exception | None = None
        self.download_error: Exception | None = None

    def log_files(self, run_id: str, files: Mapping[str, bytes], *, prefix: str = "outputs") -> None:
        self.calls.append(("log_files", {"run_id": run_id, "paths": sorted(files), "prefix": prefix}))
        if self.log_error is not None:
            raise self.log_error
        self.artifacts.update({(run_id, f"{prefix}/{path}"): data for path, data in files.items()})

    def download_files(self, run_id: str, paths: Iterable[str], *, prefix: str = "outputs") -> dict[str, bytes]:
        if self.download_error is not None:
            raise self.download_error
        found = {}
        for path in paths:
            if (run_id, f"{prefix}/{path}") not in self.artifacts:
                raise NotFound(f"run {run_id} has no file {path!r} under {prefix}/")
            found[path] = self.artifacts[(run_id, f"{prefix}/{path}")]
        return found


@pytest.fixture
def tracking() -> ArtifactTracking:
    return ArtifactTracking()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def dispatch_with_files(service: JobService, backend: FakeBackend) -> list[str]:
    """One pass of the dispatch loop as it runs: specs get their input files before they are submitted."""
    async def one_pass() -> list[str]:
        for spec, options, timeout_s in await asyncio.to_thread(service._next_to_dispatch):
            spec = await asyncio.to_thread(service._with_input_files, spec)
            if spec is not None:
                await backend.submit(spec, options, timeout_s)
        return [s["spec"].key for s in backend.submitted]

    return asyncio.run(one_pass())


def test_input_files_go_to_the_run_and_travel_with_the_attempt(service: JobService, tracking: ArtifactTracking,
                                                              backend: FakeBackend) -> None:
    job = submit(service, files={"data/train.csv": b64(b"a,b\n")}, output_files=["model.pkl"])

    assert (job.input_files, job.output_files, job.outputs) == (["data/train.csv"], ["model.pkl"], {})
    assert tracking.artifacts == {(job.mlflow_run_id, "inputs/data/train.csv"): b"a,b\n"}
    dispatch_with_files(service, backend)
    [sent] = backend.submitted
    assert sent["spec"].files == {"data/train.csv": b"a,b\n"}
    assert sent["spec"].output_files == ("model.pkl",)
    assert sent["spec"].max_files_bytes == 100 * 2**20


def test_raw_bytes_from_the_platform_join_the_base64_ones(service: JobService, tracking: ArtifactTracking) -> None:
    job = service.submit("alice", "demo", JobSubmit(
        notebook=NOTEBOOK, files={"a.txt": b64(b"a")}), files={"b/c.txt": b"c"})
    assert job.input_files == ["a.txt", "b/c.txt"]
    with pytest.raises(InvalidInput, match="'a.txt' is given twice"):
        service.submit("alice", "demo", JobSubmit(
            notebook=NOTEBOOK, files={"a.txt": b64(b"a")}), files={"./a.txt": b"again"})
    with pytest.raises(InvalidInput, match="'..'"):
        service.submit("alice", "demo", JobSubmit(notebook=NOTEBOOK),
                       files={"../x": b""})


def test_input_files_over_the_cap_are_refused_naming_the_setting(service: JobService,
                                                                 tracking: ArtifactTracking) -> None:
    service.settings = service.settings.model_copy(update={"max_job_files_mb": 0.001})
    with pytest.raises(InvalidInput, match=r"max_job_files_mb") as raised:
        submit(service, files={"big.bin": b64(b"x" * 2000)})
    assert raised.value.details["field"] == "files"
    assert tracking.called("start_run") == []  # refused before anything was created


def test_a_job_mlflow_would_not_take_the_files_of_is_refused_whole(service: JobService,
                                                                   tracking: ArtifactTracking) -> None:
    tracking.log_error = ConnectionError("down")
    with pytest.raises(Unavailable, match="input files"):
        submit(service, files={"a.txt": b64(b"a")})
    assert len(tracking.called("delete_run")) == 1
    assert service.list("demo") == []


def test_outputs_are_stored_and_output_files_logged_when_the_attempt_ends(
        service: JobService, tracking: ArtifactTracking, backend: FakeBackend) -> None:
    job = submit(service, output_files=["model.pkl"])
    dispatch_with_files(service, backend)
    follow(service, backend, record(job, "succeeded", **finished("succeeded"), outputs={"accuracy": 0.93},
                                    files={"model.pkl": b"\x00m"}))

    done = service.get("demo", job.id)
    assert (done.status, done.outputs) == (JobStatus.SUCCEEDED, {"accuracy": 0.93})
    assert tracking.artifacts[(job.mlflow_run_id, "outputs/model.pkl")] == b"\x00m"
    calls = [name for name, _ in tracking.calls]
    assert calls.index("log_files") < calls.index("finish_run")  # logged before the run is closed


def test_a_failed_attempt_keeps_what_it_set_and_says_why_outputs_failed(
        service: JobService, tracking: ArtifactTracking, backend: FakeBackend) -> None:
    job = submit(service, output_files=["model.pkl"])
    dispatch_with_files(service, backend)
    why = "the notebook did not write its declared output file(s) 'model.pkl' (output_files)"
    follow(service, backend, record(job, "failed", **finished("failed"), outputs={"partial": 1},
                                    error={"reason": "outputs", "message": why}))

    done = service.get("demo", job.id)
    assert (done.status, done.outputs, done.message, done.error.reason) == (JobStatus.FAILED, {"partial": 1},
                                                                            why, "outputs")


def test_output_files_mlflow_refuses_make_a_succeeded_attempt_a_system_failure(
        service: JobService, tracking: ArtifactTracking, backend: FakeBackend) -> None:
    job = submit(service, output_files=["model.pkl"], max_retries=1)
    dispatch_with_files(service, backend)
    tracking.log_error = ConnectionError("down")
    follow(service, backend, record(job, "succeeded", **finished("succeeded"), files={"model.pkl": b"m"}))

    retried = service.get("demo", job.id)
    assert (retried.status, retried.attempt) == (JobStatus.QUEUED, 2)
    assert "output files could not be stored in MLflow" in retried.message


def test_a_requeue_gets_the_same_input_files_and_declared_outputs(service: JobService,
                                                                  tracking: ArtifactTracking) -> None:
    job = submit(service, files={"x.csv": b64(b"1\n")}, output_files=["y.csv"])
    again = service.requeue("alice", "demo", job.id, JobRequeue())
    assert (again.input_files, again.output_files) == (["x.csv"], ["y.csv"])
    assert tracking.artifacts[(again.mlflow_run_id, "inputs/x.csv")] == b"1\n"


def test_a_job_whose_input_files_mlflow_cannot_send_waits_then_runs(
        service: JobService, tracking: ArtifactTracking, backend: FakeBackend) -> None:
    job = submit(service, files={"x.csv": b64(b"1\n")})
    tracking.download_error = Unavailable("MLflow is down")
    assert dispatch_with_files(service, backend) == []
    waiting = service.get("demo", job.id)
    assert waiting.status == JobStatus.QUEUED and "waiting for MLflow" in waiting.message

    tracking.download_error = None
    assert dispatch_with_files(service, backend) == [f"{job.id}:1"]


def test_a_job_whose_run_lost_its_input_files_fails(service: JobService, tracking: ArtifactTracking,
                                                    backend: FakeBackend) -> None:
    job = submit(service, files={"x.csv": b64(b"1\n")})
    tracking.artifacts.clear()
    assert dispatch_with_files(service, backend) == []
    failed = service.get("demo", job.id)
    assert (failed.status, failed.error.reason) == (JobStatus.FAILED, "system")
    assert "'x.csv'" in failed.message
