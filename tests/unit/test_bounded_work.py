"""Bounded work: a project's queue has a cap (429 past it; a schedule skips its run and says
why), and schedules have a minimum interval between runs."""

from __future__ import annotations

import datetime as dt

import pytest

from loopml.db import Database, utcnow
from loopml.errors import InvalidInput, TooMany, http_status
from loopml.executor.models import JobStatus, ScheduleCreate
from loopml.executor.orm import JobRow, ScheduleRow
from loopml.executor.schedules import ScheduleService, check_cron
from loopml.executor.service import JobService
from tests.unit.test_service import NOTEBOOK, backend, db, service, settings, submit, tracking  # noqa: F401 (fixtures)

NEW_YEAR = dt.datetime(2025, 1, 1, 10, 0, 5, tzinfo=dt.timezone.utc)


@pytest.fixture
def full(service: JobService) -> JobService:
    """The service with a queue cap of 2 for each project."""
    service.settings = service.settings.model_copy(update={"max_queued_jobs_per_project": 2})
    return service


def test_submit_past_the_queue_cap_is_429_saying_how_many_and_what_to_do(full: JobService) -> None:
    submit(full), submit(full)
    with pytest.raises(TooMany) as caught:
        submit(full)

    assert http_status(caught.value) == 429
    assert caught.value.message.startswith("project 'demo' has 2 jobs queued, the most it may have "
                                           "(max_queued_jobs_per_project = 2): wait for some to start, or cancel")
    assert caught.value.to_json()["queued"] == 2
    assert len(full.list("demo")) == 2


def test_queue_cap_counts_queued_jobs_of_the_project_only(full: JobService, db: Database) -> None:
    first, _ = submit(full), submit(full)
    submit(full, project="solo")  # another project's queue is its own
    with db.session() as session:
        session.get(JobRow, first.id).status = JobStatus.RUNNING.value  # started: no longer queued

    assert submit(full).status == JobStatus.QUEUED


def test_schedule_due_on_a_full_queue_records_a_skipped_run(full: JobService, db: Database) -> None:
    schedules = ScheduleService(db, full)
    schedule = schedules.create("alice", "demo", ScheduleCreate(cron="0 3 * * *", template={"notebook": NOTEBOOK}))
    submit(full), submit(full)
    with db.session() as session:
        session.get(ScheduleRow, schedule.id).next_run_at = utcnow() - dt.timedelta(seconds=1)

    assert schedules.fire_due() == []
    skipped = schedules.get("demo", schedule.id)
    assert skipped.last_skip_reason.startswith("project 'demo' has 2 jobs queued")
    assert skipped.last_skipped_at is not None and skipped.last_job_id is None
    assert skipped.next_run_at > utcnow()  # moved on to the next tick: no retry piling up
    assert len(full.list("demo")) == 2


@pytest.mark.parametrize(
    "cron, minimum",
    [("* * * * * *", 60), ("* * * * * */30", 60), ("0,1 3 * * *", 120), ("*/5 * * * *", 600)],
    ids=["every-second", "every-30-s", "two-a-minute-apart-daily", "every-5-minutes-under-10"],
)
def test_cron_firing_more_often_than_the_minimum_is_refused_naming_it(cron: str, minimum: float) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_cron(cron, minimum, NEW_YEAR)

    assert f"closer than the minimum interval of {minimum:g} s between runs (schedule_min_interval_s)" \
        in caught.value.message
    assert caught.value.details == {"field": "cron"}


@pytest.mark.parametrize("cron", ["* * * * *", "0 3 * * *", "* * * * * 0", "0 0 1 1 *"],
                         ids=["every-minute", "daily", "seconds-field-once-a-minute", "yearly"])
def test_cron_at_or_over_the_minimum_is_accepted(cron: str) -> None:
    assert check_cron(cron, 60, NEW_YEAR) == cron


def test_cron_that_never_fires_is_refused() -> None:
    with pytest.raises(InvalidInput, match="never fires"):
        check_cron("0 0 30 2 *", 60, NEW_YEAR)


def test_schedule_create_applies_the_setting(service: JobService, db: Database) -> None:
    with pytest.raises(InvalidInput, match="minimum interval of 60 s"):
        ScheduleService(db, service).create("alice", "demo", ScheduleCreate(cron="* * * * * */10",
                                                                            template={"notebook": NOTEBOOK}))
