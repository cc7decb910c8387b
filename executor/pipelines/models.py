"""What pipeline runs look like at the REST boundary: the body that runs (or checks) a pipeline,
and a run with its steps. The engine's own records (:mod:`.run_state`) stay internal."""

from __future__ import annotations

import base64
import datetime as dt

from pydantic import BaseModel, Field, JsonValue, field_validator

from loopml.executor.models import Trigger, check_base64_files

from .run_state import FileRef, RunStatus, StepStatus


class PipelineSubmit(BaseModel):
    """Body of ``POST /projects/{project}/pipelines`` (run) and ``.../pipelines/validate`` (check only)."""

    source_name: str = Field(min_length=1, max_length=500, description=(
        "The pipeline file's name: ending .yaml/.yml, a native pipeline; ending .pipeline, an Elyra one."))
    content: str = Field(description="The pipeline file's text.")
    files: dict[str, str] = Field(default_factory=dict, description=(
        "The files next to the pipeline file (notebooks, scripts, dependencies): path relative to the pipeline "
        "file's folder → content, base64."))
    parameters: dict[str, JsonValue] = Field(default_factory=dict, description=(
        "Overrides of the pipeline's parameters; text is read as the default's type ('2' for a number)."))
    no_cache: bool = Field(False, description="Run every step, even those the cache has a result for.")

    @field_validator("source_name")
    @classmethod
    def _source_name(cls, value: str) -> str:
        if not value.endswith((".yaml", ".yml", ".pipeline")):
            raise ValueError(f"{value!r}: a pipeline file ends with .pipeline.yaml (or .yaml, .yml) for the native "
                             "format, .pipeline for Elyra's")
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, str]) -> dict[str, str]:
        return check_base64_files(value)

    def decoded_files(self) -> dict[str, bytes]:
        return {path: base64.b64decode(content) for path, content in self.files.items()}


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
