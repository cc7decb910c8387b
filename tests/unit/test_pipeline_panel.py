"""The PipelinePanel (and the pipeline runs' list panel) over a real ``loopml.Client`` whose
transport is the panels' fake platform, with the pipeline routes added: the DAG's layout and
colors, the step table, a step's job panel, Cancel and Retry, the red error line, and polling
that stops when the run has ended."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from loopml.client import Client
from loopml.executor import PipelineRun, PipelineStep, StepStatus
from loopml.jupyter_ext import magics, poller
from loopml.jupyter_ext.panels import JobPanel, PipelinePanel, PipelinesPanel
from loopml.jupyter_ext.panels._dag import STEP_COLORS, children_text, dag_svg, depths, layout
from tests.unit.payloads import job_json
from tests.unit.test_panels import (  # noqa: F401 (fixtures)
    NOW,
    RED,
    URL,
    FakePlatform,
    no_ambient_project,
    opened,
    poller_threads,
    until,
)


def step_json(step_id: str, status: str = "QUEUED", after: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "kind": "notebook", "after": list(after), "status": status, "message": None,
            "job_id": None, "parameters": {}, "outputs": {}, "files": {}, "children": [], **fields}


def child_json(index: int, status: str = "SUCCEEDED", **fields: Any) -> dict[str, Any]:
    return {"index": index, "parameters": {"C": [0.01, 0.1, 1.0][index]}, "status": status, "message": None,
            "job_id": f"c{index}", "value": None, **fields}


def run_json(status: str = "RUNNING", steps: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    return {"id": "r1", "project": "demo", "user": "alice", "name": "wine-retrain",
            "source_name": "wine.pipeline.yaml", "status": status, "attempt": 1, "parameters": {"C": 1.0},
            "no_cache": False, "steps": steps if steps is not None else two_steps(), "ignored": [],
            "mlflow_run_id": None, "trigger": "user", "parent_id": None, "created_at": NOW, "updated_at": NOW,
            "finished_at": None, **fields}


def two_steps(second: str = "RUNNING") -> list[dict[str, Any]]:
    return [step_json("prepare", "SUCCEEDED", job_id="j1", outputs={"rows": 178},
                      files={"data/train.csv": {"sha256": "ab", "run_id": "m1", "artifact_path": "data/train.csv"}}),
            step_json("train", second, after=("prepare",), job_id="j2" if second != "QUEUED" else None)]


@dataclass
class PipelinePlatform(FakePlatform):
    """The panels' fake with pipeline run ``r1``; ``run_script`` lists the states it goes
    through, one per GET (the last one stays)."""

    run: dict[str, Any] = field(default_factory=run_json)
    run_script: list[dict[str, Any]] = field(default_factory=list)

    def _pipeline_runs(self, body):
        return 200, [self.run, run_json("SUCCEEDED", id="r0", attempt=2, steps=two_steps("SUCCEEDED"))]

    def _pipeline_run(self, body, run_id):
        if run_id != "r1":
            return 404, {"message": f"pipeline run {run_id!r} does not exist in project 'demo'", "reason": "not_found"}
        if self.run_script:
            self.run = self.run_script.pop(0) if len(self.run_script) > 1 else self.run_script[0]
        return 200, self.run

    def _cancel_run(self, body, run_id):
        self.run = run_json("CANCELLED", steps=two_steps("CANCELLED"))
        return 200, self.run

    def _retry_run(self, body, run_id):
        self.run = run_json("RUNNING", attempt=2)
        return 200, self.run

    routes = [
        (r"GET /projects/demo/pipelines", _pipeline_runs),
        (r"GET /projects/demo/pipelines/([^/]+)", _pipeline_run),
        (r"POST /projects/demo/pipelines/([^/]+)/cancel", _cancel_run),
        (r"POST /projects/demo/pipelines/([^/]+)/retry", _retry_run),
        *FakePlatform.routes,
    ]


@pytest.fixture
def platform() -> PipelinePlatform:
    platform = PipelinePlatform()
    platform.jobs["j2"] = job_json("j2", "RUNNING", 1, 4, name="train.ipynb")
    return platform


@pytest.fixture
def client(platform) -> Client:
    with Client(URL, "tok", transport=httpx.MockTransport(platform)) as client:
        yield client


def steps(*specs: tuple[str, tuple[str, ...]]) -> list[PipelineStep]:
    return [PipelineStep.model_validate(step_json(step_id, after=after)) for step_id, after in specs]


def nodes(svg: str) -> dict[str, str]:
    """Each step's node in the SVG: step id -> its ``<g>``."""
    return dict(re.findall(r'<g class="loopml-step" data-step="([^"]*)"[^>]*>(.*?)</g>', svg, re.S))


# -- the DAG ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("specs", "expected"), [
    pytest.param([("a", ()), ("b", ("a",)), ("c", ("b",))], {"a": (0, 0), "b": (1, 0), "c": (2, 0)}, id="chain"),
    pytest.param([("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("b", "c"))],
                 {"a": (0, 0), "b": (1, 0), "c": (1, 1), "d": (2, 0)}, id="diamond"),
    pytest.param([("a", ()), ("b", ()), ("c", ("a", "b"))], {"a": (0, 0), "b": (0, 1), "c": (1, 0)},
                 id="two-roots"),
    pytest.param([("late", ("mid",)), ("mid", ("root",)), ("root", ())],
                 {"late": (2, 0), "mid": (1, 0), "root": (0, 0)}, id="file-order-is-not-dag-order"),
    pytest.param([("a", ()), ("b", ("a",)), ("c", ("a", "b"))], {"a": (0, 0), "b": (1, 0), "c": (2, 0)},
                 id="the-longest-path-decides"),
    pytest.param([("a", ("gone",)), ("b", ("a",))], {"a": (0, 0), "b": (1, 0)}, id="unknown-upstream-ignored"),
    pytest.param([("a", ("b",)), ("b", ("a",))], {"a": (1, 0), "b": (0, 0)}, id="a-cycle-is-cut"),
])
def test_steps_are_placed_by_depth_then_file_order(specs, expected):
    placed = layout(steps(*specs))
    assert placed == expected
    assert depths(steps(*specs)) == {step_id: column for step_id, (column, _) in expected.items()}


def test_the_dag_has_a_node_per_step_and_an_arrow_per_dependency():
    dag = steps(("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("b", "c", "b")))
    svg = dag_svg(dag)
    assert list(nodes(svg)) == ["a", "b", "c", "d"]
    assert svg.count("<path") == 4 and svg.count("<polygon") == 4  # a→b, a→c, b→d, c→d: the repeated b once
    width = int(re.search(r'<svg[^>]* width="(\d+)"', svg).group(1))
    assert width > 3 * 150  # three columns side by side


@pytest.mark.parametrize("status", list(StepStatus))
def test_each_node_is_drawn_in_its_status_color(status):
    [step] = [PipelineStep.model_validate(step_json("s", status.value))]
    node = nodes(dag_svg([step]))["s"]
    color = STEP_COLORS[status]
    assert f'stroke="{color}"' in node and re.search(f'<text[^>]* fill="{color}"[^>]*>{status.value}</text>', node)
    assert ('stroke-dasharray' in node) is (status is StepStatus.SKIPPED)


def test_every_status_has_its_own_color():
    assert set(STEP_COLORS) == set(StepStatus) and len(set(STEP_COLORS.values())) == len(StepStatus)


def test_step_text_is_escaped_in_the_dag():
    step = PipelineStep.model_validate(step_json("<b>x</b>", "FAILED", message="</title><script>1</script>"))
    svg = dag_svg([step])
    assert "<script>" not in svg and "<b>x" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg


@pytest.mark.parametrize(("status", "children", "text"), [
    pytest.param("SUCCEEDED", [child_json(0, value=0.8), child_json(1, value=0.9), child_json(2, value=0.7)],
                 "3 children · picked #1", id="picked"),
    pytest.param("RUNNING", [child_json(0), child_json(1, "RUNNING"), child_json(2, "QUEUED")],
                 "3 children, 1 done", id="running"),
    pytest.param("FAILED", [child_json(0, "FAILED")], "1 child, 1 done", id="failed"),
    pytest.param("SUCCEEDED", [], "", id="no-children"),
])
def test_a_foreach_step_shows_its_children_and_the_picked_one(status, children, text):
    step = PipelineStep.model_validate(step_json("train", status, children=children,
                                                 job_id="c1" if status == "SUCCEEDED" else None))
    assert children_text(step) == text
    node = nodes(dag_svg([step]))["train"]
    assert (text in node) if text else node.count("<text") == 3


# -- the panel --------------------------------------------------------------------------------


def test_the_panel_shows_the_run_its_dag_and_its_steps(client, platform, opened):
    platform.run = run_json(steps=[*two_steps(), step_json("report", after=("train",))], mlflow_run_id="mrun",
                            ignored=["runtime_image"])
    panel = PipelinePanel("r1", client, "demo", poll_s=None)
    opened.append(panel)
    assert not panel.polling and platform.requests == []  # the constructor fetches nothing

    panel.refresh()

    assert panel.run.id == "r1" and panel.error.value == ""
    summary = panel.summary.value
    assert "wine-retrain" in summary and "RUNNING" in summary and "1/3 steps done" in summary
    assert 'href="http://mlflow.test:5000/#/runs/mrun"' in summary and "parameters: C=1.0" in summary
    assert "ignored: runtime_image" in summary
    assert list(nodes(panel.dag.value)) == ["prepare", "train", "report"]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", panel.steps.value)]
    rows = [row for row in rows if row]
    assert [row[0] for row in rows] == ["<b>prepare</b>", "<b>train</b>", "<b>report</b>"]
    assert "SUCCEEDED" in rows[0][2] and rows[0][4] == "rows=178 · files: data/train.csv"
    assert rows[0][5] == "<code>j1</code>" and rows[2][5] == "—"
    assert [b.description for b in panel.job_buttons.children] == ["prepare job", "train job"]
    assert not panel.cancel_button.disabled and panel.retry_button.disabled


def test_a_foreach_steps_children_are_rows_under_it(client, platform, opened):
    children = [child_json(0, value=0.8), child_json(1, value=0.93), child_json(2, "FAILED", message="cell 2 raised")]
    platform.run = run_json("SUCCEEDED", steps=[step_json("train", "SUCCEEDED", job_id="c1", children=children,
                                                          message="child 1 (C=0.1) is the best: accuracy = 0.93")])
    panel = PipelinePanel("r1", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", panel.steps.value)]
    rows = [row for row in rows if row]
    assert len(rows) == 4 and "is the best" in rows[0][3]
    assert "train #1 (picked)" in rows[2][0] and rows[2][4] == "value 0.93" and rows[2][5] == "<code>c1</code>"
    assert rows[1][3] == "C=0.01" and rows[3][3] == "cell 2 raised" and "FAILED" in rows[3][2]
    assert "3 children · picked #1" in panel.dag.value


def test_a_steps_job_button_opens_its_job_panel_below(client, platform, opened):
    panel = PipelinePanel("r1", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    train = panel.job_buttons.children[1]
    train.click()
    assert panel.wait_actions(5) and panel.error.value == ""
    job = panel.job_panel
    assert isinstance(job, JobPanel) and job.job_id == "j2" and job in panel.job_box.children
    assert "RUNNING" in job.status.value and "step train" in panel.job_box.children[0].value

    panel.job_buttons.children[0].click()  # another step's job replaces it
    assert panel.wait_actions(5)
    assert panel.job_panel.job_id == "j1" and job.status.comm is None and job not in panel.job_box.children


def test_job_buttons_follow_the_steps_that_got_a_job(client, platform, opened):
    platform.run_script = [run_json(steps=two_steps("QUEUED")), run_json(steps=two_steps("RUNNING"))]
    panel = PipelinePanel("r1", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    first = panel.job_buttons.children
    assert [b.description for b in first] == ["prepare job"]
    panel.refresh()
    assert [b.description for b in panel.job_buttons.children] == ["prepare job", "train job"]
    assert first[0].comm is None  # the old buttons are closed
    kept = panel.job_buttons.children
    panel.refresh()
    assert panel.job_buttons.children == kept  # nothing changed: the same buttons


def test_cancel_calls_the_platform_and_then_only_retry_is_enabled(client, platform, opened):
    panel = PipelinePanel("r1", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    panel.cancel_button.click()
    assert panel.wait_actions(5) and panel.error.value == ""
    assert platform.posted("/projects/demo/pipelines/r1/cancel") is None
    assert "CANCELLED" in panel.summary.value and panel.cancel_button.disabled and not panel.retry_button.disabled


@pytest.mark.parametrize(("status", "cancel", "retry"), [
    pytest.param("QUEUED", True, False, id="queued"),
    pytest.param("RUNNING", True, False, id="running"),
    pytest.param("SUCCEEDED", False, False, id="succeeded"),
    pytest.param("FAILED", False, True, id="failed"),
    pytest.param("CANCELLED", False, True, id="cancelled"),
])
def test_the_buttons_follow_the_runs_status(client, platform, opened, status, cancel, retry):
    platform.run = run_json(status)
    panel = PipelinePanel("r1", client, "demo", poll_s=None)
    opened.append(panel)
    assert panel.cancel_button.disabled and panel.retry_button.disabled  # nothing loaded yet
    panel.refresh()
    assert (not panel.cancel_button.disabled, not panel.retry_button.disabled) == (cancel, retry)


def test_a_terminal_run_stops_polling_after_its_final_refresh(client, platform, opened):
    platform.run_script = [run_json(), run_json(), run_json("SUCCEEDED", steps=two_steps("SUCCEEDED"))]
    panel = PipelinePanel("r1", client, "demo", poll_s=0.01)
    opened.append(panel)
    assert panel.polling
    assert until(lambda: not panel.polling)
    assert poller.wait_stopped(5) and poller_threads() == []
    assert platform.paths.count("GET /projects/demo/pipelines/r1") == 3  # RUNNING, RUNNING, SUCCEEDED: then no more
    assert "SUCCEEDED" in panel.summary.value and "2/2 steps done" in panel.summary.value
    assert panel.cancel_button.disabled and panel.retry_button.disabled


def test_retry_follows_the_run_again_until_it_ends(client, platform, opened):
    platform.run = run_json("FAILED", steps=two_steps("FAILED"))
    panel = PipelinePanel("r1", client, "demo", poll_s=0.01)
    opened.append(panel)
    assert until(lambda: not panel.polling) and not panel.retry_button.disabled
    platform.run_script = [run_json("RUNNING", attempt=2), run_json("SUCCEEDED", attempt=2,
                                                                    steps=two_steps("SUCCEEDED"))]
    panel.retry_button.click()
    assert panel.wait_actions(5)
    assert platform.posted("/projects/demo/pipelines/r1/retry") is None
    assert until(lambda: "SUCCEEDED" in panel.summary.value and not panel.polling)
    assert "(attempt 2)" in panel.summary.value and panel.error.value == ""


def test_a_platform_error_shows_red_and_clears_on_recovery(client, platform, opened):
    panel = PipelinePanel("r1", client, "demo", poll_s=None)
    opened.append(panel)
    platform.fail = (503, {"message": "the platform is restarting", "reason": "unavailable"})
    panel.refresh()  # never raises
    assert "the platform is restarting" in panel.error.value and RED in panel.error.value
    assert panel.cancel_button.disabled and panel.retry_button.disabled
    platform.fail = None
    panel.refresh()
    assert panel.error.value == "" and "RUNNING" in panel.summary.value


def test_an_unknown_run_and_a_failed_action_show_red(client, platform, opened):
    panel = PipelinePanel("nope", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    assert "pipeline run &#x27;nope&#x27; does not exist" in panel.error.value
    panel = PipelinePanel("r1", client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    platform.fail = (409, {"message": "pipeline run r1 already ended (SUCCEEDED); nothing to cancel",
                           "reason": "conflict"})
    panel.cancel_button.click()
    assert panel.wait_actions(5)
    assert "Cancel failed: pipeline run r1 already ended" in panel.error.value and RED in panel.error.value


def test_closing_the_panel_closes_its_job_panel_and_buttons(client, platform, opened):
    panel = PipelinePanel("r1", client, "demo", poll_s=0.02)
    assert until(lambda: len(panel.job_buttons.children) == 2)
    panel.job_buttons.children[1].click()
    assert panel.wait_actions(5) and panel.job_panel.polling
    job, button = panel.job_panel, panel.job_buttons.children[0]
    panel.close()
    assert not panel.polling and not job.polling and button.comm is None and panel.dag.comm is None
    assert poller.wait_stopped(5) and poller_threads() == []


# -- the list, and the magic's panels ----------------------------------------------------------


def test_the_runs_panel_tables_the_projects_runs(client, platform, opened):
    panel = PipelinesPanel(client, "demo", poll_s=None)
    opened.append(panel)
    panel.refresh()
    assert [run.id for run in panel.runs] == ["r1", "r0"]
    assert dict(platform.requests[-1].url.params) == {"limit": "50"}
    cells = re.findall(r"<td[^>]*>(.*?)</td>", panel.table.value)
    assert cells[:2] == ["<code>r1</code>", "wine-retrain"] and "RUNNING" in cells[2] and cells[3] == "1/2"
    assert cells[7:9] == ["<code>r0</code>", "wine-retrain"] and cells[10:13] == ["2/2", "2", "alice"]


@pytest.mark.parametrize("path", ["pipelines run", "pipelines show", "pipelines retry", "pipelines cancel"])
def test_the_magic_answers_a_pipeline_run_with_its_panel(client, opened, path):
    run = client.pipeline_run("demo", "r1")
    panel = magics.PANELS[path](client, run)
    opened.append(panel)
    assert isinstance(panel, PipelinePanel) and (panel.run_id, panel.project) == ("r1", "demo")
    assert panel.run is not None and panel.polling  # shown at once, then live


def test_the_magic_answers_the_list_with_the_runs_panel(client, opened):
    from loopml.cli.common import Listing

    panel = magics.PANELS["pipelines list"](client, Listing("demo", [PipelineRun.model_validate(run_json())]))
    opened.append(panel)
    assert isinstance(panel, PipelinesPanel) and panel.project == "demo" and len(panel.runs) == 2


@pytest.fixture
def shell(client, monkeypatch):
    """An IPython shell with ``%loopml`` on the fake's client, its panels the real ones."""
    from IPython.core.interactiveshell import InteractiveShell

    for name in ("LOOPML_JOB_ID", "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)
    ip = InteractiveShell.instance()
    ip.register_magics(magics.LoopmlMagics(ip, client_factory=lambda: client))
    yield lambda line: ip.run_line_magic("loopml", line)
    magics.unload_ipython_extension(ip)


def test_loopml_pipelines_show_and_list_return_their_panels_without_the_text(shell, opened, capsys):
    panel = shell("pipelines show r1 -P demo")
    opened.append(panel)
    assert isinstance(panel, PipelinePanel) and panel.run.id == "r1" and "train" in panel.steps.value
    runs = shell("pipelines list -P demo")
    opened.append(runs)
    assert isinstance(runs, PipelinesPanel) and [run.id for run in runs.runs] == ["r1", "r0"]
    assert capsys.readouterr().out == ""


def test_loopml_pipelines_cancel_prints_what_it_did_and_returns_the_panel(shell, platform, opened, capsys):
    panel = shell("pipelines cancel r1 -P demo")
    opened.append(panel)
    assert isinstance(panel, PipelinePanel) and "CANCELLED" in panel.summary.value and not panel.polling
    assert capsys.readouterr().out == "pipeline run r1 CANCELLED (1/2 steps done)\n"
