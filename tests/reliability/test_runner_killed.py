"""The job runner (the Ray worker executing a notebook) is killed mid-job."""

from __future__ import annotations

from loopml.executor.models import JobStatus
from tests.integration.notebooks import SLOW
from tests.integration.processes import kernel_pid, runner_process, wait_for


def _printed(client, project: str, job_id: str) -> list[str]:
    return [o.get("text", "") for c in client.output(project, job_id)["cells"] for o in c.get("outputs", [])]


def test_killed_runner_is_retried_and_the_retry_succeeds(alice, project):
    job = alice.submit(project, SLOW, parameters={"seconds": 3}, max_retries=1)
    kernel_pid(alice, project, job.id)
    runner_process(job.id, 1).kill()
    done = alice.wait(project, job.id, timeout=120)
    assert done.status == JobStatus.SUCCEEDED and done.attempt == 2
    log = alice.logs(project, job.id)
    assert "attempt 1 failed: the runner's worker or node died" in log
    assert any(text.startswith("kernel pid") for text in _printed(alice, project, job.id))
    assert "done\n" in _printed(alice, project, job.id)


def test_killed_runner_without_retries_fails_with_a_reason_and_keeps_partial_output(alice, project):
    job = alice.submit(project, SLOW, parameters={"seconds": 30}, max_retries=0)
    pid = kernel_pid(alice, project, job.id)
    # output is snapshotted at most every second while cells run; kill once it shows the first cells
    wait_for(lambda: f"kernel pid {pid}\n" in _printed(alice, project, job.id), timeout=10)
    runner_process(job.id, 1).kill()
    done = alice.wait(project, job.id, timeout=60)
    assert done.status == JobStatus.FAILED and done.error.reason == "system" and done.attempt == 1
    assert "died" in done.error.message
    printed = _printed(alice, project, job.id)
    assert f"kernel pid {pid}\n" in printed and "done\n" not in printed  # the cells that ran, and no more
    assert f"kernel pid {pid}" in alice.logs(project, job.id)
