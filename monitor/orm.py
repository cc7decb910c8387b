"""Tables of the monitor slice: captured predictions (with their feedback labels)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.db import Base, UTCDateTime, utcnow


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
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.name"))
    endpoint: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    features: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    prediction: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    label: Mapped[Any | None] = mapped_column(JSON, nullable=True)
    labelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
