"""Plain data of the monitor slice: what replicas capture and what feedback carries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

MAX_BATCH = 5000


class CaptureRecord(BaseModel):
    """One endpoint request, as a replica recorded it."""

    project: str
    endpoint: str
    request_id: str = Field(max_length=64)
    version: int
    at: dt.datetime
    status: int = Field(description="HTTP status the caller got.")
    latency_ms: float = Field(ge=0)
    features: dict[str, Any] | None = Field(None, description='{"columns": [...], "data": [[...], ...]}')
    prediction: list[Any] | None = None


class CaptureBatch(BaseModel):
    """Body of the replicas' ``POST /internal/capture``."""

    records: list[CaptureRecord] = Field(max_length=MAX_BATCH)
    dropped: int = Field(0, ge=0, description="Records the replica dropped since its last batch (buffer full).")


class CaptureAccepted(BaseModel):
    stored: int = Field(description="New records (a record sent twice is stored once).")
