"""Job tokens: a running job's kernel acts as its user, in its project only, while it runs,
while its user is a member of the project and until its timeout or the platform's maximum."""

from __future__ import annotations

import datetime as dt

import pytest

from loopml.db import Database, migrate, utcnow
from loopml.executor.job_tokens import JobTokens
from loopml.executor.models import JobStatus
from loopml.executor.orm import JobRow
from loopml.projects import ProjectCreate, ProjectHooks, ProjectService, ProjectUpdate


@pytest.fixture
def db(tmp_path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'jobs.db'}")
    migrate(db.engine)
    projects = ProjectService(db)
    projects.create(ProjectCreate(name="iris", members=["alice"]))
    projects.create(ProjectCreate(name="fraud", members=["alice"]))
    with db.session() as session:
        session.add(JobRow(id="j1", project="iris", user="alice", name="train.ipynb", notebook="{}",
                           status=JobStatus.RUNNING.value))
    return db


def job_tokens(db: Database, secret: str | None = "admin-secret", **kwargs) -> JobTokens:
    projects = ProjectService(db)
    return JobTokens(db, secret, is_member=projects.member_now, **kwargs)


def set_status(db: Database, status: JobStatus) -> None:
    with db.session() as session:
        session.get(JobRow, "j1").status = status.value


def test_a_running_jobs_token_acts_as_its_user_in_its_project_only(db):
    tokens = job_tokens(db)
    user = tokens.authenticate(tokens.issue("j1"))
    assert user is not None and user.name == "alice" and not user.admin
    projects = ProjectService(db)
    assert [p.name for p in projects.visible_to(user)] == ["iris"]  # alice may use fraud too, the job may not
    projects.require_member(user, "iris")
    with pytest.raises(Exception, match="not a member"):
        projects.require_member(user, "fraud")


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_the_token_ends_with_the_job(db, status):
    tokens = job_tokens(db)
    token = tokens.issue("j1")
    set_status(db, status)
    assert tokens.authenticate(token) is None


@pytest.mark.parametrize("token", [
    pytest.param("loopml-job.j1.0000", id="bad-signature"),
    pytest.param("loopml-job.j2." + "0" * 64, id="unknown-job"),
    pytest.param("j1", id="no-prefix"),
    pytest.param("loopml-job.", id="empty"),
])
def test_forged_tokens_are_refused(db, token):
    assert job_tokens(db).authenticate(token) is None


def test_another_instances_token_is_refused_and_no_admin_token_means_no_job_tokens(db):
    other = job_tokens(db, "another-secret").issue("j1")
    assert job_tokens(db).authenticate(other) is None
    assert job_tokens(db, None).issue("j1") is None and job_tokens(db, None).authenticate(other) is None


def test_removing_the_member_ends_the_token_at_once_and_adding_them_back_restores_it(db):
    tokens, projects = job_tokens(db), ProjectService(db)
    token = tokens.issue("j1")
    projects.update("iris", ProjectUpdate(members=["bob"]))
    assert tokens.authenticate(token) is None
    projects.update("iris", ProjectUpdate(members=["alice", "bob"]))
    assert tokens.authenticate(token) is not None


class HubGroups(ProjectHooks):
    """The hub's view of users (groups, admin flag), as ProjectSetup.user answers it."""

    def __init__(self) -> None:
        self.groups: dict[str, set[str]] = {"carol": {"loopml-iris"}}

    def user(self, name):
        from loopml.auth import User

        return User(name=name, groups=frozenset(self.groups.get(name, ())))


def test_a_member_by_hub_group_loses_the_token_when_leaving_the_group(db):
    hub = HubGroups()
    projects = ProjectService(db, hooks=hub)
    with db.session() as session:
        session.add(JobRow(id="j2", project="iris", user="carol", name="x.ipynb", notebook="{}",
                           status=JobStatus.RUNNING.value))
    tokens = JobTokens(db, "admin-secret", is_member=projects.member_now)
    token = tokens.issue("j2")
    assert tokens.authenticate(token).name == "carol"
    hub.groups["carol"] = set()
    assert tokens.authenticate(token) is None


def set_times(db: Database, *, created_ago_s: float, started_ago_s: float | None = None,
              timeout_s: float | None = None) -> None:
    now = utcnow()
    with db.session() as session:
        row = session.get(JobRow, "j1")
        row.created_at = now - dt.timedelta(seconds=created_ago_s)
        row.started_at = None if started_ago_s is None else now - dt.timedelta(seconds=started_ago_s)
        row.timeout_s = timeout_s


@pytest.mark.parametrize("created_ago_s, started_ago_s, timeout_s, valid", [
    pytest.param(10, 5, 60, True, id="within-the-timeout"),
    pytest.param(100, 61, 60, False, id="past-the-attempts-timeout-while-running"),
    pytest.param(3599, None, None, True, id="queued-within-the-maximum"),
    pytest.param(3601, 3000, None, False, id="past-the-maximum-while-running"),
    pytest.param(3601, 10, 7200, False, id="the-maximum-is-sooner-than-the-timeout"),
])
def test_the_token_expires_at_the_jobs_timeout_or_the_platform_maximum(db, created_ago_s, started_ago_s,
                                                                      timeout_s, valid):
    tokens = job_tokens(db, max_s=3600)
    set_times(db, created_ago_s=created_ago_s, started_ago_s=started_ago_s, timeout_s=timeout_s)
    assert (tokens.authenticate(tokens.issue("j1")) is not None) is valid


class FakeHubClient:
    def __init__(self, records):
        self.records = records

    def user(self, name):
        return self.records.get(name)


def test_who_a_user_is_now_static_admins_and_hub_users(tmp_path):
    from loopml.hub_config.project_setup import ProjectSetup
    from loopml.settings import Settings, TokenUser

    settings = Settings(data_dir=tmp_path, admin_token="a", tokens={"t": TokenUser(name="ops", admin=True),
                                                                "u": TokenUser(name="dave")})
    hub = FakeHubClient({"carol": {"admin": True, "groups": ["loopml-admins"]}, "alice": {"groups": ["loopml-iris"]}})
    setup = ProjectSetup(settings, lambda name: None, hub)
    assert setup.user("admin").admin and setup.user("ops").admin and not setup.user("dave").admin
    assert setup.user("carol").admin and setup.user("alice").groups == frozenset({"loopml-iris"})
    gone = setup.user("mallory")  # the hub no longer knows them: no groups, no admin
    assert not gone.admin and gone.groups == frozenset()
    headless = ProjectSetup(settings, lambda name: None, None).user("alice")
    assert not headless.admin and headless.groups == frozenset()
