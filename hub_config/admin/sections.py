"""What each section of the admin panel shows, read from the platform's services (the loop
section from ``services.loop``, :class:`~loopml.server.loop.LoopTracker`).

Every ``*_section`` function takes the platform's :class:`~loopml.services.Services`, the admin looking and the page's query
parameters, and returns its template's data; a :class:`~loopml.errors.LoopMLError` from a
service (MLflow or the hub not answering…) propagates and is shown on the page. They call
blocking services: run them from sync routes or a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopml.auth import User
from loopml.errors import InvalidInput
from loopml.executor.models import Job, JobStatus
from loopml.services import Services
from loopml.serving.models import Endpoint
from loopml.units import resource_text

MAX_JOBS = 200  # rows of the jobs table, newest first
MAX_PIPELINE_RUNS = 100  # rows of the pipeline runs table, newest first
MAX_FAILED_JOBS = 50  # rows of the recent errors' failed jobs


def project_names(state: Services, admin: User) -> list[str]:
    return [p.name for p in state.projects.visible_to(admin)]


def _newest_jobs(state: Services, projects: list[str], status: JobStatus | None, limit: int) -> list[Job]:
    jobs = [job for project in projects for job in state.jobs.list(project, status, limit=limit)]
    return sorted(jobs, key=lambda job: job.created_at, reverse=True)


def projects_section(state: Services, admin: User, query: Mapping[str, str]) -> dict[str, Any]:
    return {"projects": state.projects.visible_to(admin, with_group_members=True)}


def job_filters(query: Mapping[str, str], projects: list[str]) -> dict[str, str]:
    """The jobs table's filters (``project``, ``status``, ``user``; "" = any), checked."""
    filters = {key: (query.get(key) or "").strip() for key in ("project", "status", "user")}
    if filters["project"] and filters["project"] not in projects:
        raise InvalidInput(f"no project {filters['project']!r} to filter on: pick one from the list", field="project")
    if filters["status"] and filters["status"] not in JobStatus.__members__:
        raise InvalidInput(f"unknown job status {filters['status']!r}: use one of {', '.join(JobStatus.__members__)}",
                           field="status")
    return filters


def jobs_section(state: Services, admin: User, query: Mapping[str, str]) -> dict[str, Any]:
    """The newest :data:`MAX_JOBS` jobs of every project (or the filtered one)."""
    projects = project_names(state, admin)
    filters = job_filters(query, projects)
    status = JobStatus(filters["status"]) if filters["status"] else None
    jobs = _newest_jobs(state, [filters["project"]] if filters["project"] else projects, status, MAX_JOBS)
    if filters["user"]:
        jobs = [job for job in jobs if job.user == filters["user"]]
    return {"jobs": jobs[:MAX_JOBS], "filters": filters, "projects": projects,
            "statuses": list(JobStatus.__members__)}


def pipelines_section(state: Services, admin: User, query: Mapping[str, str]) -> dict[str, Any]:
    """The newest :data:`MAX_PIPELINE_RUNS` pipeline runs of every project."""
    runs = [run for project in project_names(state, admin)
            for run in state.pipelines.list(project, limit=MAX_PIPELINE_RUNS, offset=0)]
    return {"runs": sorted(runs, key=lambda run: run.created_at, reverse=True)[:MAX_PIPELINE_RUNS]}


def loop_section(state: Services, admin: User, query: Mapping[str, str]) -> dict[str, Any]:
    """Where each project stands in the loop: a row of stages per project."""
    states = [state.loop.of(project) for project in project_names(state, admin)]
    return {"states": states, "stages": [stage.name for stage in states[0].stages] if states else []}


def models_section(state: Services, admin: User, query: Mapping[str, str]) -> dict[str, Any]:
    """Each project's registered models with their versions (newest first) and aliases."""
    registry = state.registry
    return {"models": {project: [registry.get(project, summary.name) for summary in registry.list(project)]
                       for project in project_names(state, admin)}}


def traffic(endpoint: Endpoint) -> list[tuple[int, float, str]]:
    """``(version, percent, role)`` of each version the endpoint answers with."""
    if endpoint.canary_version is None:
        return [(endpoint.version, 100.0, "stable")]
    canary = endpoint.canary_percent or 0.0
    return [(endpoint.version, 100.0 - canary, "stable"), (endpoint.canary_version, canary, "canary")]


def endpoints_section(state: Services, admin: User, query: Mapping[str, str]) -> dict[str, Any]:
    endpoints = [endpoint for project in project_names(state, admin) for endpoint in state.endpoints.list(project)]
    return {"endpoints": [(endpoint, traffic(endpoint)) for endpoint in endpoints]}


def alerts_section(state: Services, admin: User, query: Mapping[str, str]) -> dict[str, Any]:
    alerts = [alert for project in project_names(state, admin)
              for alert in state.policies.alerts(project, status="open")]
    return {"alerts": sorted(alerts, key=lambda alert: alert.opened_at, reverse=True)}


def ray_nodes() -> list[dict[str, Any]]:
    """The Ray cluster's nodes, when this process is connected to one ([] otherwise)."""
    import ray

    if not ray.is_initialized():
        return []
    return [{"id": node.get("NodeID", ""), "address": node.get("NodeManagerAddress", ""),
             "hostname": node.get("NodeManagerHostname", ""), "alive": bool(node.get("Alive")),
             "resources": resource_text(node.get("Resources") or {})}
            for node in ray.nodes()]


def cluster_section(state: Services, admin: User, query: Mapping[str, str]) -> dict[str, Any]:
    status = state.backend.status()
    return {"status": status, "nodes": ray_nodes(),
            "total": resource_text(status.get("resources") or {}),
            "available": resource_text(status.get("available") or {})}


def errors_section(state: Services, admin: User, query: Mapping[str, str]) -> dict[str, Any]:
    """The newest failed jobs with their error, and the platform's last warnings and errors."""
    failed = _newest_jobs(state, project_names(state, admin), JobStatus.FAILED, MAX_FAILED_JOBS)
    return {"failed": failed[:MAX_FAILED_JOBS],
            "logs": state.recent_logs.entries() if state.recent_logs is not None else None}
