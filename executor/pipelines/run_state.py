"""The records of a pipeline run, all JSON (stored by the platform, never pickled): the run's
and each step's state, the actions the engine asks for and the events that come back.
:mod:`loopml.executor.pipelines.engine` moves a :class:`RunState` from one to the next.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_serializer

from .spec import Pipeline


class RunStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class StepStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"
    CACHED = "CACHED"


DONE = frozenset({StepStatus.SUCCEEDED, StepStatus.CACHED})
_BROKEN = frozenset({StepStatus.FAILED, StepStatus.CANCELLED})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileRef(_Model):
    """Where an output file lives. Opaque to the engine but for ``sha256``, which keys the cache."""

    sha256: str = Field(description="The file's content hash (hex).")
    run_id: str | None = Field(None, description="The MLflow run that holds it as an artifact.")
    artifact_path: str | None = Field(None, description="Its path within that run's artifacts.")


Files = dict[str, FileRef]


class ChildState(_Model):
    """One child job of a foreach (a grid point) or search (a trial) step."""

    index: int
    parameters: dict[str, JsonValue] = Field(description="This child's own values (grid point or trial).")
    status: StepStatus = StepStatus.RUNNING
    message: str | None = None
    outputs: dict[str, JsonValue] = Field(default_factory=dict)
    files: Files = Field(default_factory=dict)
    job_id: str | None = None
    value: float | None = Field(None, description="The selected or objective output, once it succeeded.")


class StepState(_Model):
    status: StepStatus = StepStatus.QUEUED
    message: str | None = Field(None, description="Why it was skipped, failed or picked the child it picked.")
    skipped_because: Literal["condition", "failure"] | None = Field(
        None, description="condition: a when: (its own or upstream) said no, kept by retry; failure: an upstream "
                          "step failed or was cancelled, re-run by retry.")
    parameters: dict[str, JsonValue] = Field(default_factory=dict, description="Its parameters, rendered.")
    inputs: Files = Field(default_factory=dict, description="Upstream files it receives, by relative path.")
    outputs: dict[str, JsonValue] = Field(default_factory=dict)
    files: Files = Field(default_factory=dict)
    job_id: str | None = None
    cache_key: str | None = None
    children: list[ChildState] = Field(default_factory=list)
    replaced_jobs: list[str] = Field(default_factory=list, description="Jobs of attempts a retry replaced: "
                                     "their late events are ignored.")


class RunState(_Model):
    """All a pipeline run is: stored by the driver as JSON between events."""

    pipeline: Pipeline
    parameters: dict[str, JsonValue] = Field(description="The pipeline's parameters with the run's overrides.")
    no_cache: bool = False
    content_hash: dict[str, str] = Field(description="sha256 of each of the pipeline's files, by relative path.")
    seed: int = Field(description="Seeds the sweeps' samplers.")
    attempt: int = Field(1, description="1, then one more per retry.")
    status: RunStatus = RunStatus.QUEUED
    steps: dict[str, StepState]

    @field_serializer("pipeline")
    def _pipeline(self, pipeline: Pipeline) -> dict[str, Any]:
        # As the file said it: a step refuses keys that have no meaning for its kind (a deploy
        # step's ``resources``) even at their defaults, so the defaults are not written out.
        return pipeline.model_dump(mode="json", by_alias=True, exclude_unset=True)


class CachedResult(_Model):
    """What ``cache_lookup`` answers for a hit: the earlier outputs and files of the step."""

    outputs: dict[str, JsonValue] = Field(default_factory=dict)
    files: Files = Field(default_factory=dict)


class LaunchJob(_Model):
    """Submit the step's notebook or script (``child_index``: which child of a foreach/search
    step) with these parameters, its upstream files placed at their relative paths."""

    type: Literal["launch_job"] = "launch_job"
    step: str
    child_index: int | None = None
    parameters: dict[str, JsonValue]
    input_files: Files
    cache_key: str | None = Field(description="The step's cache key; none for a child.")


class RunAction(_Model):
    type: Literal["run_action"] = "run_action"
    step: str
    kind: Literal["register", "promote", "deploy"]
    arguments: dict[str, JsonValue]


class CancelJob(_Model):
    type: Literal["cancel_job"] = "cancel_job"
    step: str
    child_index: int | None = None
    job_id: str


class StoreCache(_Model):
    """Remember ``outputs`` and ``files`` as the result of ``cache_key`` (``step`` for the record)."""

    type: Literal["store_cache"] = "store_cache"
    step: str
    cache_key: str
    outputs: dict[str, JsonValue]
    files: Files


Action = Annotated[LaunchJob | RunAction | CancelJob | StoreCache, Field(discriminator="type")]


class JobLaunched(_Model):
    type: Literal["job_launched"] = "job_launched"
    step: str
    child_index: int | None = None
    job_id: str


class JobFinished(_Model):
    """A job's end, after its own retries. ``job_id``, when given, lets the engine ignore a
    stale event of a job that a retry replaced."""

    type: Literal["job_finished"] = "job_finished"
    step: str
    child_index: int | None = None
    status: Literal[StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED]
    outputs: dict[str, JsonValue] = Field(default_factory=dict)
    files: Files = Field(default_factory=dict)
    message: str | None = None
    job_id: str | None = None


class ActionFinished(_Model):
    type: Literal["action_finished"] = "action_finished"
    step: str
    status: Literal[StepStatus.SUCCEEDED, StepStatus.FAILED]
    outputs: dict[str, JsonValue] = Field(default_factory=dict)
    message: str | None = None


Event = Annotated[JobLaunched | JobFinished | ActionFinished, Field(discriminator="type")]
CacheLookup = Callable[[str, str], CachedResult | None]
