"""Tables of pipeline runs: each run's engine state, and the step results the cache reuses; a run's row as
the REST API shows it (:func:`to_pipeline_run`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from loopml.db import Base, UTCDateTime, utcnow
from loopml.executor.models import Trigger

from .dag import direct_upstream
from .models import PipelineChild, PipelineRun, PipelineStep
from .run_state import RunState, StepState
from .spec import Step


class PipelineRunRow(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (Index("ix_pipeline_runs_project_created", "project", "created_at"),
                      Index("ix_pipeline_runs_status", "status"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.name"))
    user: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), doc="The pipeline's name.")
    source_name: Mapped[str] = mapped_column(String(500), doc="The pipeline file's name, as uploaded.")
    status: Mapped[str] = mapped_column(String(16), doc="The run's status (RunState.status), for queries.")
    state: Mapped[str] = mapped_column(Text, doc="The engine's RunState, JSON.")
    files: Mapped[list[str]] = mapped_column(JSON, default=list, doc="Paths of the pipeline's files: artifacts "
                                             "pipeline/<path> of its MLflow run.")
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trigger: Mapped[str] = mapped_column(String(16), default="user", doc="Who started it: a Trigger value.")
    parent_id: Mapped[str | None] = mapped_column(String(32), nullable=True, doc="The run it re-ran (a requeue).")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PipelineCacheRow(Base):
    """A step's result under its cache key, within a project (:func:`~.engine.cache_key`)."""

    __tablename__ = "pipeline_cache"

    project: Mapped[str] = mapped_column(ForeignKey("projects.name"), primary_key=True)
    cache_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    step: Mapped[str] = mapped_column(String(40), doc="The step that stored it, for the record.")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, doc="A CachedResult: {outputs, files}.")
    pipeline_run_id: Mapped[str] = mapped_column(String(32), doc="The run whose step stored it.")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


def _step(step_id: str, step: Step, after: list[str], state: StepState) -> PipelineStep:
    return PipelineStep(id=step_id, kind=step.kind, after=after, status=state.status, message=state.message,
                        job_id=state.job_id, parameters=state.parameters, outputs=state.outputs, files=state.files,
                        children=[PipelineChild(index=child.index, parameters=child.parameters, status=child.status,
                                                message=child.message, job_id=child.job_id, value=child.value)
                                  for child in state.children])


def to_pipeline_run(row: PipelineRunRow) -> PipelineRun:
    state = RunState.model_validate_json(row.state)
    graph = direct_upstream(state.pipeline)
    return PipelineRun(id=row.id, project=row.project, user=row.user, name=row.name, source_name=row.source_name,
                       status=state.status, attempt=state.attempt, parameters=state.parameters,
                       no_cache=state.no_cache, ignored=state.pipeline.ignored, mlflow_run_id=row.mlflow_run_id,
                       trigger=Trigger(row.trigger or Trigger.USER), parent_id=row.parent_id,
                       steps=[_step(step_id, step, graph[step_id], state.steps[step_id])
                              for step_id, step in state.pipeline.steps.items()],
                       created_at=row.created_at, updated_at=row.updated_at, finished_at=row.finished_at)
