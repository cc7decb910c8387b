"""Pipelines: notebooks, scripts and built-in actions (register, promote, deploy) as the steps of
a DAG, read from a native ``*.pipeline.yaml`` or an Elyra ``.pipeline`` file and checked before
anything runs.

- :func:`read_native`, :func:`read_elyra`: a file's text → :class:`Pipeline`
- :func:`validate` / :func:`check_pipeline`: the checks that need the pipeline's files and graph
- :func:`parse_condition`, :func:`template_references`, :func:`render`: the ``when:`` language and
  the ``{{ steps.<id>.outputs.<name> }}`` templates, parsed and never ``eval``-ed
- :func:`topological_order`, :func:`upstream`, :func:`ready`: the graph

Plain imports (pydantic, PyYAML, the standard library): Optuna, nbformat and papermill load only
inside the checks that need them. (``validate`` is both a module and its function; importing
the function here keeps the package attribute the function.)
"""

from .dag import direct_upstream, ready, topological_order, upstream
from .elyra import read_elyra
from .engine import advance, cache_key, cancel, resolve_parameters, retry, start
from .expr import Condition, ExpressionError, Reference, parse_condition, parse_reference, render, template_references
from .native import read_native
from .run_state import (
    ActionFinished,
    CachedResult,
    CancelJob,
    ChildState,
    FileRef,
    JobFinished,
    JobLaunched,
    LaunchJob,
    RunAction,
    RunState,
    RunStatus,
    StepState,
    StepStatus,
    StoreCache,
)
from .spec import (
    BUILTIN_OUTPUTS,
    DeployAction,
    Objective,
    Pipeline,
    Problem,
    PromoteAction,
    RegisterAction,
    Search,
    SearchParam,
    Select,
    Step,
    StepResources,
    pipeline_from_data,
)
from .validate import check_pipeline, validate

__all__ = [
    "ActionFinished", "CachedResult", "CancelJob", "ChildState", "FileRef", "JobFinished", "JobLaunched", "LaunchJob",
    "RunAction", "RunState", "RunStatus", "StepState", "StepStatus", "StoreCache", "advance", "cache_key", "cancel",
    "resolve_parameters", "retry", "start",
    "BUILTIN_OUTPUTS", "Condition", "DeployAction", "ExpressionError", "Objective", "Pipeline", "Problem",
    "PromoteAction", "Reference", "RegisterAction", "Search", "SearchParam", "Select", "Step", "StepResources",
    "check_pipeline", "direct_upstream", "parse_condition", "parse_reference", "pipeline_from_data", "read_elyra",
    "read_native", "ready", "render", "template_references", "topological_order", "upstream", "validate",
]
