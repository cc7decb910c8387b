"""Plain data of the monitor slice: reports, feedback, policies and alerts (what replicas capture
is :mod:`loopml.capture_wire`)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, field_validator

from loopml.errors import InvalidInput
from loopml.executor.models import Job
from loopml.executor.pipelines.models import PipelineRun

MAX_FEEDBACK = 10_000  # labels per feedback call (one transaction)


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
    estimated: list[float | None] = Field(default_factory=list,
                                          description="Estimated accuracy or MAE per bucket (no labels needed).")
    estimated_low: list[float | None] = Field(default_factory=list, description="Lower end of its 95% band.")
    estimated_high: list[float | None] = Field(default_factory=list, description="Upper end of its 95% band.")
    realized: list[float | None] = Field(default_factory=list,
                                         description="Accuracy or MAE from feedback labels per bucket.")


class Estimated(BaseModel):
    """Performance estimated without labels (CBPE or DLE, :mod:`loopml.monitor.estimate`)."""

    metric: Literal["accuracy", "mae"]
    value: float = Field(description="Estimated over the serving version's requests of the window.")
    low: float = Field(description="Lower end of the 95% band (sampling error only).")
    high: float
    n: int = Field(description="Rows estimated over.")
    f1: float | None = Field(None, description="Estimated F1 of f1_class (classifiers).")
    f1_class: Any = None
    reference: dict[str, float] = Field(description="The metric on the held-out rows the estimator was fit on.")
    source: str = Field(description="test (X_test/y_test) or cross_validation (out-of-fold reference rows).")
    labelled: int = Field(0, description="Rows of the window with labels.")
    realized: float | None = Field(None, description="The metric from labels, over the labelled rows.")
    estimated_on_labelled: float | None = Field(None, description="The estimate over the same labelled rows.")
    error: float | None = Field(None, description="estimated_on_labelled - realized: how far the estimate was.")


class DataQuality(BaseModel):
    """Data-contract violations of the window's requests."""

    requests: int = Field(description="Requests of the window.")
    affected: int = Field(description="Requests with at least one violation.")
    share: float | None = Field(description="affected / requests.")
    violations: list[dict[str, Any]] = Field(
        default_factory=list, description="Per feature and kind: {feature, kind, requests, rows, share}.")


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
    estimated: Estimated | None = Field(None, description="Performance estimated without labels, when the version "
                                                          "has an estimator (and, for classifiers, probabilities).")
    data_quality: DataQuality | None = Field(None, description="Data-contract violations of the window.")
    labelled: int
    capture_dropped: int = Field(description="Records replicas dropped since the platform started.")
    alerts: list[dict[str, Any]] = Field(default_factory=list, description="Open alerts of the endpoint.")
    trend: Trend
    notes: list[str] = Field(default_factory=list,
                             description="Why a part is empty or partial (no reference sample, too few rows…).")


MAX_WINDOW = dt.timedelta(days=30)
_WINDOW = re.compile(r"^(\d{1,4})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_WINDOW_HELP = "use a number and a unit: s, m, h or d (e.g. 15m, 1h, 24h, 7d), at most 30d"


def parse_window(window: str) -> dt.timedelta:
    """``"15m"`` -> 15 minutes; :class:`InvalidInput` naming ``window`` for anything else."""
    match = _WINDOW.fullmatch(window) if isinstance(window, str) else None
    span = dt.timedelta(**{_UNITS[match[2]]: int(match[1])}) if match else None
    if span is None or not dt.timedelta(0) < span <= MAX_WINDOW:
        raise InvalidInput(f"invalid window {window!r}: {_WINDOW_HELP}", field="window")
    return span


class PolicySpec(BaseModel):
    """Body of ``PUT .../endpoints/{name}/policy``."""

    window: str = Field("15m", description="Window the thresholds are evaluated over (e.g. 15m, 1h).")
    min_samples: StrictInt = Field(100, ge=1, description="Requests the window needs before anything fires.")
    drift: StrictBool = Field(True, description="Fire when any feature drifts (KS/chi-squared and PSI).")
    accuracy_below: StrictFloat | None = Field(None, ge=0, le=1, description="Fire when labelled accuracy is below.")
    error_rate_above: StrictFloat | None = Field(None, ge=0, le=1, description="Fire when the 5xx share is above.")
    estimated_accuracy_below: StrictFloat | None = Field(
        None, ge=0, le=1, description="Fire when estimated accuracy (CBPE, no labels) is below.")
    estimated_mae_above: StrictFloat | None = Field(None, ge=0, description="Fire when estimated MAE (DLE) is above.")
    violations_above: StrictFloat | None = Field(
        None, ge=0, le=1, description="Fire when the share of requests breaking the data contract is above.")
    drift_needs_estimate: StrictBool = Field(
        False, description="Fire on drift only when estimated performance dropped too: accuracy by more than "
                           "estimate_drop below the version's held-out accuracy, or MAE by more than estimate_drop "
                           "(relative) above its held-out MAE.")
    estimate_drop: StrictFloat = Field(0.05, ge=0, le=1, description="What counts as a drop for drift_needs_estimate.")
    promote_on_estimate: StrictBool = Field(
        False, description="A challenger must also beat the champion's estimated performance on the newest captured "
                           "requests (labelled or not) by promote_margin.")
    action: Literal["alert", "requeue"] = Field("alert", description="What a firing does besides the alert.")
    cooldown_s: StrictFloat = Field(3600, ge=0, description="At most one requeue per endpoint in this many seconds.")
    auto_promote: StrictBool = Field(False, description="Promote a challenger that beats the champion by the margin.")
    promote_margin: StrictFloat = Field(0.0, ge=0, le=1, description="Accuracy points (or relative RMSE) to win by.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Overrides for the requeued job.")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        try:
            parse_window(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return value


class Policy(BaseModel):
    project: str
    endpoint: str
    spec: PolicySpec
    last_requeue_at: dt.datetime | None
    updated_by: str
    updated_at: dt.datetime


class Alert(BaseModel):
    id: str
    project: str
    endpoint: str
    kind: str = Field(description="drift | accuracy | error_rate | est_accuracy | est_mae | violations "
                                  "| manual")
    version: int
    window: str
    value: float
    threshold: float | None
    detail: dict[str, Any]
    status: str
    action: str = Field(description="alert | requeue | cooldown | no_training_job")
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    job_id: str | None
    pipeline_run_id: str | None = Field(None, description="The pipeline run a requeue started (a version made "
                                        "by a pipeline is retrained by its pipeline).")
    produced_version: int | None
    evaluation: dict[str, Any] | None


class RequeueRequest(BaseModel):
    """Body of ``POST .../endpoints/{name}/requeue``."""

    parameters: dict[str, Any] = Field(default_factory=dict, description="Overrides for the training job.")
    alert_id: str | None = Field(None, description="The alert this requeue answers (recorded on it).")


class Requeued(BaseModel):
    """What a requeue started: the training job, or the pipeline run when the serving version
    came from a pipeline (then ``job`` is ``None``)."""

    job: Job | None = None
    pipeline_run: PipelineRun | None = None
    alert: Alert
