"""The platform's services, typed, in one container: :class:`Services`, and the one FastAPI
dependency that hands it to routes, :func:`services`.

:func:`loopml.server.app.create_app` makes the container (``app.state.services``) with the
settings; its lifespan fills in the rest before the first request. Unit tests that skip the
lifespan set the services they use on it. Only types are imported here (under
``TYPE_CHECKING``), so every slice's routes may import this module without import cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request

if TYPE_CHECKING:
    from loopml.auth import Authenticator
    from loopml.db import Database
    from loopml.executor.backend import JobBackend
    from loopml.executor.job_tokens import JobTokens
    from loopml.executor.pipelines.service import PipelineService
    from loopml.executor.schedules import ScheduleService
    from loopml.executor.service import JobService
    from loopml.hub_config.admin.recent_logs import RecentLogs
    from loopml.monitor.ingest import CaptureService
    from loopml.monitor.policies import PolicyService
    from loopml.monitor.service import MonitorService
    from loopml.projects import ProjectService
    from loopml.registry.contract_service import ContractService
    from loopml.registry.mlflow_auth import ProjectAccess
    from loopml.registry.service import RegistryService
    from loopml.registry.tracking import JobTracking
    from loopml.server.loop import LoopTracker
    from loopml.server.service_auth import BrowserSessions
    from loopml.serving.service import EndpointService
    from loopml.settings import Settings


def _started() -> Any:
    """A service the lifespan sets: no default, so reading it before then is an AttributeError
    naming it (as ``app.state`` was)."""
    return field(init=False, repr=False)


@dataclass(eq=False)
class Services:
    """Everything the routes, the admin panel and the background tasks share."""

    settings: Settings
    sessions: BrowserSessions | None = None  # browser logins: only as the hub's service
    mlflow_access: ProjectAccess | None = None  # per-project MLflow users: only with MLflow auth
    recent_logs: RecentLogs | None = None  # the admin panel's recent warnings (its router's lifespan)
    authenticator: Authenticator = _started()
    db: Database = _started()
    tracking: JobTracking = _started()
    job_tokens: JobTokens = _started()
    projects: ProjectService = _started()
    registry: RegistryService = _started()
    contracts: ContractService = _started()
    backend: JobBackend = _started()
    jobs: JobService = _started()
    schedules: ScheduleService = _started()
    pipelines: PipelineService = _started()
    captures: CaptureService = _started()
    endpoints: EndpointService = _started()
    monitor: MonitorService = _started()
    policies: PolicyService = _started()
    loop: LoopTracker = _started()  # set with the container (it reads the services above)


def services(request: Request) -> Services:
    """FastAPI dependency: the app's :class:`Services`."""
    return request.app.state.services
