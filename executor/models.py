"""Plain data of the executor slice: what crosses the REST boundary, validated once here."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field, JsonValue, StrictFloat, StrictInt, field_validator, model_validator

from loopml.executor.workdir import check_path
from loopml.names import check_custom_resources
from loopml.registry.models import ModelRef


def check_base64_files(value: dict[str, str]) -> dict[str, str]:
    """Files of a request body (relative path -> base64 content), paths checked; content must be base64."""
    checked = {}
    for path, content in value.items():
        try:
            base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"the content of {path!r} is not base64") from None
        checked[check_path(path)] = content
    return checked

class JobStatus(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Trigger(str, Enum):
    USER = "user"
    MAGIC = "magic"
    SCHEDULE = "schedule"
    REQUEUE = "requeue"
    POLICY = "policy"
    PIPELINE = "pipeline"


class Resources(BaseModel):
    """What one attempt of a job reserves on the Ray cluster."""

    cpus: StrictFloat = Field(1.0, gt=0, le=1024, description="CPU cores.")
    gpus: StrictFloat = Field(0.0, ge=0, le=64, description="GPUs (fractions allowed).")
    memory_mb: StrictInt | None = Field(None, gt=0, description="Memory to reserve, MiB.")
    custom: dict[str, StrictFloat] = Field(
        default_factory=dict,
        description="Custom Ray resources, e.g. {'node2': 1} to pin a job to the node that offers it.",
    )

    @field_validator("custom")
    @classmethod
    def _custom(cls, value: dict[str, float]) -> dict[str, float]:
        return check_custom_resources(value)

    def ray_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus}
        if self.memory_mb:
            options["memory"] = self.memory_mb * 1024 * 1024
        if self.custom:
            options["resources"] = dict(self.custom)
        return options


class JobSubmit(BaseModel):
    """Body of ``POST /projects/{project}/jobs``."""

    notebook: dict[str, Any] = Field(description="The notebook, as nbformat v4 JSON.")
    name: str | None = Field(None, max_length=200, description="Display name (default: the notebook's file name).")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Values for the notebook's parameters cell.")
    resources: Resources = Field(default_factory=Resources)
    timeout_s: StrictFloat | None = Field(None, gt=0, description="Wall-clock limit of one attempt; then FAILED (timeout).")
    max_retries: StrictInt = Field(0, ge=0, le=10, description="Retries after a system failure (not after a cell error).")
    kernel_name: str | None = Field(None, max_length=100, description="Kernel to run (default: the notebook's).")
    files: dict[str, str] = Field(default_factory=dict, description=(
        "Input files: path relative to the job's working dir → content, base64. Written there before the "
        "notebook runs; together at most max_job_files_mb."))
    output_files: list[str] = Field(default_factory=list, description=(
        "Files the notebook writes, relative to its working dir: kept as artifacts outputs/<path> of the job's "
        "MLflow run. A succeeded notebook that did not write one fails (reason outputs)."))

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, str]) -> dict[str, str]:
        return check_base64_files(value)

    @field_validator("output_files")
    @classmethod
    def _output_files(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(check_path(path) for path in value))

    def decoded_files(self) -> dict[str, bytes]:
        """``files`` with their contents decoded."""
        return {path: base64.b64decode(content) for path, content in self.files.items()}


class JobRequeue(BaseModel):
    """Body of ``POST .../jobs/{id}/requeue``: overrides on top of the original job."""

    parameters: dict[str, Any] = Field(default_factory=dict, description="Parameters to change; others are kept.")
    resources: Resources | None = None
    timeout_s: StrictFloat | None = Field(None, gt=0)
    max_retries: StrictInt | None = Field(None, ge=0, le=10)


class Progress(BaseModel):
    cells_done: int = 0
    cells_total: int = 0


class JobFailure(BaseModel):
    """Why a job failed: ``reason`` is one of cell_error, kernel_died, timeout, system, invalid, files (its
    input files could not be written), outputs (its outputs or declared output files could not be read)."""

    reason: str
    message: str | None = None
    cell_index: int | None = None
    ename: str | None = None
    evalue: str | None = None


class Job(BaseModel):
    id: str
    project: str
    user: str
    name: str
    status: JobStatus
    message: str | None = Field(None, description="Why the job waits, or what happened last.")
    progress: Progress
    error: JobFailure | None = None
    attempt: int
    node: str | None = Field(None, description="Ray node id that ran the latest attempt.")
    parameters: dict[str, Any]
    resources: Resources
    timeout_s: float | None
    max_retries: int
    mlflow_run_id: str | None
    models: list[ModelRef] = Field(default_factory=list, description="Model versions the job registered.")
    outputs: dict[str, Any] = Field(default_factory=dict, description="Values the notebook set with "
                                    "loopml.set_output (once the job ended).")
    input_files: list[str] = Field(default_factory=list, description="The input files it was given: artifacts "
                                   "inputs/<path> of its MLflow run.")
    output_files: list[str] = Field(default_factory=list, description="The files it declared it writes: once it "
                                    "succeeded, artifacts outputs/<path> of its MLflow run.")
    output_hashes: dict[str, str] = Field(default_factory=dict, description="sha256 (hex) of each output file "
                                          "stored, by path.")
    trigger: Trigger
    parent_id: str | None
    schedule_id: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


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


class ScheduleCreate(BaseModel):
    """Body of ``POST /projects/{project}/schedules``: a job template or a pipeline, run at every tick."""

    name: str | None = Field(None, max_length=200)
    cron: str = Field(description="Cron expression: 5 fields, or 6 with seconds last (croniter).")
    template: JobSubmit | None = Field(None, description="The job submitted at every tick.")
    pipeline: PipelineSubmit | None = Field(None, description="Or the pipeline run at every tick (its files, "
                                            "parameters and no_cache as given here).")

    @model_validator(mode="after")
    def _one(self) -> ScheduleCreate:
        if (self.template is None) == (self.pipeline is None):
            raise ValueError("give exactly one of template (a job) or pipeline")
        return self


class Schedule(BaseModel):
    id: str
    project: str
    user: str
    name: str
    cron: str
    parameters: dict[str, Any]
    next_run_at: dt.datetime
    last_run_at: dt.datetime | None
    last_job_id: str | None
    pipeline: str | None = Field(None, description="The pipeline file it runs (none: it submits a job).")
    last_pipeline_run_id: str | None = None
    last_skipped_at: dt.datetime | None = None
    last_skip_reason: str | None = Field(None, description="Why the run due at last_skipped_at did not start "
                                         "(e.g. the project's queue was full).")
    paused_reason: str | None = Field(None, description="Why the schedule does not fire (its user is no longer "
                                      "a member of the project); none: it is active.")
    created_at: dt.datetime
