"""Job tokens: a running job's kernel acts as its user, in its project only, while it runs."""

from __future__ import annotations

import pytest

from loopml.db import Database, migrate
from loopml.executor.job_tokens import JobTokens
from loopml.executor.models import JobStatus
from loopml.executor.orm import JobRow
from loopml.projects import ProjectCreate, ProjectService


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


def set_status(db: Database, status: JobStatus) -> None:
    with db.session() as session:
        session.get(JobRow, "j1").status = status.value


def test_a_running_jobs_token_acts_as_its_user_in_its_project_only(db):
    tokens = JobTokens(db, "admin-secret")
    user = tokens.authenticate(tokens.issue("j1"))
    assert user is not None and user.name == "alice" and not user.admin
    projects = ProjectService(db)
    assert [p.name for p in projects.visible_to(user)] == ["iris"]  # alice may use fraud too, the job may not
    projects.require_member(user, "iris")
    with pytest.raises(Exception, match="not a member"):
        projects.require_member(user, "fraud")


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_the_token_ends_with_the_job(db, status):
    tokens = JobTokens(db, "admin-secret")
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
    assert JobTokens(db, "admin-secret").authenticate(token) is None


def test_another_instances_token_is_refused_and_no_admin_token_means_no_job_tokens(db):
    other = JobTokens(db, "another-secret").issue("j1")
    assert JobTokens(db, "admin-secret").authenticate(other) is None
    assert JobTokens(db, None).issue("j1") is None and JobTokens(db, None).authenticate(other) is None
