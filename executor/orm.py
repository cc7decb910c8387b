"""Tables of the executor slice."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from loopml.db import Base, UTCDateTime, utcnow


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_project_status", "project", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.name"), index=True)
    user: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    notebook: Mapped[str] = mapped_column(Text, doc="The submitted notebook snapshot (nbformat JSON).")
    kernel_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="QUEUED")
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False, doc="The current attempt was handed to the backend.")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    node: Mapped[str | None] = mapped_column(String(64), nullable=True, doc="Ray node id of the latest attempt.")
    cells_done: Mapped[int] = mapped_column(Integer, default=0)
    cells_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    models: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True,
                                                             doc="Model versions the job registered.")
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, doc="What loopml.set_output set.")
    input_files: Mapped[list[str] | None] = mapped_column(JSON, nullable=True,
                                                          doc="Paths of its input files (artifacts inputs/<path>).")
    output_files: Mapped[list[str] | None] = mapped_column(JSON, nullable=True,
                                                           doc="Paths it declared it writes (artifacts outputs/<path>).")
    output_hashes: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True,
                                                            doc="sha256 of each output file stored, by path.")
    trigger: Mapped[str] = mapped_column(String(16), default="user")
    parent_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    schedule_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobOutputRow(Base):
    """The latest executed notebook and log text of a job (partial while it runs)."""

    __tablename__ = "job_outputs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    notebook: Mapped[str | None] = mapped_column(Text, nullable=True)
    log: Mapped[str] = mapped_column(Text, default="", doc="Log of the current attempt.")
    earlier_log: Mapped[str] = mapped_column(Text, default="", doc="Logs of earlier attempts, with why each ended.")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ScheduleRow(Base):
    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.name"), index=True)
    user: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    cron: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="notebook", doc="notebook | pipeline")
    template: Mapped[dict[str, Any]] = mapped_column(JSON, doc="A JobSubmit body (kind notebook) or a "
                                                     "PipelineSubmit body (kind pipeline).")
    next_run_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_pipeline_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_skipped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True, doc="Why the run due then was skipped.")
    paused_reason: Mapped[str | None] = mapped_column(Text, nullable=True, doc="Why it does not fire (None: active).")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
