"""The contract of the built-in steps (register, promote, deploy): what the service hands the
platform's runner of a step (:class:`ActionCall`) and what it gets back. The runners live in
the server part (:mod:`loopml.server.pipeline_actions`): the executor slice may not import serving."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ActionCall:
    """What a built-in action step is given: its rendered arguments and the run it belongs to.
    ``registered`` is each model's newest version registered upstream of the step (by a
    register step, else by a step's job; promote and deploy without a version use it)."""

    user: str
    project: str
    pipeline_run_id: str
    step: str
    kind: str
    arguments: dict[str, Any]
    mlflow_run_id: str | None
    registered: dict[str, int]


ActionRunner = Callable[[ActionCall], Mapping[str, Any]]
"""Carries out a register, promote or deploy step; returns the step's outputs (see
:data:`~.spec.BUILTIN_OUTPUTS`); a :class:`LoopMLError` fails the step with its message."""
