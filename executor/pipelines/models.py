"""What pipeline runs look like at the REST boundary: the body that runs (or checks) a pipeline,
and a run with its steps. The engine's own records (:mod:`.run_state`) stay internal."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field, JsonValue

from loopml.executor.models import PipelineSubmit, Trigger

from .run_state import FileRef, RunStatus, StepStatus

__all__ = ["PipelineCheck", "PipelineChild", "PipelineRun", "PipelineStep", "PipelineSubmit"]


class PipelineChild(BaseModel):
    """One child job of a foreach (grid point) or search (trial) step."""

    index: int
    parameters: dict[str, JsonValue]
    status: StepStatus
    message: str | None = None
    job_id: str | None = None
    value: float | None = Field(None, description="Its selected or objective output.")


class PipelineStep(BaseModel):
    id: str
    kind: str = Field(description="notebook, script, register, promote or deploy.")
    after: list[str] = Field(description="The steps it waits for (its after: and the steps it refers to).")
    status: StepStatus
    message: str | None = Field(None, description="Why it was skipped or failed, or which child it picked.")
    job_id: str | None = None
    parameters: dict[str, JsonValue] = Field(default_factory=dict, description="Its parameters, rendered.")
    outputs: dict[str, JsonValue] = Field(default_factory=dict)
    files: dict[str, FileRef] = Field(default_factory=dict, description="Its output files: artifacts of a job's run.")
    children: list[PipelineChild] = Field(default_factory=list)


class PipelineRun(BaseModel):
    id: str
    project: str
    user: str
    name: str
    source_name: str
    status: RunStatus
    attempt: int = Field(description="1, then one more per retry.")
    parameters: dict[str, JsonValue] = Field(description="The pipeline's parameters with the run's overrides.")
    no_cache: bool
    steps: list[PipelineStep] = Field(description="In the pipeline file's order.")
    ignored: list[str] = Field(default_factory=list, description="Properties of the file that have no meaning "
                               "here (an Elyra file's runtime images...), by name.")
    mlflow_run_id: str | None
    trigger: Trigger = Field(Trigger.USER, description="user, schedule or policy (a requeue of the run it re-ran).")
    parent_id: str | None = Field(None, description="The run a requeue re-ran.")
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None


class PipelineCheck(BaseModel):
    """Answer of ``POST .../pipelines/validate``: the pipeline as it would run."""

    name: str
    parameters: dict[str, JsonValue]
    steps: list[PipelineStep] = Field(description="Each step, QUEUED.")
    ignored: list[str] = Field(default_factory=list)
