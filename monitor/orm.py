"""Tables of the monitor slice: captured predictions (with their feedback labels)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.db import Base, UTCDateTime, utcnow

NULLABLE_JSON = JSON(none_as_null=True)  # Python None is SQL NULL, so `IS NULL` finds it


class PredictionRow(Base):
    """One endpoint request as the replica saw it; ``label`` arrives later as feedback.

    ``features`` is ``{"columns": [...], "data": [[...], ...]}`` (one row per input row,
    ``None`` for a request refused before parsing); ``prediction`` the list of outputs.
    ``(project, endpoint, request_id)`` is unique, so a capture batch sent twice is stored once.
    """

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("project", "endpoint", "request_id", name="uq_predictions_request"),
        Index("ix_predictions_endpoint_at", "project", "endpoint", "at"),
        Index("ix_predictions_endpoint_labelled", "project", "endpoint", "labelled_at"),  # the newest feedback
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.name"))
    endpoint: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    features: Mapped[dict[str, Any] | None] = mapped_column(NULLABLE_JSON, nullable=True)
    prediction: Mapped[list[Any] | None] = mapped_column(NULLABLE_JSON, nullable=True)
    label: Mapped[Any | None] = mapped_column(NULLABLE_JSON, nullable=True)
    probabilities: Mapped[list[Any] | None] = mapped_column(
        NULLABLE_JSON, nullable=True, doc="Class probabilities per row (a classifier's, when captured).")
    violations: Mapped[list[dict[str, Any]] | None] = mapped_column(
        NULLABLE_JSON, nullable=True, doc="Data-contract violations of the request: [{feature, kind, rows}].")
    labelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PolicyRow(Base):
    """An endpoint's monitoring policy: thresholds, the action they trigger, the cooldown."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("project", "endpoint", name="uq_policies_endpoint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.name"))
    endpoint: Mapped[str] = mapped_column(String(40))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, doc="PolicySpec as JSON.")
    last_requeue_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertRow(Base):
    """A threshold an endpoint crossed, what was done about it, and what came of it.

    ``job_id`` is the training job a requeue started (``pipeline_run_id`` the pipeline run, when
    the serving version came from a pipeline); ``produced_version`` the version that it registered (the challenger) and ``evaluation`` its comparison with the champion.
    """

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_endpoint", "project", "endpoint"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.name"))
    endpoint: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16), doc="drift | accuracy | error_rate | est_accuracy | est_mae | violations | manual")
    version: Mapped[int] = mapped_column(Integer, doc="The version serving when it fired.")
    window: Mapped[str] = mapped_column(String(8))
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(8), default="open", doc="open | closed")
    action: Mapped[str] = mapped_column(String(32), doc="alert | requeue | cooldown | no_training_job")
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    pipeline_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True,
                                                        doc="The pipeline run a requeue started instead of a job.")
    produced_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(NULLABLE_JSON, nullable=True)
