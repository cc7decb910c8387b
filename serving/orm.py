"""Tables of the serving slice."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.db import Base, UTCDateTime, utcnow


class EndpointRow(Base):
    __tablename__ = "endpoints"
    __table_args__ = (UniqueConstraint("project", "name", name="uq_endpoints_project_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.name"), index=True)
    name: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(200), doc="Registered model name.")
    version: Mapped[int] = mapped_column(Integer)
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    canary_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    canary_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    key_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, doc="sha256 of the bearer key.")
    replicas: Mapped[int] = mapped_column(Integer, default=1, doc="Fixed replicas, or the minimum when autoscaling.")
    max_replicas: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="Set when autoscaling.")
    resources: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, nullable=True, doc="EndpointResources of each replica ({'custom': {...}}); None: none.")
    on_violation: Mapped[str] = mapped_column(String(8), default="pass", doc="pass | refuse | header")
    capture_probabilities: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="DEPLOYING")
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
