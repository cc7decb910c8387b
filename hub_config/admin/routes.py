"""The admin panel's routes, under the platform's base URL (``<base>`` below).

Pages (GET): ``<base>admin`` (the projects) and ``<base>admin/<section>`` for each entry of
:data:`SECTIONS`; ``<base>`` sends admins to the panel and everyone else to the hub's home.
Actions (POST, browser session and ``_xsrf`` only) answer ``303`` back to their section with
``?done=<what happened>``, or the section again with the error in red and its 4xx status.

==========================================================  ===========================
POST                                                        form fields
==========================================================  ===========================
``admin/projects``                                          name, members, max_concurrent_jobs
``admin/projects/{project}/members``                        user
``admin/projects/{project}/members/remove``                 user
``admin/projects/{project}/quota``                          max_concurrent_jobs, or clear
``admin/jobs/{project}/{job_id}/cancel``                    —
``admin/endpoints/{project}/{name}/rollback``               —
``admin/endpoints/{project}/{name}/delete``                 —
==========================================================  ===========================
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from loopml.auth import User
from loopml.errors import LoopMLError, http_status
from loopml.hub_config.admin import actions, sections
from loopml.hub_config.admin.pages import (
    PAGE_HEADERS,
    Viewer,
    panel_url,
    redirect,
    refusal,
    render,
    viewer_of_action,
    viewer_of_page,
)
from loopml.hub_config.admin.recent_logs import RecentLogs
from loopml.services import Services, services

MAX_DONE_CHARS = 300


@dataclass(frozen=True)
class Section:
    title: str
    path: str  # after <base>admin
    template: str
    gather: Callable[[Services, User, Mapping[str, str]], dict[str, Any]]  # (services, admin, query) -> data


SECTIONS: dict[str, Section] = {
    "projects": Section("Projects", "", "projects.html", sections.projects_section),
    "loop": Section("Loop", "/loop", "loop.html", sections.loop_section),
    "jobs": Section("Jobs", "/jobs", "jobs.html", sections.jobs_section),
    "pipelines": Section("Pipelines", "/pipelines", "pipelines.html", sections.pipelines_section),
    "models": Section("Models", "/models", "models.html", sections.models_section),
    "endpoints": Section("Endpoints", "/endpoints", "endpoints.html", sections.endpoints_section),
    "alerts": Section("Open alerts", "/alerts", "alerts.html", sections.alerts_section),
    "cluster": Section("Ray cluster", "/cluster", "cluster.html", sections.cluster_section),
    "errors": Section("Recent errors", "/errors", "errors.html", sections.errors_section),
}


@asynccontextmanager
async def _keep_recent_logs(app: FastAPI) -> AsyncIterator[None]:
    """While the app runs, its last warnings and errors are kept for the errors section."""
    state: Services = app.state.services
    state.recent_logs = RecentLogs().install()
    try:
        yield
    finally:
        state.recent_logs.uninstall()


router = APIRouter(include_in_schema=False, lifespan=_keep_recent_logs)


def _section(request: Request, key: str, viewer: Viewer, *, error: str = "", status: int = 200) -> Response:
    """Section ``key`` with its data (blocking: it reads the services)."""
    section = SECTIONS[key]
    try:
        data = section.gather(services(request), viewer.user, request.query_params)
    except LoopMLError as exc:
        data, error, status = None, "; ".join(filter(None, [error, exc.message])), max(status, http_status(exc))
    nav = [(name, s.title, panel_url(request, s.path)) for name, s in SECTIONS.items()]
    done = request.query_params.get("done", "")[:MAX_DONE_CHARS]
    return render(request, section.template, status=status, viewer=viewer, nav=nav, current=key, data=data,
                  done=done, error=error, here=panel_url(request, section.path))


def _page(request: Request, key: str) -> Response:
    viewer = viewer_of_page(request)
    if isinstance(viewer, Response):
        return viewer
    return _section(request, key, viewer)


@router.get("/")  # "<base>" without its slash: Starlette redirects it here (an empty path breaks a root base)
def home(request: Request):
    """Admins to the panel; everyone else to the hub's home (headless: the API docs)."""
    state = services(request)
    if state.sessions is None:
        return RedirectResponse(f"{state.settings.base_url}docs", status_code=302)
    viewer = viewer_of_page(request)
    return RedirectResponse(panel_url(request) if isinstance(viewer, Viewer) else f"{state.sessions.hub_prefix}home",
                            status_code=302, headers=PAGE_HEADERS)


@router.get("/admin")
def projects_page(request: Request):
    return _page(request, "projects")


@router.get("/admin/{key}")
def section_page(request: Request, key: str):
    if key not in SECTIONS:
        viewer = viewer_of_page(request)
        if isinstance(viewer, Response):
            return viewer
        return refusal(request, 404, "No such page", f"The admin panel has no section {key!r}.")
    return _page(request, key)


async def _act(request: Request, key: str, action: Callable[..., Any], *args: str) -> Response:
    """Run ``action(services, admin, form, *args)`` for a form posted by an admin's session;
    then back to section ``key`` with what was done, or the section with the error."""
    form = {name: value for name, value in (await request.form()).items() if isinstance(value, str)}
    viewer = await asyncio.to_thread(viewer_of_action, request, form.get("_xsrf"))
    if isinstance(viewer, Response):
        return viewer
    state = services(request)
    try:
        if inspect.iscoroutinefunction(action):
            done = await action(state, viewer.user, form, *args)
        else:
            done = await asyncio.to_thread(action, state, viewer.user, form, *args)
    except LoopMLError as exc:
        return await asyncio.to_thread(_section, request, key, viewer, error=exc.message, status=http_status(exc))
    except ValidationError as exc:  # the actions check their fields first; this is the services' last word
        first = exc.errors()[0]
        message = f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}"
        return await asyncio.to_thread(_section, request, key, viewer, error=message, status=422)
    return redirect(f"{panel_url(request, SECTIONS[key].path)}?{urlencode({'done': done[:MAX_DONE_CHARS]})}")


@router.post("/admin/projects")
async def create_project(request: Request):
    return await _act(request, "projects", actions.create_project)


@router.post("/admin/projects/{project}/members")
async def add_member(request: Request, project: str):
    return await _act(request, "projects", actions.add_member, project)


@router.post("/admin/projects/{project}/members/remove")
async def remove_member(request: Request, project: str):
    return await _act(request, "projects", actions.remove_member, project)


@router.post("/admin/projects/{project}/quota")
async def set_quota(request: Request, project: str):
    return await _act(request, "projects", actions.set_quota, project)


@router.post("/admin/jobs/{project}/{job_id}/cancel")
async def cancel_job(request: Request, project: str, job_id: str):
    return await _act(request, "jobs", actions.cancel_job, project, job_id)


@router.post("/admin/endpoints/{project}/{name}/rollback")
async def rollback_endpoint(request: Request, project: str, name: str):
    return await _act(request, "endpoints", actions.rollback_endpoint, project, name)


@router.post("/admin/endpoints/{project}/{name}/delete")
async def delete_endpoint(request: Request, project: str, name: str):
    return await _act(request, "endpoints", actions.delete_endpoint, project, name)
