"""Cron schedules: the platform service submits a job template on time.

Each schedule stores its next due time in the DB, so schedules survive restarts; a tick
missed while the service was down fires once when it comes back (no burst of catch-up
runs). Cron expressions are croniter's: 5 fields, or 6 with seconds last.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid

from croniter import croniter
from sqlalchemy import select

from loopml.db import Database, utcnow
from loopml.errors import InvalidInput, NotFound
from loopml.executor.models import JobSubmit, Schedule, ScheduleCreate, Trigger
from loopml.executor.orm import ScheduleRow
from loopml.executor.params import validate_parameters
from loopml.executor.service import JobService, read_notebook

log = logging.getLogger(__name__)

TICK_S = 0.5


def next_time(cron: str, after: dt.datetime) -> dt.datetime:
    return croniter(cron, after).get_next(dt.datetime)


def check_cron(cron: str) -> str:
    fields = cron.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(cron):
        raise InvalidInput(
            f"invalid cron expression {cron!r}: use 5 fields 'minute hour day month weekday' "
            "(e.g. '0 3 * * *'), or 6 with seconds last (e.g. '* * * * * */30')",
            field="cron",
        )
    return cron


def to_schedule(row: ScheduleRow) -> Schedule:
    return Schedule(id=row.id, project=row.project, user=row.user, name=row.name, cron=row.cron,
                    parameters=row.template.get("parameters", {}), next_run_at=row.next_run_at,
                    last_run_at=row.last_run_at, last_job_id=row.last_job_id, created_at=row.created_at)


class ScheduleService:
    """Stores schedules and fires them from :meth:`run`."""

    def __init__(self, db: Database, jobs: JobService) -> None:
        self.db = db
        self.jobs = jobs

    def create(self, user: str, project: str, spec: ScheduleCreate) -> Schedule:
        check_cron(spec.cron)
        nb = read_notebook(spec.template.notebook, self.jobs.settings.max_notebook_mb)
        template = spec.template.model_copy(update={"parameters": validate_parameters(nb, spec.template.parameters, spec.template.kernel_name or "python3")})
        now = utcnow()
        row = ScheduleRow(id=uuid.uuid4().hex[:16], project=project, user=user,
                          name=spec.name or template.name or "notebook.ipynb", cron=spec.cron,
                          template=template.model_dump(mode="json"), next_run_at=next_time(spec.cron, now),
                          created_at=now)
        with self.db.session() as session:
            session.add(row)
        return to_schedule(row)

    def list(self, project: str) -> list[Schedule]:
        with self.db.session() as session:
            rows = session.scalars(select(ScheduleRow).where(ScheduleRow.project == project).order_by(ScheduleRow.created_at))
            return [to_schedule(r) for r in rows]

    def get(self, project: str, schedule_id: str) -> Schedule:
        with self.db.session() as session:
            return to_schedule(self._row(session, project, schedule_id))

    def delete(self, project: str, schedule_id: str) -> None:
        with self.db.session() as session:
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
        """Submit one job for every due schedule; returns the new job ids.

        Each submit commits on its own before the schedule row moves on (one writer at a
        time: SQLite refuses to upgrade a read snapshot that another writer changed).
        """
        now = utcnow()
        with self.db.session() as session:
            due = [(r.id, r.user, r.project, r.template, r.cron)
                   for r in session.scalars(select(ScheduleRow).where(ScheduleRow.next_run_at <= now))]
        fired = []
        for schedule_id, user, project, template, cron in due:
            try:
                job = self.jobs.submit(user, project, JobSubmit(**template), trigger=Trigger.SCHEDULE,
                                       schedule_id=schedule_id)
            except Exception:
                log.exception("schedule %s could not submit its job; retrying next tick", schedule_id)
                continue
            with self.db.session() as session:
                row = session.get(ScheduleRow, schedule_id)
                if row is not None:
                    row.last_run_at, row.last_job_id = now, job.id
                    row.next_run_at = next_time(cron, now)
            fired.append(job.id)
        return fired
