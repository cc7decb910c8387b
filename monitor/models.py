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


class FeedbackItem(BaseModel):
    """One label for a captured request (``request_id`` as answered in ``x-request-id``)."""

    request_id: str = Field(min_length=1, max_length=64)
    label: Any = Field(description="The true value: a class or a number (a list for multi-row requests).")


class FeedbackResult(BaseModel):
    """Answer of ``POST .../feedback``: nothing is dropped silently."""

    accepted: int = Field(description="Labels stored for the first time.")
    updated: int = Field(0, description="Labels that replaced a different earlier label.")
    unchanged: int = Field(0, description="Labels resent with the same value (idempotent).")
    unknown: list[str] = Field(default_factory=list, description="Request ids with no captured request.")


class Trend(BaseModel):
    """Per-bucket values over the window, oldest first (a small chart per metric)."""

    starts: list[dt.datetime]
    requests: list[int]
    latency_p50_ms: list[float | None]
    error_rate: list[float | None]


class MonitorReport(BaseModel):
    """Answer of ``GET .../endpoints/{name}/monitor?window=``: one window of an endpoint."""

    project: str
    endpoint: str
    version: int = Field(description="The version the endpoint serves now.")
    window: str
    since: dt.datetime
    until: dt.datetime
    requests: int
    rate_per_s: float
    errors: int = Field(description="Answers with status >= 500.")
    refused: int = Field(description="Answers with a 4xx status (bad requests).")
    error_rate: float | None
    latency_ms: dict[str, float | None] = Field(description="p50, p95, p99, mean, max of answered requests.")
    drift: list[dict[str, Any]] = Field(description="FeatureDrift.to_dict() per feature, live vs the reference sample.")
    drifted_features: list[str]
    prediction_drift: dict[str, Any] | None
    quality: dict[str, Any] | None = Field(description="accuracy/f1 or mae/rmse over labelled requests (n = labels).")
    labelled: int
    capture_dropped: int = Field(description="Records replicas dropped since the platform started.")
    alerts: list[dict[str, Any]] = Field(default_factory=list, description="Open alerts of the endpoint.")
    trend: Trend
