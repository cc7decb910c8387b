"""Why a pending attempt has not started: no node could ever run it, or every fitting node is busy."""

from __future__ import annotations

from typing import Any

import pytest

from loopml.executor.dispatcher import describe_wait

INFEASIBLE = "no node of the Ray cluster offers"


def node(alive: bool = True, **resources: float) -> dict[str, Any]:
    """One entry of ``ray.nodes()``."""
    return {"NodeID": f"node-{id(resources)}", "Alive": alive, "Resources": resources}


@pytest.mark.parametrize(
    "request_, nodes, available, expected",
    [
        ({"CPU": 1, "GPU": 0, "node2": 1}, [node(CPU=8)], {"CPU": 8},
         f"{INFEASIBLE} CPU 1, node2 1 (largest offer: CPU 8, node2 0)"),
        ({"CPU": 6, "GPU": 0}, [node(CPU=4), node(CPU=4)], {"CPU": 8},
         f"{INFEASIBLE} CPU 6 (largest offer: CPU 4)"),
        ({"CPU": 1, "GPU": 1}, [node(CPU=4), node(CPU=16)], {"CPU": 20},
         f"{INFEASIBLE} CPU 1, GPU 1 (largest offer: CPU 16, GPU 0)"),
        ({"CPU": 8, "GPU": 0}, [node(alive=False, CPU=32), node(CPU=4)], {"CPU": 4},
         f"{INFEASIBLE} CPU 8 (largest offer: CPU 4)"),
        ({"CPU": 1, "GPU": 0}, [], {}, f"{INFEASIBLE} CPU 1 (largest offer: CPU 0)"),
        ({"CPU": 1, "GPU": 0}, [node(alive=False, CPU=8)], {}, f"{INFEASIBLE} CPU 1 (largest offer: CPU 0)"),
    ],
    ids=["custom-resource-nowhere", "enough-cpu-only-summed-over-nodes", "gpu-nowhere",
         "dead-node-would-fit", "empty-cluster", "only-dead-nodes"],
)
def test_infeasible_request_names_the_largest_offer(request_: dict[str, float], nodes: list[dict[str, Any]],
                                                    available: dict[str, float], expected: str) -> None:
    message = describe_wait(request_, nodes, available)

    assert message.startswith(expected + "; ")
    assert "lower the request or cancel the job" in message


@pytest.mark.parametrize(
    "request_, nodes, available, expected",
    [
        ({"CPU": 2, "GPU": 0}, [node(CPU=4)], {"CPU": 0.5}, "needs CPU 2, free now CPU 0.5"),
        ({"CPU": 1, "GPU": 0.5}, [node(CPU=1), node(CPU=8, GPU=1)], {"CPU": 7}, "needs CPU 1, GPU 0.5, free now CPU 7, GPU 0"),
        ({"CPU": 1, "GPU": 0, "node2": 1}, [node(CPU=2), node(CPU=2, node2=1)], {"CPU": 4},
         "needs CPU 1, node2 1, free now CPU 4, node2 0"),
        ({"CPU": 4, "GPU": 0}, [node(alive=False, CPU=2), node(CPU=4)], {"CPU": 1}, "needs CPU 4, free now CPU 1"),
    ],
    ids=["cpu-busy", "gpu-busy-on-its-only-node", "custom-resource-taken", "dead-node-ignored"],
)
def test_feasible_request_waits_for_free_resources(request_: dict[str, float], nodes: list[dict[str, Any]],
                                                  available: dict[str, float], expected: str) -> None:
    assert describe_wait(request_, nodes, available) == f"waiting for free resources: {expected}"


@pytest.mark.parametrize(
    "since, has_log, has_output",
    [(0, True, True), (4, True, False), (6, False, False)],
    ids=["everything-new", "only-log-new", "nothing-large-new"],
)
def test_changes_since_leaves_out_unchanged_log_and_output(since, has_log, has_output):
    from loopml.executor.attempts import AttemptRecord
    from loopml.executor.dispatcher import changes_since

    record = AttemptRecord(job_id="j", attempt=1, seq=7, log="text", log_seq=5, output="{}", output_seq=3)
    change = changes_since(record, since)
    assert (change.log is not None, change.output is not None) == (has_log, has_output)
    assert (change.seq, change.job_id) == (7, "j")
    assert (record.log, record.output) == ("text", "{}")  # the dispatcher keeps them
