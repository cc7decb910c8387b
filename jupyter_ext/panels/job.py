"""``JobPanel``: one job's status, per-cell progress, log tail and links, with Cancel and Requeue."""

from __future__ import annotations

import ipywidgets
import traitlets

from loopml.cli.common import fmt_time
from loopml.client import Client
from loopml.executor import Job, JobStatus
from loopml.jupyter_ext import context
from loopml.jupyter_ext.panels._base import Panel, close_tree, set_trait
from loopml.jupyter_ext.panels._html import Raw, esc, link, status_badge

LOG_LINES = 50

_BAR_STYLES = {JobStatus.RUNNING: "info", JobStatus.SUCCEEDED: "success", JobStatus.FAILED: "danger",
               JobStatus.CANCELLED: "warning"}


def outcome_text(job: Job) -> str:
    """How the job ended, or what it waits for: its failure, else its message."""
    if job.error is not None:
        where = f" in cell {job.error.cell_index}" if job.error.cell_index is not None else ""
        what = f"{job.error.ename}: {job.error.evalue}" if job.error.ename else (job.error.message or "")
        return f"{job.error.reason}{where}" + (f": {what}" if what else "")
    return job.message or ""


class JobPanel(Panel):
    """One job, refreshed every ``poll_s`` seconds until it is terminal (then polling stops by itself).

    Widgets: :attr:`status` (HTML: status name and message), :attr:`progress` (cells done of
    the total; full when SUCCEEDED), :attr:`log` (the last :data:`LOG_LINES` log lines),
    :attr:`links` (output notebook, MLflow run, registered models), :attr:`cancel_button`,
    :attr:`requeue_button` (the new job's panel then shows below as :attr:`child_panel`),
    :attr:`error`. :attr:`job` is the last :class:`~loopml.executor.models.Job` fetched.
    """

    # The contract names the log tail ``.log``, which shadows Widget's Logger trait; ipywidgets
    # uses that logger only to report errors of frontend messages outside IPython.
    log = traitlets.Instance(ipywidgets.Textarea, allow_none=True)

    def __init__(self, job_id: str, client: Client | None = None, project: str | None = None, *,
                 poll_s: float | None = 1.0) -> None:
        super().__init__(client, project, poll_s=poll_s)
        self.job_id = job_id
        self.job: Job | None = None
        self.child_panel: JobPanel | None = None
        self.status = ipywidgets.HTML(f"job <code>{esc(job_id)}</code>: loading…")
        self.progress = ipywidgets.IntProgress(value=0, min=0, max=1, description="cells",
                                               layout=ipywidgets.Layout(width="320px"))
        self.progress_text = ipywidgets.Label("")
        self.log = ipywidgets.Textarea(value="", disabled=True, placeholder="no log yet",
                                       layout=ipywidgets.Layout(width="100%", height="160px"))
        self.links = ipywidgets.HTML()
        self.cancel_button = ipywidgets.Button(description="Cancel", icon="stop", button_style="danger",
                                               tooltip="Cancel the job", disabled=True)
        self.requeue_button = ipywidgets.Button(description="Requeue", icon="redo",
                                                tooltip="Run the job again as a new job", disabled=True)
        self.cancel_button.on_click(lambda _: self._act("Cancel", self._cancel))
        self.requeue_button.on_click(lambda _: self._act("Requeue", self._requeue))
        self.requeued = ipywidgets.VBox()
        self.children = [
            self.status,
            ipywidgets.HBox([self.progress, self.progress_text]),
            self.links,
            self.log,
            ipywidgets.HBox([self.cancel_button, self.requeue_button]),
            self.error,
            self.requeued,
        ]
        self._start_polling()

    def _update(self) -> None:
        job = self.client.job(self.project, self.job_id)
        text = self.client.logs(self.project, self.job_id)
        mlflow_url = context.mlflow_ui_url(self.client) if job.mlflow_run_id else None
        self.job = job
        self._show(job, text, mlflow_url)
        if job.status.terminal:  # this refresh saw the end: nothing will change any more
            self.stop_polling()

    def _show(self, job: Job, text: str, mlflow_url: str | None) -> None:
        detail = outcome_text(job)
        status = (f"<b>{esc(job.name)}</b> <code>{esc(job.id)}</code> {status_badge(job.status)}"
                  + (f" — {esc(detail)}" if detail else "")
                  + (f" <small>(attempt {job.attempt})</small>" if job.attempt > 1 else ""))
        set_trait(self.status, "value", status)
        total, done = job.progress.cells_total, job.progress.cells_done
        if total:
            top, value = total, total if job.status is JobStatus.SUCCEEDED else min(done, total)
        else:  # no cell counted yet (or an empty notebook): a bar of one step
            top, value = 1, int(job.status is JobStatus.SUCCEEDED)
        set_trait(self.progress, "max", top)
        set_trait(self.progress, "value", value)
        set_trait(self.progress, "bar_style", _BAR_STYLES.get(job.status, ""))
        set_trait(self.progress_text, "value", f"{done}/{total} cells")
        set_trait(self.log, "value", "\n".join(text.splitlines()[-LOG_LINES:]))
        set_trait(self.links, "value", self._links(job, mlflow_url))

    def _links(self, job: Job, mlflow_url: str | None) -> str:
        output = self.client.job_output_url(self.project, job.id)
        parts = [link(output, "output notebook")]
        if job.mlflow_run_id:
            run = f"MLflow run {job.mlflow_run_id}"
            parts.append(link(f"{mlflow_url}/#/runs/{job.mlflow_run_id}", run) if mlflow_url else esc(run))
        if job.models:
            parts.append(esc("registered " + ", ".join(f"{m.name} v{m.version}" for m in job.models)))
        parts.append(esc(f"by {job.user}, created {fmt_time(job.created_at)}"))
        return Raw(" · ".join(parts))

    def _sync_buttons(self) -> None:
        loaded = self.job is not None
        set_trait(self.cancel_button, "disabled", self.busy or not loaded or self.job.status.terminal)
        set_trait(self.requeue_button, "disabled", self.busy or not loaded)

    # -- actions (in a worker thread) ---------------------------------------------------------

    def _cancel(self) -> None:
        self.job = self.client.cancel(self.project, self.job_id)

    def _requeue(self) -> None:
        new = self.client.requeue(self.project, self.job_id)
        self._show_child(JobPanel(new.id, self.client, self.project, poll_s=self.poll_s))

    def _show_child(self, panel: JobPanel) -> None:
        """Show ``panel`` (the requeued job's) below this one as :attr:`child_panel`, closing the previous one."""
        self.child_panel = panel
        if not panel.polling:
            panel.refresh()
        note = ipywidgets.HTML(f"requeued as job <code>{esc(panel.job_id)}</code>:")
        old_children = self.requeued.children
        self.requeued.children = [note, panel]
        for widget in old_children:  # the previous note and panel
            close_tree(widget)

