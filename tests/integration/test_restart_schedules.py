"""Schedules fire on time and survive a platform restart."""

from __future__ import annotations

import time

from loopml.executor.models import JobStatus, Trigger
from tests.integration.notebooks import notebook
from tests.integration.processes import restart_platform_service, wait_for


def test_schedules_survive_a_platform_restart(platform, alice, project):
    """(Jobs across a restart: tests/reliability/test_platform_restart.py.)"""
    survivor = alice.create_schedule(project, "0 0 1 1 *", notebook("print(1)"), name="yearly")
    restart_platform_service(platform)
    assert [s.id for s in alice.schedules(project)] == [survivor.id]


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
