"""A schedule fires only while its user is a member of its project: removed from the member
list it pauses at once, with the reason in its view; removed from the hub group it never
fires (checked at fire time); back in the project it fires again."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from loopml.auth import User
from loopml.db import Database, utcnow
from loopml.executor.models import ScheduleCreate
from loopml.executor.orm import ScheduleRow
from loopml.executor.schedules import ScheduleService
from loopml.executor.service import JobService
from loopml.projects import ProjectHooks, ProjectService, ProjectUpdate
from tests.unit.test_service import NOTEBOOK, FakeBackend, FakeTracking, backend, db, service, settings, tracking  # noqa: F401 (fixtures)

REASON = ("alice is no longer a member of project demo: the schedule is paused and fires again once alice is a "
          "member (or delete it)")


class HubGroups(ProjectHooks):
    """The hub's current view of users' groups (what ProjectSetup.user reads from the hub)."""

    def __init__(self) -> None:
        self.groups: dict[str, set[str]] = {}

    def user(self, name: str) -> User:
        return User(name=name, groups=frozenset(self.groups.get(name, ())))


def due_now(db: Database, schedule_id: str) -> None:
    with db.session() as session:
        session.get(ScheduleRow, schedule_id).next_run_at = utcnow() - dt.timedelta(seconds=1)


@pytest.fixture
def hub() -> HubGroups:
    return HubGroups()


@pytest.fixture
def projects(db: Database, service: JobService, hub: HubGroups) -> ProjectService:
    return ProjectService(db, hooks=hub)


@pytest.fixture
def schedules(db: Database, service: JobService, projects: ProjectService) -> ScheduleService:
    schedules = ScheduleService(db, service, projects=projects)
    projects.on_members_changed.append(schedules.check_members)
    return schedules


def test_removing_the_member_pauses_their_schedule_with_the_reason_and_it_does_not_fire(
        db, service, projects, schedules):
    schedule = schedules.create("alice", "demo", ScheduleCreate(cron="0 3 * * *", template={"notebook": NOTEBOOK}))
    projects.update("demo", ProjectUpdate(members=["bob"]))

    assert schedules.get("demo", schedule.id).paused_reason == REASON
    due_now(db, schedule.id)
    assert schedules.fire_due() == [] and service.list("demo") == []
    paused = schedules.get("demo", schedule.id)
    assert paused.paused_reason == REASON and paused.next_run_at > utcnow()  # the run is skipped, not retried

    projects.update("demo", ProjectUpdate(members=["alice", "bob"]))
    assert schedules.get("demo", schedule.id).paused_reason is None
    due_now(db, schedule.id)
    assert len(schedules.fire_due()) == 1


def test_a_schedule_of_a_user_who_left_the_hub_group_never_fires_and_resumes_when_back(
        db, service, projects, schedules, hub):
    projects.update("demo", ProjectUpdate(members=[]))
    hub.groups["alice"] = {"loopml-demo"}
    schedule = schedules.create("alice", "demo", ScheduleCreate(cron="0 3 * * *", template={"notebook": NOTEBOOK}))
    hub.groups["alice"] = set()  # no event reaches the platform: the fire time check catches it
    due_now(db, schedule.id)
    assert schedules.fire_due() == [] and service.list("demo") == []
    assert schedules.get("demo", schedule.id).paused_reason == REASON

    hub.groups["alice"] = {"loopml-demo"}
    due_now(db, schedule.id)
    assert len(schedules.fire_due()) == 1
    assert schedules.get("demo", schedule.id).paused_reason is None


def test_the_cli_shows_a_paused_schedule_and_why(monkeypatch):
    from loopml.cli import jobs as _cli_jobs
    from loopml.cli import main
    from loopml.executor.models import Schedule

    paused = Schedule(id="s1", project="demo", user="alice", name="nightly", cron="0 3 * * *", parameters={},
                      next_run_at=utcnow(), last_run_at=None, last_job_id=None, paused_reason=REASON,
                      created_at=utcnow())

    class Client:
        def schedules(self, project):
            return [paused]

    monkeypatch.setattr(_cli_jobs, "client_from", lambda ctx: Client())
    result = CliRunner().invoke(main, ["schedules", "list", "-P", "demo"])
    assert result.exit_code == 0, result.output
    assert "paused" in result.output and f"schedule s1 is paused: {REASON}" in result.output
