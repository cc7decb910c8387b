"""Cron schedules: the platform service submits a job template, or runs a pipeline, on time.

Each schedule stores its next due time in the DB, so schedules survive restarts; a tick
missed while the service was down fires once when it comes back (no burst of catch-up
runs). Cron expressions are croniter's: 5 fields, or 6 with seconds last.

A schedule fires only while its user is a member of its project: checked at every due time
(so leaving a hub group counts) and when the project's member list changes. Otherwise it is
paused, with the reason in ``paused_reason``, and fires again once the user is back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import uuid
from typing import TYPE_CHECKING

from croniter import CroniterBadDateError, croniter
from sqlalchemy import select

from loopml.db import Database, utcnow
from loopml.errors import InvalidInput, NotFound, TooMany
from loopml.executor.models import Job, JobSubmit, PipelineSubmit, Schedule, ScheduleCreate, Trigger
from loopml.executor.orm import ScheduleRow
from loopml.executor.params import validate_parameters
from loopml.executor.pipelines.models import PipelineRun
from loopml.executor.service import JobService, read_notebook
from loopml.paging import DEFAULT_LIMIT, Page
from loopml.projects import ProjectService

if TYPE_CHECKING:
    from loopml.executor.pipelines.service import PipelineService

log = logging.getLogger(__name__)

NOTEBOOK, PIPELINE = "notebook", "pipeline"

TICK_S = 0.5
FIRES_CHECKED = 200  # next fire times compared against the minimum interval (about 40 ms)


def next_time(cron: str, after: dt.datetime) -> dt.datetime:
    return croniter(cron, after).get_next(dt.datetime)


def check_cron(cron: str, min_interval_s: float = 0.0, now: dt.datetime | None = None) -> str:
    """``cron`` if valid, fires at all, and never twice within ``min_interval_s`` over its
    next :data:`FIRES_CHECKED` fire times after ``now``; else :class:`InvalidInput` saying why."""
    fields = cron.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(cron):
        raise InvalidInput(
            f"invalid cron expression {cron!r}: use 5 fields 'minute hour day month weekday' "
            "(e.g. '0 3 * * *'), or 6 with seconds last (e.g. '* * * * * */30')",
            field="cron",
        )
    fires = croniter(cron, now or utcnow())
    try:
        previous = fires.get_next(dt.datetime)
        for _ in range(FIRES_CHECKED):
            current = fires.get_next(dt.datetime)
            if (current - previous).total_seconds() < min_interval_s:
                raise InvalidInput(
                    f"cron expression {cron!r} fires {previous:%Y-%m-%d %H:%M:%S} and {current:%H:%M:%S}, closer than "
                    f"the minimum interval of {min_interval_s:g} s between runs (schedule_min_interval_s): "
                    "fire less often, e.g. '*/5 * * * *' for every 5 minutes", field="cron")
            previous = current
    except CroniterBadDateError:
        raise InvalidInput(f"cron expression {cron!r} never fires (e.g. February 30th): fix its day fields",
                           field="cron") from None
    return cron


def to_schedule(row: ScheduleRow) -> Schedule:
    pipeline = row.template.get("source_name") if row.kind == PIPELINE else None
    return Schedule(id=row.id, project=row.project, user=row.user, name=row.name, cron=row.cron,
                    parameters=row.template.get("parameters", {}), next_run_at=row.next_run_at,
                    last_run_at=row.last_run_at, last_job_id=row.last_job_id, pipeline=pipeline,
                    last_pipeline_run_id=row.last_pipeline_run_id, last_skipped_at=row.last_skipped_at,
                    last_skip_reason=row.last_skip_reason, paused_reason=row.paused_reason, created_at=row.created_at)


class ScheduleService:
    """Stores schedules and fires them from :meth:`run`."""

    def __init__(self, db: Database, jobs: JobService, *, projects: ProjectService | None = None,
                 pipelines: PipelineService | None = None) -> None:
        """``projects`` answers whether a schedule's user is still a member (None: not checked);
        ``pipelines`` runs the pipeline schedules (None: they cannot be created)."""
        self.db = db
        self.jobs = jobs
        self.projects = projects
        self.pipelines = pipelines
        # held while a schedule is checked and its job submitted, and by delete: once delete
        # returns, no job of that schedule is still on its way in
        self._firing = threading.Lock()

    def _pause_reason(self, user: str, project: str) -> str | None:
        """Why ``user``'s schedules in ``project`` must not fire, or None."""
        if self.projects is None or self.projects.member_now(user, project):
            return None
        return (f"{user} is no longer a member of project {project}: the schedule is paused and fires again "
                f"once {user} is a member (or delete it)")

    def check_members(self, project: str) -> None:
        """Pause the schedules of ``project`` whose user is no longer a member; resume those
        whose user is one again (called when the project's member list changes)."""
        with self.db.session() as session:
            rows = session.scalars(select(ScheduleRow).where(ScheduleRow.project == project)).all()
            reasons = {user: self._pause_reason(user, project) for user in {r.user for r in rows}}
            for row in rows:
                if row.paused_reason != reasons[row.user]:
                    log.info("schedule %s of %s: %s", row.id, row.user, reasons[row.user] or "resumed")
                    row.paused_reason = reasons[row.user]

    def create(self, user: str, project: str, spec: ScheduleCreate) -> Schedule:
        check_cron(spec.cron, self.jobs.settings.schedule_min_interval_s)
        if spec.pipeline is not None:
            kind, template, name = PIPELINE, spec.pipeline, self._check_pipeline(project, spec.pipeline)
        else:
            nb = read_notebook(spec.template.notebook, self.jobs.settings.max_notebook_mb)
            template = spec.template.model_copy(update={"parameters": validate_parameters(
                nb, spec.template.parameters, spec.template.kernel_name or "python3")})
            kind, name = NOTEBOOK, template.name or "notebook.ipynb"
        now = utcnow()
        row = ScheduleRow(id=uuid.uuid4().hex[:16], project=project, user=user, name=spec.name or name,
                          cron=spec.cron, kind=kind, template=template.model_dump(mode="json"),
                          next_run_at=next_time(spec.cron, now), created_at=now)
        with self.db.session() as session:
            session.add(row)
        return to_schedule(row)

    def _check_pipeline(self, project: str, spec: PipelineSubmit) -> str:
        """The pipeline's name once it and its overrides pass every check a run makes first."""
        if self.pipelines is None:
            raise InvalidInput("this platform runs no pipelines: schedule a notebook instead", field="pipeline")
        from loopml.executor.pipelines.engine import resolve_parameters

        pipeline = self.pipelines.validate(project, spec.source_name, spec.content, spec.decoded_files())
        resolve_parameters(pipeline, spec.parameters)
        return pipeline.name

    def _start(self, schedule_id: str, user: str, project: str, kind: str, template: dict) -> Job | PipelineRun:
        if kind == PIPELINE:
            if self.pipelines is None:
                raise InvalidInput("this platform runs no pipelines", field="pipeline")
            spec = PipelineSubmit.model_validate(template)
            return self.pipelines.run_blocking(user, project, spec.source_name, spec.content, spec.decoded_files(),
                                               spec.parameters, spec.no_cache, trigger=Trigger.SCHEDULE)
        return self.jobs.submit(user, project, JobSubmit(**template), trigger=Trigger.SCHEDULE,
                                schedule_id=schedule_id)

    def list(self, project: str, window: Page = Page(DEFAULT_LIMIT, 0)) -> list[Schedule]:
        with self.db.session() as session:
            rows = session.scalars(select(ScheduleRow).where(ScheduleRow.project == project)
                                   .order_by(ScheduleRow.created_at, ScheduleRow.id)
                                   .limit(window.limit).offset(window.offset))
            return [to_schedule(r) for r in rows]

    def get(self, project: str, schedule_id: str) -> Schedule:
        with self.db.session() as session:
            return to_schedule(self._row(session, project, schedule_id))

    def delete(self, project: str, schedule_id: str) -> None:
        with self._firing, self.db.session() as session:
            session.delete(self._row(session, project, schedule_id))

    @staticmethod
    def _row(session, project: str, schedule_id: str) -> ScheduleRow:
        row = session.get(ScheduleRow, schedule_id)
        if row is None or row.project != project:
            raise NotFound(f"schedule {schedule_id!r} does not exist in project {project!r}", schedule_id=schedule_id)
        return row

    async def run(self) -> None:
        """Fire due schedules until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.fire_due)
            except Exception:
                log.exception("firing schedules failed; will retry")
            await asyncio.sleep(TICK_S)

    def fire_due(self) -> list[str]:
        """Submit one job (or start one pipeline run) for every due schedule; returns their ids.

        Each submit commits on its own before the schedule row moves on (one writer at a
        time: SQLite refuses to upgrade a read snapshot that another writer changed).
        """
        now = utcnow()
        with self.db.session() as session:
            due = [(r.id, r.user, r.project, r.kind, r.template, r.cron, r.paused_reason)
                   for r in session.scalars(select(ScheduleRow).where(ScheduleRow.next_run_at <= now))]
        fired = []
        for schedule_id, user, project, kind, template, cron, paused in due:
            try:
                reason = self._pause_reason(user, project)
            except Exception:
                log.exception("schedule %s: cannot tell whether %s is a member; retrying next tick", schedule_id, user)
                continue
            if reason or paused:  # a paused schedule skips its run; one whose user is back resumes
                with self.db.session() as session:
                    row = session.get(ScheduleRow, schedule_id)
                    if row is not None:
                        row.paused_reason = reason
                        if reason:
                            row.next_run_at = next_time(cron, now)
                if reason:
                    log.warning("schedule %s did not fire: %s", schedule_id, reason)
                    continue
            try:
                with self._firing:
                    with self.db.session() as session:  # deleted since it was found due
                        if session.get(ScheduleRow, schedule_id) is None:
                            continue
                    job = self._start(schedule_id, user, project, kind, template)
            except (TooMany, InvalidInput) as full:  # a full queue, or a pipeline a platform change broke  # the run is skipped, not retried: retries would pile up behind the queue
                log.warning("schedule %s skipped its run: %s", schedule_id, full.message)
                job = None
                skipped = full.message
            except Exception:
                log.exception("schedule %s could not submit its job; retrying next tick", schedule_id)
                continue
            with self.db.session() as session:
                row = session.get(ScheduleRow, schedule_id)
                if row is not None:
                    if job is None:
                        row.last_skipped_at, row.last_skip_reason = now, skipped
                    elif isinstance(job, PipelineRun):
                        row.last_run_at, row.last_pipeline_run_id = now, job.id
                    else:
                        row.last_run_at, row.last_job_id = now, job.id
                    row.next_run_at = next_time(cron, now)
            if job is not None:
                fired.append(job.id)
        return fired
