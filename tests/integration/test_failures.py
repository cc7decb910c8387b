"""How jobs fail: each case against the real platform, Ray and MLflow."""

from __future__ import annotations

import time

import psutil
from mlflow.tracking import MlflowClient

from loopml.executor.models import JobStatus
from tests.integration.notebooks import SLOW, notebook
from tests.integration.processes import kernel_pid, kernel_process, wait_for


def test_raising_cell_fails_with_its_cell_and_keeps_partial_output(platform, alice, project):
    nb = notebook("print('before')", "raise ValueError('bad value')", "print('never')")
    job = alice.wait(project, alice.submit(project, nb, max_retries=2).id, timeout=120)
    assert job.status == JobStatus.FAILED and job.attempt == 1  # a cell error is not retried
    assert (job.error.reason, job.error.cell_index, job.error.ename, job.error.evalue) == (
        "cell_error", 1, "ValueError", "bad value")
    cells = [c for c in alice.output(project, job.id)["cells"] if c["cell_type"] == "code"]
    assert cells[0]["outputs"][0]["text"] == "before\n" and cells[2]["outputs"] == []
    run = MlflowClient(platform.state()["urls"]["mlflow"]).get_run(job.mlflow_run_id)
    assert run.info.status == "FAILED"


def test_cancel_stops_the_job_and_its_kernel_within_5_s(alice, project):
    job = alice.submit(project, SLOW, parameters={"seconds": 60})
    kernel_pid(alice, project, job.id)
    pid = kernel_process(job.id, 1).pid  # the host's pid: the kernel sees its sandbox's
    started = time.monotonic()
    cancelled = alice.cancel(project, job.id)
    if cancelled.status != JobStatus.CANCELLED:
        cancelled = alice.wait(project, job.id, timeout=5)
    assert cancelled.status == JobStatus.CANCELLED
    assert time.monotonic() - started <= 5.0
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, timeout=3)


def test_timeout_fails_the_job_with_reason_timeout(alice, project):
    job = alice.wait(project, alice.submit(project, SLOW, parameters={"seconds": 60}, timeout_s=2).id, timeout=60)
    assert job.status == JobStatus.FAILED and job.error.reason == "timeout"
    assert (job.finished_at - job.started_at).total_seconds() < 10


def test_quota_keeps_extra_jobs_queued_until_a_slot_frees(admin, alice, project):
    admin.update_project(project, max_concurrent_jobs=1)
    first = alice.submit(project, SLOW, parameters={"seconds": 2})
    second = alice.submit(project, notebook("print('second')"))
    waiting = wait_for(lambda: (j := alice.job(project, second.id)).message and "free slot" in j.message and j)
    assert waiting.status == JobStatus.QUEUED
    first_done = alice.wait(project, first.id, timeout=120)
    second_done = alice.wait(project, second.id, timeout=120)
    assert second_done.status == JobStatus.SUCCEEDED
    assert second_done.started_at >= first_done.finished_at


def test_job_needing_resources_the_cluster_lacks_stays_queued_with_why(alice, project):
    job = alice.submit(project, notebook("print(1)"), resources={"cpus": 1, "custom": {"tpu_pod": 1}})
    waiting = wait_for(lambda: (j := alice.job(project, job.id)).message and "tpu_pod" in j.message and j,
                       timeout=15)
    assert waiting.status == JobStatus.QUEUED and "no node" in waiting.message
    assert alice.cancel(project, job.id).status == JobStatus.CANCELLED
