"""Tables of the registry slice: the users' overrides of model versions' data contracts
(the versions themselves, and their logged contracts, live in MLflow)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from loopml.db import Base, UTCDateTime, utcnow


class ContractOverrideRow(Base):
    """The overrides of one version's data contract: ``{feature: {rule: value}}``, merged over
    every change (:func:`loopml.registry.contract.merge_overrides`)."""

    __tablename__ = "contract_overrides"

    project: Mapped[str] = mapped_column(String(40), ForeignKey("projects.name", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(200), primary_key=True, doc="Registered name, <project>.<model>.")
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(timezone=True), default=utcnow)
