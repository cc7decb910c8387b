"""The loop's state tracker: where a project stands, from workspace to feedback.

:class:`LoopTracker` composes a project's :class:`~loopml.loop_state.LoopState` on every call
from where each fact lives (nothing is copied or cached): the workspace starts its server
reported (projects), jobs (executor), registered versions (registry, through
:class:`~loopml.registry.service.RegistryService`), endpoints (serving), captured requests,
alerts and feedback labels (monitor). It is here, in the platform process, because it reads
every slice; the REST route is ``GET /projects/{project}/loop`` and the admin panel reads it
through the services container (``services.loop``).

Each stage shows the newest object that reached it:

==================  =============================================================
workspace opened    the member whose workspace server started last
code submitted      the newest job (a pipeline's steps are jobs too)
trained             the newest job that succeeded
versioned           the newest registered model version
live                the newest endpoint that runs (status RUNNING)
monitored           the newest alert; before any, the endpoint whose requests were captured last
feedback received   the endpoint that got the newest feedback label
==================  =============================================================
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends

from loopml.auth import User, member
from loopml.errors import LoopMLError
from loopml.executor.models import JobStatus
from loopml.loop_state import LoopObject, LoopStage, LoopStageName, LoopState
from loopml.registry.names import short_name
from loopml.services import Services, services

if TYPE_CHECKING:
    from loopml.executor.models import Job

log = logging.getLogger(__name__)

Reached = tuple[LoopObject, dt.datetime | None] | None
"""What a stage's reader finds: the object that reached the stage and when, or ``None``."""


def _job(job: Job, at: dt.datetime | None) -> Reached:
    return LoopObject(kind="job", id=job.id, detail=f"{job.name}, {job.status.value}"), at


class LoopTracker:
    """Reads a project's :class:`LoopState` from the services of ``state``.

    A stage whose service cannot answer now (MLflow away: :class:`~loopml.errors.LoopMLError`)
    reads as not reached, with the reason in its ``note``; the other stages are still shown.
    """

    def __init__(self, state: Services) -> None:
        self.state = state
        self.readers: list[tuple[LoopStageName, Callable[[str], Reached]]] = [
            (LoopStageName.WORKSPACE_OPENED, self._workspace),
            (LoopStageName.CODE_SUBMITTED, self._submitted),
            (LoopStageName.TRAINED, self._trained),
            (LoopStageName.VERSIONED, self._versioned),
            (LoopStageName.LIVE, self._live),
            (LoopStageName.MONITORED, self._monitored),
            (LoopStageName.FEEDBACK_RECEIVED, self._feedback),
        ]

    def of(self, project: str) -> LoopState:
        """Where ``project`` stands now (the caller checked it exists and may be read)."""
        return LoopState(project=project, stages=[self._stage(name, read, project) for name, read in self.readers])

    @staticmethod
    def _stage(name: LoopStageName, read: Callable[[str], Reached], project: str) -> LoopStage:
        try:
            found = read(project)
        except LoopMLError as exc:
            log.info("the loop stage %s of %s cannot be read now: %s", name.value, project, exc.message)
            return LoopStage(name=name, reached=False, note=f"cannot be told now: {exc.message}")
        if found is None:
            return LoopStage(name=name, reached=False)
        reached_by, at = found
        return LoopStage(name=name, reached=True, object=reached_by, at=at)

    def _workspace(self, project: str) -> Reached:
        workspace = self.state.projects.last_workspace(project)
        if workspace is None:
            return None
        return LoopObject(kind="workspace", id=workspace.user), workspace.opened_at

    def _submitted(self, project: str) -> Reached:
        newest = self.state.jobs.list(project, limit=1)
        return _job(newest[0], newest[0].created_at) if newest else None

    def _trained(self, project: str) -> Reached:
        newest = self.state.jobs.list(project, JobStatus.SUCCEEDED, limit=1)
        return _job(newest[0], newest[0].finished_at) if newest else None

    def _versioned(self, project: str) -> Reached:
        version = self.state.registry.newest_version(project)
        if version is None:
            return None
        return (LoopObject(kind="model_version", id=f"{version.name}/{version.version}",
                           detail=f"by job {version.job_id}" if version.job_id else ""), version.created_at)

    def _live(self, project: str) -> Reached:
        running = [e for e in self.state.endpoints.list(project) if e.status == "RUNNING"]
        if not running:
            return None
        endpoint = max(running, key=lambda e: e.created_at)
        serves = f"serving {short_name(project, endpoint.model)} v{endpoint.version}"
        if endpoint.canary_version is not None:
            serves += f", canary v{endpoint.canary_version}"
        return LoopObject(kind="endpoint", id=endpoint.name, detail=serves), endpoint.created_at

    def _monitored(self, project: str) -> Reached:
        alerts = self.state.policies.alerts(project)  # newest first
        if alerts:
            alert = alerts[0]
            return (LoopObject(kind="alert", id=alert.id,
                               detail=f"{alert.kind} on {alert.endpoint} v{alert.version}, {alert.status}"),
                    alert.opened_at)
        captured = self.state.monitor.last_capture(project)
        if captured is None:
            return None
        endpoint, at = captured
        return LoopObject(kind="endpoint", id=endpoint, detail="requests captured, no alert yet"), at

    def _feedback(self, project: str) -> Reached:
        labelled = self.state.monitor.last_feedback(project)
        if labelled is None:
            return None
        endpoint, at = labelled
        return LoopObject(kind="endpoint", id=endpoint, detail="labelled by feedback"), at


router = APIRouter(tags=["projects"])


@router.get("/projects/{project}/loop", response_model=LoopState)
def project_loop(project: str, user: User = Depends(member), state: Services = Depends(services)):
    """Where the project stands in the loop: each stage (workspace opened, code submitted, trained,
    versioned, live, monitored, feedback received), whether it was reached, by what and when."""
    return state.loop.of(project)
