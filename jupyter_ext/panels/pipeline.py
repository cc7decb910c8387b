"""``PipelinePanel``: one pipeline run's DAG with each step's live state, outputs and job, with
Cancel and Retry; ``PipelinesPanel``: the project's pipeline runs as one table."""

from __future__ import annotations

import ipywidgets

from loopml.cli.common import fmt_time, pairs
from loopml.client import Client
from loopml.executor import PipelineChild, PipelineRun, PipelineStep, RunStatus, StepStatus
from loopml.jupyter_ext import context
from loopml.jupyter_ext.panels._base import Panel, close_tree, set_trait, wide_layout
from loopml.jupyter_ext.panels._dag import DONE, STEP_COLORS, dag_svg, picked_child
from loopml.jupyter_ext.panels._html import Raw, colored, esc, link, table
from loopml.jupyter_ext.panels.job import JobPanel

STEP_HEADERS = ("step", "kind", "status", "message", "outputs", "job")
RUN_HEADERS = ("id", "name", "status", "steps", "attempt", "user", "created")
VALUE_CHARS = 60  # an output value longer than this is cut in the table
RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})
LIMIT = 50


def badge(status: RunStatus | StepStatus) -> Raw:
    """A run's or a step's status, bold in its color (a run's statuses are a step's)."""
    return colored(status.value, STEP_COLORS.get(StepStatus(status.value), "#000"), bold=True)


def outputs_text(step: PipelineStep) -> str:
    """``accuracy=0.93, run_id=… · files: data/train.parquet``, or empty."""
    parts = [pairs(step.outputs, VALUE_CHARS)] if step.outputs else []
    if step.files:
        parts.append("files: " + ", ".join(step.files))
    return " · ".join(parts)


def steps_done(run: PipelineRun) -> str:
    """``"2/4"``: the steps that succeeded, were cached or were skipped, of all."""
    done = sum(step.status in DONE or step.status is StepStatus.SKIPPED for step in run.steps)
    return f"{done}/{len(run.steps)}"


def summary_html(run: PipelineRun, mlflow_url: str | None) -> str:
    lines = [f"<b>{esc(run.name)}</b> <code>{esc(run.id)}</code> {badge(run.status)} · "
             f"{esc(steps_done(run))} steps done"
             + (f" <small>(attempt {run.attempt})</small>" if run.attempt > 1 else "")]
    facts = [esc(f"{run.source_name} by {run.user}, created {fmt_time(run.created_at)}"
                 + (f", ended {fmt_time(run.finished_at)}" if run.finished_at else "")
                 + (f", {run.trigger.value} re-run of {run.parent_id}" if run.parent_id else ""))]
    if run.mlflow_run_id:
        label = f"MLflow run {run.mlflow_run_id}"
        facts.append(link(f"{mlflow_url}/#/runs/{run.mlflow_run_id}", label) if mlflow_url else esc(label))
    if run.no_cache:
        facts.append(esc("no cache"))
    lines.append(" · ".join(facts))
    if run.parameters:
        lines.append(esc("parameters: " + pairs(run.parameters, VALUE_CHARS)))
    if run.ignored:
        lines.append(colored("ignored: " + ", ".join(run.ignored), "#ef6c00"))
    return "<br>".join(lines)


def _job_cell(job_id: str | None) -> Raw | None:
    return Raw(f"<code>{esc(job_id)}</code>") if job_id else None


def _child_row(step: PipelineStep, child: PipelineChild, picked: PipelineChild | None) -> tuple:
    value = f"value {child.value:.4g}" if child.value is not None else ""
    mark = " (picked)" if child is picked else ""
    return (Raw(f"&nbsp;&nbsp;↳ {esc(step.id)} #{child.index}{esc(mark)}"), "child", badge(child.status),
            child.message or pairs(child.parameters, VALUE_CHARS), value, _job_cell(child.job_id))


def steps_table(run: PipelineRun) -> str:
    """One row per step (status, message, outputs, job), then one per child of a foreach/search step."""
    rows: list[tuple] = []
    for step in run.steps:
        rows.append((Raw(f"<b>{esc(step.id)}</b>"), step.kind, badge(step.status), step.message,
                     outputs_text(step), _job_cell(step.job_id)))
        picked = picked_child(step)
        rows.extend(_child_row(step, child, picked) for child in step.children)
    return table(STEP_HEADERS, rows, empty="no steps")


class PipelinePanel(Panel):
    """Pipeline run ``run_id``, refreshed every ``poll_s`` seconds until it is terminal (then
    polling stops by itself; Retry starts it again).

    Widgets: :attr:`summary` (name, status, steps done, parameters, MLflow run, ignored
    properties), :attr:`dag` (the DAG as SVG, steps left to right by depth, colored by status;
    a foreach/search step with its children count and the child it picked), :attr:`steps`
    (a table: status, message, outputs and job of each step and child), :attr:`job_buttons`
    (one button per step with a job: its :class:`JobPanel` opens below as :attr:`job_panel`),
    :attr:`cancel_button` (while the run has not ended), :attr:`retry_button` (a FAILED or
    CANCELLED run again, from its failed steps), :attr:`error`. :attr:`run` is the last
    :class:`~loopml.executor.PipelineRun` fetched.
    """

    def __init__(self, run_id: str, client: Client | None = None, project: str | None = None, *,
                 poll_s: float | None = 1.0) -> None:
        super().__init__(client, project, poll_s=poll_s)
        self.run_id = run_id
        self.run: PipelineRun | None = None
        self.job_panel: JobPanel | None = None
        self._job_keys: tuple[tuple[str, str], ...] = ()  # (step, job) of each job button
        self.summary = ipywidgets.HTML(f"pipeline run <code>{esc(run_id)}</code>: loading…")
        self.dag = ipywidgets.HTML(layout=ipywidgets.Layout(overflow="auto"))
        self.steps = ipywidgets.HTML()
        self.job_buttons = ipywidgets.HBox(layout=ipywidgets.Layout(flex_flow="row wrap"))
        self.cancel_button = ipywidgets.Button(description="Cancel", icon="stop", button_style="danger",
                                               tooltip="Cancel the run: its running jobs stop, its queued steps "
                                                       "never start", disabled=True)
        self.retry_button = ipywidgets.Button(description="Retry", icon="redo", disabled=True,
                                              tooltip="Run it again from its failed and cancelled steps, "
                                                      "keeping what succeeded")
        self.cancel_button.on_click(lambda _: self._act("Cancel", self._cancel))
        self.retry_button.on_click(lambda _: self._act("Retry", self._retry))
        self.job_box = ipywidgets.VBox()
        self.children = [self.summary, self.dag, self.steps, self.job_buttons,
                         ipywidgets.HBox([self.cancel_button, self.retry_button]), self.error, self.job_box]
        self._start_polling()

    def _update(self) -> None:
        run = self.client.pipeline_run(self.project, self.run_id)
        mlflow_url = context.mlflow_ui_url(self.client) if run.mlflow_run_id else None
        self._show(run, mlflow_url)
        if run.status.terminal:  # this refresh saw the end: nothing will change any more
            self.stop_polling()

    def _show(self, run: PipelineRun, mlflow_url: str | None) -> None:
        self.run = run
        set_trait(self.summary, "value", summary_html(run, mlflow_url))
        set_trait(self.dag, "value", dag_svg(run.steps))
        set_trait(self.steps, "value", steps_table(run))
        self._show_job_buttons(run)

    def _show_job_buttons(self, run: PipelineRun) -> None:
        keys = tuple((step.id, step.job_id) for step in run.steps if step.job_id)
        if keys == self._job_keys:
            return
        buttons = []
        for step_id, job_id in keys:
            button = ipywidgets.Button(description=f"{step_id} job", icon="external-link", layout=wide_layout(),
                                       tooltip=f"Open the panel of job {job_id} (step {step_id})")
            button.on_click(lambda _, s=step_id, j=job_id: self._act("Open job", lambda: self._open_job(s, j)))
            buttons.append(button)
        old, self._job_keys = self.job_buttons.children, keys
        self.job_buttons.children = buttons
        for widget in old:
            close_tree(widget)

    def _sync_buttons(self) -> None:
        run = self.run
        set_trait(self.cancel_button, "disabled", self.busy or run is None or run.status.terminal)
        set_trait(self.retry_button, "disabled", self.busy or run is None or run.status not in RETRYABLE)

    # -- actions (in a worker thread) ---------------------------------------------------------

    def _cancel(self) -> None:
        self.run = self.client.cancel_pipeline_run(self.project, self.run_id)

    def _retry(self) -> None:
        self.run = self.client.retry_pipeline_run(self.project, self.run_id)
        self._start_polling()  # the same run goes on: follow it again

    def _open_job(self, step_id: str, job_id: str) -> None:
        """Show job ``job_id``'s panel (step ``step_id``'s) below the run as :attr:`job_panel`,
        closing the previous one."""
        panel = JobPanel(job_id, self.client, self.project, poll_s=1.0 if self.poll_s else None)
        if self._closed:  # closed while the click was on its way: the new panel would poll unseen
            panel.close()
            return
        if not panel.polling:
            panel.refresh()
        old, self.job_panel = self.job_box.children, panel
        self.job_box.children = [ipywidgets.HTML(f"<b>step {esc(step_id)}</b>: job <code>{esc(job_id)}</code>"),
                                 panel]
        for widget in old:
            close_tree(widget)


class PipelinesPanel(Panel):
    """The project's last :data:`LIMIT` pipeline runs in :attr:`table` (id, name, status, steps
    done, attempt, user, created), newest first, refreshed every ``poll_s`` seconds;
    :attr:`runs` is the last list fetched."""

    def __init__(self, client: Client | None = None, project: str | None = None, *,
                 poll_s: float | None = 5.0) -> None:
        super().__init__(client, project, poll_s=poll_s)
        self.runs: list[PipelineRun] = []
        self.title = ipywidgets.HTML(f"<b>pipeline runs</b> of project <code>{esc(self.project)}</code>")
        self.table = ipywidgets.HTML("loading…")
        self.children = [self.title, self.table, self.error]
        self._start_polling()

    def _update(self) -> None:
        self.runs = self.client.pipeline_runs(self.project, limit=LIMIT)
        set_trait(self.table, "value", table(RUN_HEADERS, (_run_row(run) for run in self.runs),
                                             empty="no pipeline runs"))


def _run_row(run: PipelineRun) -> tuple:
    return (Raw(f"<code>{esc(run.id)}</code>"), run.name, badge(run.status), steps_done(run), run.attempt,
            run.user, fmt_time(run.created_at))
