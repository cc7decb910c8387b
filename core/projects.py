"""Projects: the unit of membership, quotas and isolation.

Every project-scoped route calls :meth:`ProjectService.require_member` first. In
headless mode members are stored here; the hub (later) keeps them in sync with its groups.
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from loopml.auth import User, current_user
from loopml.db import Base, Database, UTCDateTime, utcnow
from loopml.errors import Conflict, Forbidden, NotFound
from loopml.names import check_name


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


class ProjectCreate(BaseModel):
    name: str = Field(description="Project name: lowercase letters, digits, '-', '_'.")
    members: list[str] = Field(default_factory=list, description="User names that may use the project.")
    max_concurrent_jobs: int | None = Field(None, ge=1, description="Jobs of this project running at once; none = no limit.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name("project", value)


class ProjectUpdate(BaseModel):
    members: list[str] | None = Field(None, description="Replaces the member list.")
    max_concurrent_jobs: int | None = Field(None, ge=1)
    clear_quota: bool = Field(False, description="Remove the max_concurrent_jobs limit.")


class Project(BaseModel):
    name: str
    members: list[str]
    max_concurrent_jobs: int | None
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: ProjectRow) -> Project:
        return cls(
            name=row.name,
            members=sorted(m.user for m in row.members),
            max_concurrent_jobs=row.max_concurrent_jobs,
            created_at=row.created_at,
        )


class ProjectService:
    """Creates and reads projects and answers "may this user touch this project?"."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, spec: ProjectCreate, *, exist_ok: bool = False) -> Project:
        with self.db.session() as session:
            row = session.get(ProjectRow, spec.name)
            if row is not None:
                if exist_ok:
                    return Project.from_row(row)
                raise Conflict(f"project {spec.name!r} exists already", field="name")
            row = ProjectRow(name=spec.name, max_concurrent_jobs=spec.max_concurrent_jobs)
            row.members = [MemberRow(project=spec.name, user=u) for u in sorted(set(spec.members))]
            session.add(row)
            session.flush()
            return Project.from_row(row)

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
            return Project.from_row(row)

    def get(self, name: str) -> Project:
        with self.db.session() as session:
            return Project.from_row(self._row(session, name))

    def visible_to(self, user: User) -> list[Project]:
        with self.db.session() as session:
            rows = session.scalars(select(ProjectRow).order_by(ProjectRow.name)).all()
            return [Project.from_row(r) for r in rows if user.admin or any(m.user == user.name for m in r.members)]

    def require_member(self, user: User, name: str) -> Project:
        """The project, if ``user`` is a member or an admin; else 404/403 naming the project."""
        project = self.get(name)
        if not user.admin and user.name not in project.members:
            raise Forbidden(
                f"user {user.name!r} is not a member of project {name!r}: ask a platform admin to add you",
                project=name,
            )
        return project

    @staticmethod
    def _row(session: Session, name: str) -> ProjectRow:
        row = session.get(ProjectRow, name)
        if row is None:
            raise NotFound(f"project {name!r} does not exist: `loopml projects list` shows yours", project=name)
        return row


router = APIRouter(tags=["projects"])


def projects(request: Request) -> ProjectService:
    return request.app.state.projects


@router.get("/projects", response_model=list[Project])
def list_projects(user: User = Depends(current_user), service: ProjectService = Depends(projects)):
    """The projects the caller is a member of (all of them for admins)."""
    return service.visible_to(user)


@router.post("/projects", response_model=Project, status_code=201)
def create_project(spec: ProjectCreate, user: User = Depends(current_user), service: ProjectService = Depends(projects)):
    """Create a project (admins only)."""
    if not user.admin:
        raise Forbidden("only platform admins create projects: ask one to create it for you")
    return service.create(spec)


@router.get("/projects/{project}", response_model=Project)
def get_project(project: str, user: User = Depends(current_user), service: ProjectService = Depends(projects)):
    return service.require_member(user, project)


@router.patch("/projects/{project}", response_model=Project)
def update_project(
    project: str, change: ProjectUpdate, user: User = Depends(current_user), service: ProjectService = Depends(projects)
):
    """Change members or quota (admins only)."""
    if not user.admin:
        raise Forbidden("only platform admins change projects")
    return service.update(project, change)
