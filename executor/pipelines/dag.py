"""The graph of a pipeline: which step waits for which, in what order they can run.

A step waits for the steps in its ``after`` and, implicitly, for every step its ``when``, its
parameter templates or its action refer to (``{{ steps.train.outputs.run_id }}`` makes the step
wait for ``train`` whether or not ``after`` says so), as Kubeflow Pipelines does for a task's
outputs: a value cannot be read before it is written.
"""

from __future__ import annotations

from collections.abc import Mapping

from .spec import Pipeline

DONE = frozenset({"SUCCEEDED", "CACHED"})


def direct_upstream(pipeline: Pipeline) -> dict[str, list[str]]:
    """Each step's direct upstream steps (``after`` first, then referenced ones), in a stable
    order; names that are no step are kept, for :mod:`.validate` to report."""
    graph = {}
    for step_id, step in pipeline.steps.items():
        upstream = list(dict.fromkeys(step.after))
        referenced = sorted({ref.step for ref in step.references() if ref.step is not None})
        upstream += [other for other in referenced if other not in upstream]
        graph[step_id] = upstream
    return graph


def find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle as the steps along it, first repeated at the end (``[a, b, a]``), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in graph:
        if state.get(start):
            continue
        path, stack = [start], [iter(graph[start])]
        state[start] = 1
        while stack:
            node = next(stack[-1], None)
            if node is None:
                state[path.pop()] = 2
                stack.pop()
            elif node not in graph or state.get(node) == 2:
                continue
            elif state.get(node) == 1:
                return path[path.index(node):] + [node]
            else:
                state[node] = 1
                path.append(node)
                stack.append(iter(graph[node]))
    return None


def topological_order(pipeline: Pipeline) -> list[str]:
    """The steps in an order that runs each after its upstream, ties kept in file order.
    ``ValueError`` on a cycle (:func:`.validate.validate` reports it with the steps)."""
    graph = direct_upstream(pipeline)
    order: list[str] = []
    remaining = dict(graph)
    while remaining:
        ready = [step for step, ups in remaining.items() if all(up in order or up not in graph for up in ups)]
        if not ready:
            raise ValueError(f"the steps form a cycle: {' -> '.join(find_cycle(graph) or [])}")
        order += ready
        for step in ready:
            del remaining[step]
    return order


def upstream(pipeline: Pipeline, step: str) -> set[str]:
    """Every step ``step`` waits for, directly or through others."""
    graph = direct_upstream(pipeline)
    found: set[str] = set()
    todo = list(graph.get(step, []))
    while todo:
        node = todo.pop()
        if node not in found and node in graph:
            found.add(node)
            todo += graph[node]
    return found


def ready(pipeline: Pipeline, states: Mapping[str, str]) -> list[str]:
    """The steps that can start now: no state yet in ``states`` (step -> status) and every
    direct upstream step SUCCEEDED or CACHED. File order."""
    graph = direct_upstream(pipeline)
    return [step for step, ups in graph.items()
            if step not in states and all(states.get(up) in DONE for up in ups)]
