"""The admin panel's actions: each makes one change through the platform's services.

An action takes the platform's :class:`~loopml.services.Services`, the admin acting, what the form sent and the path's
parameters, and returns the message shown once it is done; a value it cannot use raises :class:`InvalidInput` naming
the field, and the services' own :class:`~loopml.errors.LoopMLError` pass through. Who
may act (session, admin, XSRF) is checked before, by the routes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from loopml.auth import User
from loopml.errors import InvalidInput, NotFound
from loopml.names import check_name
from loopml.projects import ProjectCreate, ProjectUpdate
from loopml.services import Services

_SEPARATORS = re.compile(r"[\s,]+")


def check_user_name(value: str | None) -> str:
    """A hub user name from a form: stripped, 1-200 characters, no spaces or control characters."""
    name = (value or "").strip()
    if not name or len(name) > 200 or any(ch.isspace() or ord(ch) < 32 for ch in name):
        raise InvalidInput(f"invalid user name {name!r}: give the hub user name, without spaces (200 characters "
                           "at most)", field="user")
    return name


def parse_quota(value: str | None) -> int:
    """``max_concurrent_jobs`` from a form: a whole number of at least 1."""
    text = (value or "").strip()
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise InvalidInput(f"invalid max_concurrent_jobs {text!r}: give a whole number of at least 1, or clear "
                           "the limit", field="max_concurrent_jobs")
    return int(text)


def create_project(state: Services, admin: User, form: Mapping[str, str]) -> str:
    """Form fields: ``name``; optional ``members`` (separated by commas or spaces) and
    ``max_concurrent_jobs``."""
    name = check_name("project", (form.get("name") or "").strip())
    members = [check_user_name(m) for m in _SEPARATORS.split(form.get("members") or "") if m]
    quota = parse_quota(form["max_concurrent_jobs"]) if (form.get("max_concurrent_jobs") or "").strip() else None
    state.projects.create(ProjectCreate(name=name, members=members, max_concurrent_jobs=quota))
    return f"created project {name}"


def add_member(state: Services, admin: User, form: Mapping[str, str], project: str) -> str:
    """Form field ``user``. Adding a member twice changes nothing."""
    user = check_user_name(form.get("user"))
    current = state.projects.get(check_name("project", project))
    if user in current.members:
        return f"{user} is a member of {project} already"
    state.projects.update(project, ProjectUpdate(members=[*current.members, user]))
    return f"added {user} to {project}"


def remove_member(state: Services, admin: User, form: Mapping[str, str], project: str) -> str:
    """Form field ``user``: an admin-added member (group members come from the identity provider)."""
    user = check_user_name(form.get("user"))
    current = state.projects.get(check_name("project", project), with_group_members=True)
    if user not in current.members:
        if user in current.group_members:
            raise InvalidInput(f"{user} is a member of {project} through the hub group {current.group} (from the "
                               "identity provider): remove them from that group there", field="user")
        raise NotFound(f"{user} is not a member of {project}", field="user")
    state.projects.update(project, ProjectUpdate(members=[m for m in current.members if m != user]))
    return f"removed {user} from {project}"


def set_quota(state: Services, admin: User, form: Mapping[str, str], project: str) -> str:
    """Form field ``max_concurrent_jobs``, or ``clear`` to remove the limit."""
    check_name("project", project)
    if form.get("clear"):
        state.projects.update(project, ProjectUpdate(clear_quota=True))
        return f"{project} has no job limit now"
    quota = parse_quota(form.get("max_concurrent_jobs"))
    state.projects.update(project, ProjectUpdate(max_concurrent_jobs=quota))
    return f"{project} runs at most {quota} job(s) at once now"


async def cancel_job(state: Services, admin: User, form: Mapping[str, str], project: str, job_id: str) -> str:
    job = await state.jobs.cancel(admin.name, check_name("project", project), job_id)
    return f"job {job.id} of {project} is {job.status.value}"


def rollback_endpoint(state: Services, admin: User, form: Mapping[str, str], project: str, name: str) -> str:
    endpoint = state.endpoints.rollback(admin.name, check_name("project", project), check_name("endpoint", name))
    return f"rolled back {project}/{name}: it serves version {endpoint.version} now"


def delete_endpoint(state: Services, admin: User, form: Mapping[str, str], project: str, name: str) -> str:
    state.endpoints.delete(check_name("project", project), check_name("endpoint", name))
    return f"deleted endpoint {project}/{name}"
