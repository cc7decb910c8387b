"""The ``%loopml`` magics and their panels in a real JupyterLab (headless Chromium through the
hub): alice opens the ``demo`` workspace, where the magics are loaded with no ``%load_ext``,
and runs

- a ``%%loopml submit`` cell: its JobPanel ends SUCCEEDED with a full progress bar;
- ``%loopml monitor <endpoint>``: the MonitorPanel of an endpoint serving a version trained by
  a job; its "Requeue training" button runs that job again, and the new job's panel, with its
  progress, shows inside the MonitorPanel;
- ``%loopml pipelines run`` on a two-step pipeline it writes: the PipelinePanel draws the DAG
  and follows the run to SUCCEEDED; a step's job button opens that job's panel.

Screenshots of the panels (``5-job-panel``, ``6-monitor-panel``, ``7-monitor-requeued``,
``8-pipeline-panel``, ``9-pipeline-job-panel``) and of any failure land in ``test-artifacts/browser/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page

from loopml.executor.models import Job, JobStatus, Trigger
from tests.hub.browser import (
    cell_outputs,
    console_errors,
    new_notebook,
    open_workspace,
    run_cell,
    shot_of,
    type_into_cell,
    wait_or_fail,
)

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROJECT = "demo"
MODEL = "panels-iris"  # not the example's "iris": other tests of the package may register that
ENDPOINT = "panels-iris"

JOB_MS = 180_000  # a job's kernel starts on Ray, runs, and the panel's next poll sees it end
PANEL_MS = 60_000  # a magic's platform calls, then the widget renders

# ipywidgets 8 renders an IntProgress as .widget-hprogress with an inner .progress-bar whose
# style width is value/max as a percentage.
FULL_BAR = ".widget-hprogress .progress-bar[style*='width: 100%']"
STARTED_BAR = ".widget-hprogress .progress-bar:not([style*='width: 0%'])"


@pytest.fixture(scope="module")
def served_training_job(hub) -> Iterator[Job]:
    """The admin's job that trained the version ``ENDPOINT`` serves (so the version has a
    training job to requeue)."""
    admin = hub.client(hub.admin_token)
    job = admin.submit(PROJECT, EXAMPLES / "train_iris.ipynb", parameters={"C": 0.1, "model_name": MODEL},
                       resources={"cpus": 0.5})
    job = admin.wait(PROJECT, job.id, timeout=300)
    assert job.status is JobStatus.SUCCEEDED, (job.error, admin.logs(PROJECT, job.id)[-3000:])
    admin.deploy(PROJECT, f"{MODEL}@champion", ENDPOINT, replicas=1)
    yield job
    admin.delete_endpoint(PROJECT, ENDPOINT)


def _explain(page: Page, outputs: Locator, errors: list[str], what: str) -> str:
    shown = outputs.inner_text() if outputs.count() else "(no output area)"
    return (f"{what}; at {page.url} the cell's output shows:\n{shown[:3000]}\n"
            f"browser console errors: {errors[-10:]}")


@pytest.fixture
def notebook_page(hub, open_as) -> tuple[Page, Locator, list[str]]:
    """Alice's page on a new notebook in the demo workspace; the notebook; the console errors."""
    page = open_as("alice")
    page.set_viewport_size({"width": 1400, "height": 1300})  # room for a whole MonitorPanel in the screenshots
    errors = console_errors(page)
    open_workspace(page, hub.hub_url, "alice", PROJECT, step="panels")
    return page, new_notebook(page, step="panels"), errors


@pytest.mark.timeout(600)
def test_a_submit_cell_shows_a_job_panel_that_ends_succeeded_with_a_full_bar(hub, notebook_page):
    page, notebook, errors = notebook_page
    type_into_cell(page, notebook, 0, '%%loopml submit --cpus 0.5\nprint("hello from a cell job")')
    run_cell(page, notebook, 0, step="5")
    outputs = cell_outputs(notebook, 0)

    wait_or_fail(page, outputs.locator(".widget-hprogress"), PANEL_MS, "5-no-job-panel",
                 lambda: _explain(page, outputs, errors, f"no JobPanel under the cell within {PANEL_MS // 1000} s "
                                  "(are the magics autoloaded in the workspace's kernel?)"))
    succeeded = outputs.locator(".widget-html", has_text="SUCCEEDED")
    wait_or_fail(page, succeeded, JOB_MS, "5-job-not-succeeded",
                 lambda: _explain(page, outputs, errors, f"the JobPanel did not show SUCCEEDED within "
                                  f"{JOB_MS // 1000} s"))
    wait_or_fail(page, outputs.locator(FULL_BAR), PANEL_MS, "5-bar-not-full",
                 lambda: _explain(page, outputs, errors, "the JobPanel shows SUCCEEDED but its progress bar is "
                                  f"not full: {outputs.locator('.progress-bar').first.get_attribute('style')}"))
    shot_of(notebook.locator(".jp-Cell").first, "5-job-panel")

    job_id = succeeded.locator("code").first.inner_text()
    job = hub.client(hub.admin_token).job(PROJECT, job_id)
    assert (job.status, job.user, job.progress.cells_done) == (JobStatus.SUCCEEDED, "alice", job.progress.cells_total)
    assert "hello from a cell job" in outputs.locator("textarea").input_value(), "the panel's log tail lacks the print"


@pytest.mark.timeout(600)
def test_a_monitor_panel_requeues_the_training_and_shows_its_progress(hub, served_training_job, notebook_page):
    page, notebook, errors = notebook_page
    type_into_cell(page, notebook, 0, f"%loopml monitor {ENDPOINT}")
    run_cell(page, notebook, 0, step="6")
    outputs = cell_outputs(notebook, 0)

    # By text: the button's accessible name also holds its Font Awesome icon's glyph.
    requeue = outputs.locator("button", has_text="Requeue training")
    wait_or_fail(page, outputs.locator(".widget-html", has_text=f"{ENDPOINT} serves v"), PANEL_MS,
                 "6-no-monitor-panel", lambda: _explain(page, outputs, errors, "no MonitorPanel summary within "
                                                        f"{PANEL_MS // 1000} s"))
    wait_or_fail(page, requeue.and_(outputs.locator("button:not([disabled])")), PANEL_MS,
                 "6-requeue-disabled", lambda: _explain(page, outputs, errors, "the Requeue training button "
                                                        "stays disabled"))
    shot_of(notebook.locator(".jp-Cell").first, "6-monitor-panel")

    requeue.click()
    wait_or_fail(page, outputs.locator(".widget-html", has_text="training job"), PANEL_MS, "7-no-job-panel",
                 lambda: _explain(page, outputs, errors, "no training job's panel in the MonitorPanel within "
                                  f"{PANEL_MS // 1000} s of clicking Requeue training"))
    job_status = outputs.locator(".widget-html", has_text="RUNNING").or_(
        outputs.locator(".widget-html", has_text="SUCCEEDED")).first
    wait_or_fail(page, job_status, JOB_MS, "7-job-not-started",
                 lambda: _explain(page, outputs, errors, f"the requeued job neither ran nor ended within "
                                  f"{JOB_MS // 1000} s"))
    wait_or_fail(page, outputs.locator(STARTED_BAR), JOB_MS, "7-no-progress",
                 lambda: _explain(page, outputs, errors, f"the requeued job's progress bar did not move within "
                                  f"{JOB_MS // 1000} s"))
    shot_of(notebook.locator(".jp-Cell").first, "7-monitor-requeued")

    new_id = outputs.locator(".widget-html", has_text="training job").locator("code").first.inner_text()
    admin = hub.client(hub.admin_token)
    job = admin.job(PROJECT, new_id)
    assert (job.trigger, job.parent_id, job.user) == (Trigger.USER, served_training_job.id, "alice"), job
    job = admin.wait(PROJECT, new_id, timeout=JOB_MS / 1000)  # the platform stays quiet for the tests after this one
    assert job.status is JobStatus.SUCCEEDED, (job.error, admin.logs(PROJECT, new_id)[-3000:])


# A cell that writes a two-step pipeline (prepare publishes a value, train reads it as a
# parameter) into a folder of the workspace and runs it: the magic answers with its PipelinePanel.
PIPELINE_CELL = """\
import pathlib, nbformat
from nbformat.v4 import new_code_cell, new_notebook
folder = pathlib.Path("pipeline-panel")
folder.mkdir(exist_ok=True)
def write(name, source, parameters=None):
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    if parameters:
        nb.cells.append(new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.append(new_code_cell(source))
    nbformat.write(nb, str(folder / name))
write("prepare.ipynb", "import loopml\\nloopml.set_output('rows', 178)")
write("train.ipynb", "import loopml\\nloopml.set_output('accuracy', round(0.9 + rows / 10000, 4))", "rows = 0")
(folder / "panel.pipeline.yaml").write_text(
    "name: panel-demo\\nsteps:\\n"
    "  prepare: {notebook: prepare.ipynb, resources: {cpus: 0.5}}\\n"
    "  train: {notebook: train.ipynb, resources: {cpus: 0.5}, parameters: {rows: '{{ steps.prepare.outputs.rows }}'}}\\n")
%loopml pipelines run pipeline-panel/panel.pipeline.yaml"""


@pytest.mark.timeout(600)
def test_a_pipeline_panel_draws_the_dag_and_follows_the_run_to_its_end(hub, notebook_page):
    page, notebook, errors = notebook_page
    type_into_cell(page, notebook, 0, PIPELINE_CELL)
    run_cell(page, notebook, 0, step="8")
    outputs = cell_outputs(notebook, 0)

    wait_or_fail(page, outputs.locator("svg.loopml-dag"), PANEL_MS, "8-no-pipeline-panel",
                 lambda: _explain(page, outputs, errors, f"no PipelinePanel DAG under the cell within "
                                  f"{PANEL_MS // 1000} s"))
    summary = outputs.locator(".widget-html", has_text="2/2 steps done")
    wait_or_fail(page, summary, 2 * JOB_MS, "8-pipeline-not-done",
                 lambda: _explain(page, outputs, errors, f"the PipelinePanel did not show both steps done within "
                                  f"{2 * JOB_MS // 1000} s"))
    assert "SUCCEEDED" in summary.inner_text()
    nodes = outputs.locator("svg.loopml-dag g.loopml-step")
    assert [nodes.nth(i).get_attribute("data-status") for i in range(nodes.count())] == ["SUCCEEDED", "SUCCEEDED"]
    assert "accuracy=0.9178" in outputs.locator(".widget-html", has_text="rows=178").first.inner_text()
    shot_of(notebook.locator(".jp-Cell").first, "8-pipeline-panel")

    run_id = summary.locator("code").first.inner_text()
    run = hub.client(hub.admin_token).pipeline_run(PROJECT, run_id)
    assert (run.user, [s.id for s in run.steps], run.steps[1].after) == ("alice", ["prepare", "train"], ["prepare"])

    outputs.locator("button", has_text="train job").click()
    # The PipelinePanel has no progress bar: a full one is the opened JobPanel's.
    wait_or_fail(page, outputs.locator(FULL_BAR), PANEL_MS, "9-no-job-panel",
                 lambda: _explain(page, outputs, errors, "no JobPanel with a full progress bar after clicking the "
                                  "train step's job button"))
    header = outputs.locator(".widget-html", has_text="step train: job").inner_text()
    assert run.steps[1].job_id in header, header
    shot_of(notebook.locator(".jp-Cell").first, "9-pipeline-job-panel")
