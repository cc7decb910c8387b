"""A pipeline across the two Ray nodes of the scale-out run: its steps are pinned by their
``resources`` to the head, then to the second node, then to the head again, so each step's
output file and values reach a step on the other node through MLflow, with no shared disk.

This module's name sorts before ``test_postgres_two_nodes.py`` on purpose: that module's last
test runs ``down`` and ``up``, which does not start the second node again.
"""

from __future__ import annotations

import json
import os
import uuid

import httpx
import pytest

from loopml.executor.models import JobStatus
from loopml.launcher.ray_local import ray_auth_headers
from tests.integration.notebooks import notebook, write

# Ray gives the head node this resource (``ray._common.constants.HEAD_NODE_RESOURCE_NAME``);
# asking a sliver of it pins a step to the head, as Ray's own actors do.
ON_HEAD = {"custom": {"node:__internal_head__": 0.001}}
ON_NODE2 = {"custom": {"node2": 1}}

PREPARE = notebook(
    "from pathlib import Path\nimport loopml\n"
    "Path('data').mkdir(exist_ok=True)\n"
    "points = [f'{x},{x * x}' for x in range(5)]\n"
    "Path('data/raw.csv').write_text('x,y\\n' + '\\n'.join(points) + '\\n')\n"
    "loopml.set_output('rows', len(points))\nloopml.set_output('label', 'squares')")
TRANSFORM = notebook(
    "from pathlib import Path\nimport loopml\n"
    "lines = Path('data/raw.csv').read_text().splitlines()\n"
    "assert lines[0] == 'x,y' and len(lines) - 1 == rows == 5, (lines, rows)\n"
    "assert label == 'squares', label\n"
    "total = sum(int(line.split(',')[1]) for line in lines[1:])\n"
    "Path('data/sum.txt').write_text(str(total))\n"
    "loopml.set_output('total', total)",
    parameters='rows = 0\nlabel = ""')
REPORT = notebook(
    "from pathlib import Path\nimport loopml\n"
    "assert Path('data/raw.csv').read_text().splitlines()[-1] == '4,16'\n"
    "assert int(Path('data/sum.txt').read_text()) == total == 30, total\n"
    "loopml.set_output('checked', True)",
    parameters="total = 0")

PIPELINE = f"""
name: two-nodes
steps:
  prepare: {{notebook: prepare.ipynb, outputs: [data/raw.csv], resources: {json.dumps(ON_HEAD)}}}
  transform:
    notebook: transform.ipynb
    outputs: [data/sum.txt]
    resources: {json.dumps(ON_NODE2)}
    parameters:
      rows: "{{{{ steps.prepare.outputs.rows }}}}"
      label: "{{{{ steps.prepare.outputs.label }}}}"
  report:
    notebook: report.ipynb
    resources: {json.dumps(ON_HEAD)}
    parameters: {{total: "{{{{ steps.transform.outputs.total }}}}"}}
"""


@pytest.fixture(scope="module")
def project(pg_platform) -> str:
    name = f"p-{uuid.uuid4().hex[:10]}"
    pg_platform.client(pg_platform.admin_token).create_project(name, members=["alice"])
    return name


def head_node_id(platform) -> str:
    """The Ray node id of the head, from Ray's state API."""
    state = platform.state()
    answer = httpx.get(f"{state['urls']['ray']}/api/v0/nodes", params={"limit": 100}, timeout=30,
                       headers=ray_auth_headers({**os.environ, **state["ray_env"]}))
    assert answer.status_code == 200, answer.text
    heads = [n["node_id"] for n in answer.json()["data"]["result"]["result"]
             if n["is_head_node"] and n["state"] == "ALIVE"]
    assert len(heads) == 1, heads
    return heads[0]


def test_outputs_and_files_reach_steps_on_the_other_node(pg_platform, node2, project, tmp_path):
    for name, nb in {"prepare.ipynb": PREPARE, "transform.ipynb": TRANSFORM, "report.ipynb": REPORT}.items():
        write(tmp_path / name, nb)
    (tmp_path / "two-nodes.pipeline.yaml").write_text(PIPELINE)
    alice = pg_platform.client()

    started = alice.run_pipeline(project, tmp_path / "two-nodes.pipeline.yaml")
    run = alice.wait_pipeline_run(project, started.id, timeout=300)
    steps = {step.id: step for step in run.steps}
    assert run.status == "SUCCEEDED", [(s.id, s.status, s.message) for s in run.steps]
    assert steps["transform"].parameters == {"rows": 5, "label": "squares"}
    assert steps["report"].parameters == {"total": 30}
    assert (steps["transform"].outputs, steps["report"].outputs) == ({"total": 30}, {"checked": True})

    jobs = {step_id: alice.job(project, step.job_id) for step_id, step in steps.items()}
    assert all(job.status == JobStatus.SUCCEEDED for job in jobs.values())
    head = head_node_id(pg_platform)
    assert head != node2.node_id
    assert {step_id: job.node for step_id, job in jobs.items()} == {
        "prepare": head, "transform": node2.node_id, "report": head}
    assert (jobs["transform"].input_files, sorted(jobs["report"].input_files)) == (
        ["data/raw.csv"], ["data/raw.csv", "data/sum.txt"])
    # the files came from the producing jobs' MLflow runs, not from a disk the nodes share
    assert steps["transform"].files["data/sum.txt"].run_id == jobs["transform"].mlflow_run_id
    assert steps["prepare"].files["data/raw.csv"].run_id == jobs["prepare"].mlflow_run_id
