"""Projects: the unit of membership, quotas and isolation.

Every project-scoped route calls :meth:`ProjectService.require_member` first. A user is a
member of project P when an admin added them (stored here) or when they belong to the hub
group ``<prefix>P`` (with the hub, from the identity provider's groups claim; see
docs/hub.md). Admins are members of every project.

Also here: when each member's workspace of a project last started (its server's extension
reports it, ``POST /projects/{p}/workspaces``), the first stage of the loop's state tracker
(:mod:`loopml.loop_state`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StrictBool, StrictInt, field_validator
from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from loopml.auth import User, admin_user, current_user, member
from loopml.db import Base, Database, UTCDateTime, utcnow
from loopml.errors import Conflict, Forbidden, NotFound
from loopml.names import check_name
from loopml.paging import Page, page
from loopml.services import Services, services

log = logging.getLogger(__name__)


class ProjectRow(Base):
    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    members: Mapped[list[MemberRow]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class MemberRow(Base):
    __tablename__ = "project_members"

    project: Mapped[str] = mapped_column(ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True)
    user: Mapped[str] = mapped_column(String(200), primary_key=True)


class WorkspaceRow(Base):
    """When ``user``'s workspace of ``project`` last started (one row per member who opened one)."""

    __tablename__ = "workspaces"

    project: Mapped[str] = mapped_column(ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True)
    user: Mapped[str] = mapped_column(String(200), primary_key=True)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProjectCreate(BaseModel):
    name: str = Field(description="Project name: lowercase letters, digits, '-', '_'.")
    members: list[str] = Field(default_factory=list, description="User names that may use the project.")
    max_concurrent_jobs: StrictInt | None = Field(None, ge=1, description="Jobs of this project running at once; none = no limit.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name("project", value)


class ProjectUpdate(BaseModel):
    members: list[str] | None = Field(None, description="Replaces the member list.")
    max_concurrent_jobs: StrictInt | None = Field(None, ge=1)
    clear_quota: StrictBool = Field(False, description="Remove the max_concurrent_jobs limit.")


class Project(BaseModel):
    name: str
    members: list[str] = Field(description="Members added by an admin.")
    group: str = Field("", description="Hub group whose members are members too (from the identity provider).")
    group_members: list[str] = Field(default_factory=list, description="Current members of that group (with the hub).")
    max_concurrent_jobs: int | None
    created_at: dt.datetime


class Workspace(BaseModel):
    """A member's workspace of a project, as its server last reported starting."""

    project: str
    user: str
    opened_at: dt.datetime = Field(description="When the workspace server last started.")


class ProjectHooks:
    """What else happens when a project is created or read (with the hub: its group, its
    directory, its MLflow experiment). The default does nothing."""

    def created(self, project: Project) -> None:
        """Called after the project's row is stored; may raise :class:`LoopMLError`."""

    def group_members(self, group: str) -> list[str]:
        """Current members of the hub group ``group`` ([] without the hub)."""
        return []

    def user(self, name: str) -> User:
        """User ``name`` as they are now (admin flag, hub groups), for a credential that names
        them but is checked long after they logged in (a job token, a schedule). The default
        knows only the name: membership then comes from the member list alone."""
        return User(name=name)


class ProjectService:
    """Creates and reads projects and answers "may this user touch this project?"."""

    def __init__(self, db: Database, *, group_prefix: str = "loopml-", hooks: ProjectHooks | None = None) -> None:
        self.db = db
        self.group_prefix = group_prefix
        self.hooks = hooks or ProjectHooks()
        # called with the project's name after its member list changed (the schedules of
        # removed members pause)
        self.on_members_changed: list[Callable[[str], None]] = []

    def group_of(self, name: str) -> str:
        """The hub group whose members belong to project ``name``."""
        return f"{self.group_prefix}{name}"

    def _model(self, row: ProjectRow, *, with_group_members: bool = False) -> Project:
        group = self.group_of(row.name)
        return Project(name=row.name, members=sorted(m.user for m in row.members), group=group,
                       group_members=sorted(self.hooks.group_members(group)) if with_group_members else [],
                       max_concurrent_jobs=row.max_concurrent_jobs, created_at=row.created_at)

    def is_member(self, user: User, project: Project) -> bool:
        if user.only_projects is not None:  # a job token: its job's project only
            return project.name in user.only_projects
        return user.admin or user.name in project.members or project.group in user.groups

    def member_now(self, name: str, project: str) -> bool:
        """Whether user ``name`` is a member of ``project`` now: the member list as stored, the
        admin flag and hub groups as :meth:`ProjectHooks.user` has them (with the hub, at most
        its user cache's 30 s old). False for a project that does not exist."""
        try:
            found = self.get(project)
        except NotFound:
            return False
        return self.is_member(self.hooks.user(name), found)

    def create(self, spec: ProjectCreate, *, exist_ok: bool = False) -> Project:
        with self.db.session() as session:
            row = session.get(ProjectRow, spec.name)
            if row is not None:
                if exist_ok:
                    return self._model(row)
                raise Conflict(f"project {spec.name!r} exists already", field="name")
            row = ProjectRow(name=spec.name, max_concurrent_jobs=spec.max_concurrent_jobs)
            row.members = [MemberRow(project=spec.name, user=u) for u in sorted(set(spec.members))]
            session.add(row)
            session.flush()
            project = self._model(row)
        self.hooks.created(project)
        return project

    def ensure_hooks(self) -> None:
        """Run the creation hooks again for every project (idempotent: on start, so a hub
        started afresh gets every project's group)."""
        with self.db.session() as session:
            projects = [self._model(row) for row in session.scalars(select(ProjectRow)).all()]
        for project in projects:
            self.hooks.created(project)

    def update(self, name: str, change: ProjectUpdate) -> Project:
        with self.db.session() as session:
            row = self._row(session, name)
            if change.members is not None:
                row.members = [MemberRow(project=name, user=u) for u in sorted(set(change.members))]
            if change.max_concurrent_jobs is not None:
                row.max_concurrent_jobs = change.max_concurrent_jobs
            if change.clear_quota:
                row.max_concurrent_jobs = None
            session.flush()
            updated = self._model(row)
        if change.members is not None:
            for listener in self.on_members_changed:
                try:
                    listener(name)
                except Exception:  # noqa: BLE001 - the change is stored; schedules re-check at fire time
                    log.exception("reacting to the member change of project %s failed", name)
        return updated

    def get(self, name: str, *, with_group_members: bool = False) -> Project:
        with self.db.session() as session:
            return self._model(self._row(session, name), with_group_members=with_group_members)

    def visible_to(self, user: User, *, with_group_members: bool = False) -> list[Project]:
        """The projects ``user`` is a member of (every project for admins), by name."""
        with self.db.session() as session:
            rows = session.scalars(select(ProjectRow).order_by(ProjectRow.name)).all()
            projects = [self._model(r) for r in rows]
        visible = [p for p in projects if self.is_member(user, p)]
        if with_group_members:
            visible = [p.model_copy(update={"group_members": sorted(self.hooks.group_members(p.group))})
                       for p in visible]
        return visible

    def require_member(self, user: User, name: str) -> Project:
        """The project, if ``user`` is a member or an admin; else 403 naming the project (also
        for a project that does not exist, so names cannot be probed; admins get 404)."""
        try:
            project = self.get(name)
        except NotFound:
            if user.admin:
                raise
            raise Forbidden(f"user {user.name!r} is not a member of a project {name!r} (or it does not exist): "
                            "`loopml projects list` shows yours", project=name) from None
        if not self.is_member(user, project):
            raise Forbidden(
                f"user {user.name!r} is not a member of project {name!r}: ask a platform admin to add you",
                project=name,
            )
        return project

    def workspace_opened(self, project: str, user: str) -> Workspace:
        """Record that ``user``'s workspace of ``project`` started now (idempotent per user:
        the newest start is kept). :class:`NotFound` for an unknown project."""
        with self.db.session() as session:
            self._row(session, project)
            row = session.get(WorkspaceRow, (project, user))
            if row is None:
                row = WorkspaceRow(project=project, user=user)
                session.add(row)
            row.opened_at = utcnow()
            session.flush()
            return Workspace(project=row.project, user=row.user, opened_at=row.opened_at)

    def last_workspace(self, project: str) -> Workspace | None:
        """The workspace of ``project`` that started last; ``None`` before the first."""
        with self.db.session() as session:
            row = session.scalar(select(WorkspaceRow).where(WorkspaceRow.project == project)
                                 .order_by(WorkspaceRow.opened_at.desc(), WorkspaceRow.user).limit(1))
            return None if row is None else Workspace(project=row.project, user=row.user, opened_at=row.opened_at)

    @staticmethod
    def _row(session: Session, name: str) -> ProjectRow:
        row = session.get(ProjectRow, name)
        if row is None:
            raise NotFound(f"project {name!r} does not exist: `loopml projects list` shows yours", project=name)
        return row


router = APIRouter(tags=["projects"])


def projects(found: Services = Depends(services)) -> ProjectService:
    return found.projects


@router.get("/projects", response_model=list[Project])
def list_projects(window: Page = Depends(page), user: User = Depends(current_user),
                  service: ProjectService = Depends(projects)):
    """The projects the caller is a member of (all of them for admins); ``limit`` and ``offset`` page them."""
    return window.of(service.visible_to(user, with_group_members=True))


@router.post("/projects", response_model=Project, status_code=201)
def create_project(spec: ProjectCreate, user: User = Depends(admin_user), service: ProjectService = Depends(projects)):
    """Create a project (admins only): its hub group, shared directory and MLflow experiment too."""
    return service.create(spec)


@router.get("/projects/{project}", response_model=Project)
def get_project(project: str, user: User = Depends(current_user), service: ProjectService = Depends(projects)):
    service.require_member(user, project)
    return service.get(project, with_group_members=True)


@router.patch("/projects/{project}", response_model=Project)
def update_project(
    project: str, change: ProjectUpdate, user: User = Depends(admin_user), service: ProjectService = Depends(projects)
):
    """Change members or quota (admins only)."""
    return service.update(project, change)


@router.post("/projects/{project}/workspaces", response_model=Workspace)
def workspace_opened(project: str, user: User = Depends(member), service: ProjectService = Depends(projects)):
    """Record that the caller's workspace of the project started (its server's loopml extension
    calls this on start, with the workspace's token): the loop's *workspace opened* stage."""
    return service.workspace_opened(project, user.name)
