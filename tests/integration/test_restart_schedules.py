"""Durability: the platform service restarts while jobs run; schedules fire and survive it."""

from __future__ import annotations

import time


from loopml.executor.models import JobStatus, Trigger
from tests.integration.notebooks import SLOW, notebook
from tests.integration.processes import kernel_pid, restart_platform_service, wait_for


def test_jobs_running_across_a_platform_restart_finish_and_are_recorded(platform, alice, project):
    running = alice.submit(project, SLOW, parameters={"seconds": 6})
    queued_before = alice.submit(project, notebook("print('queued before the restart')"))
    kernel_pid(alice, project, running.id)
    restart_platform_service(platform)
    done = alice.wait(project, running.id, timeout=120)
    assert done.status == JobStatus.SUCCEEDED and done.attempt == 1
    assert "done" in alice.logs(project, running.id)
    assert alice.wait(project, queued_before.id, timeout=120).status == JobStatus.SUCCEEDED
    schedule_survivor = alice.create_schedule(project, "0 0 1 1 *", notebook("print(1)"), name="yearly")
    restart_platform_service(platform)
    assert [s.id for s in alice.schedules(project)] == [schedule_survivor.id]


def test_schedule_submits_jobs_on_time_until_deleted(alice, project):
    schedule = alice.create_schedule(project, "* * * * * */2", notebook("print('tick')"), name="every-2s")
    fired = wait_for(lambda: [j for j in alice.jobs(project) if j.schedule_id == schedule.id], timeout=30)
    assert fired[0].trigger == Trigger.SCHEDULE
    assert alice.wait(project, fired[0].id, timeout=120).status == JobStatus.SUCCEEDED
    alice.delete_schedule(project, schedule.id)
    assert alice.schedules(project) == []
    count = len([j for j in alice.jobs(project) if j.schedule_id == schedule.id])
    time.sleep(3)  # a live schedule would have fired at least once more by now
    assert len([j for j in alice.jobs(project) if j.schedule_id == schedule.id]) == count
