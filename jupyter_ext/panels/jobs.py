"""``JobsPanel``: the project's jobs, newest first, as one table."""

from __future__ import annotations

import ipywidgets

from loopml._client_wire import job_status
from loopml.cli.common import fmt_time
from loopml.client import Client
from loopml.executor import Job, JobStatus
from loopml.jupyter_ext.panels._base import Panel, set_trait
from loopml.jupyter_ext.panels._html import Raw, esc, status_badge, table

HEADERS = ("id", "name", "status", "progress", "user", "created")
LIMIT = 50


class JobsPanel(Panel):
    """The project's last :data:`LIMIT` jobs (only those in ``status`` if given) in :attr:`table`
    (id, name, status, progress, user, created), refreshed every ``poll_s`` seconds;
    :attr:`jobs` is the last list fetched. :class:`~loopml.errors.InvalidInput` from the
    constructor for an unknown ``status``.
    """

    def __init__(self, client: Client | None = None, project: str | None = None, *,
                 status: JobStatus | str | None = None, poll_s: float | None = 2.0) -> None:
        self.status_filter = None if status is None else job_status(status)
        super().__init__(client, project, poll_s=poll_s)
        self.jobs: list[Job] = []
        what = f"{self.status_filter.value} jobs" if self.status_filter else "jobs"
        self.title = ipywidgets.HTML(f"<b>{esc(what)}</b> of project <code>{esc(self.project)}</code>")
        self.table = ipywidgets.HTML("loading…")
        self.children = [self.title, self.table, self.error]
        self._start_polling()

    def _update(self) -> None:
        self.jobs = self.client.jobs(self.project, status=self.status_filter, limit=LIMIT)
        set_trait(self.table, "value", table(HEADERS, (_row(job) for job in self.jobs), empty="no jobs"))


def _row(job: Job) -> tuple:
    done, total = job.progress.cells_done, job.progress.cells_total
    return (Raw(f"<code>{esc(job.id)}</code>"), job.name, status_badge(job.status), f"{done}/{total}",
            job.user, fmt_time(job.created_at))
