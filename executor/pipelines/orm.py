"""Tables of pipeline runs: each run's engine state, and the step results the cache reuses."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from loopml.db import Base, UTCDateTime, utcnow


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
