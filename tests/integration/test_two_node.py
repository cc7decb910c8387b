"""A second Ray node on the same machine: a job pinned to it runs there, and its output
comes back through the API (the node shares no path with the platform's data dir)."""

from __future__ import annotations

import pytest

from loopml.executor.models import JobStatus
from loopml.launcher import free_port_block, start_ray_worker_node
from tests.integration.notebooks import notebook


@pytest.fixture(scope="module")
def second_node(platform):
    node = start_ray_worker_node(platform.home, num_cpus=1, resources={"node2": 1}, base_port=free_port_block(12))
    yield node
    node.stop()


def test_job_pinned_to_the_second_node_runs_there(second_node, alice, project):
    nb = notebook("print(sum(range(10)))")
    job = alice.wait(project, alice.submit(project, nb, resources={"cpus": 1, "custom": {"node2": 1}}).id,
                     timeout=180)
    assert job.status == JobStatus.SUCCEEDED
    assert job.node == second_node.node_id
    outputs = [o["text"] for c in alice.output(project, job.id)["cells"] for o in c.get("outputs", [])]
    assert "45\n" in outputs
