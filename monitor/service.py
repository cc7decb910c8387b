"""MonitorService: an endpoint's monitor report, and the feedback labels that feed its quality.

The report reads the captured requests of one window from the platform DB: traffic and
errors over every captured request, latency and a trend over the newest
:data:`MAX_REQUESTS` of them, and drift and quality for the version the endpoint serves
now, against that version's reference sample (logged by ``loopml.log_model``, read from
MLflow once per version and kept in memory).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import case, func, select, update

from loopml.db import Database, utcnow
from loopml.errors import InvalidInput, LoopMLError
from loopml.monitor import stats
from loopml.monitor.estimate import estimate
from loopml.monitor.ingest import CaptureService
from loopml.monitor.models import (
    MAX_FEEDBACK,
    DataQuality,
    Estimated,
    FeedbackItem,
    FeedbackResult,
    MonitorReport,
    Trend,
    parse_window,
)
from loopml.monitor.orm import PredictionRow
from loopml.registry import tags as tag
from loopml.registry.estimator import Estimator
from loopml.registry.sdk import LABEL_COLUMN, PREDICTION_COLUMN
from loopml.registry.service import RegistryService
from loopml.serving.service import EndpointService
from loopml.settings import Settings

log = logging.getLogger(__name__)

# What one report holds in memory at most: the newest requests of the window (their
# status, latency and time), and the newest input rows of the serving version for drift.
MAX_REQUESTS = 50_000
MAX_LIVE_ROWS = 100_000
TREND_BUCKETS = 12
REFERENCE_CACHE = 32
_IN_CHUNK = 500  # request ids per IN (...) of a feedback lookup, under every backend's bind limit

ReferenceLoader = Callable[[str, int], "pd.DataFrame | None"]
"""``(registered model, version) -> reference sample``, ``None`` when the version has none."""
EstimatorLoader = Callable[[str, int], "Estimator | None"]
"""``(registered model, version) -> performance estimator``, ``None`` when the version has none."""


class _MlflowArtifact:
    """A loader of the version artifact a version tag names, read as data through
    :meth:`~loopml.registry.service.RegistryService.read_tagged` (the registry vouches for the
    tag first: an artifact of the version's own run, of the model's project, else
    :class:`InvalidInput`, unread)."""

    TAG: str
    WHAT: str

    def __init__(self, registry: RegistryService) -> None:
        self.registry = registry

    def read(self, path: Path) -> Any:
        raise NotImplementedError

    def __call__(self, model: str, version: int) -> Any:
        return self.registry.read_tagged(model, version, self.TAG, self.read, self.WHAT)


class MlflowReferences(_MlflowArtifact):
    """The default reference loader: the parquet file named by the version's ``loopml.reference`` tag."""

    TAG, WHAT = tag.REFERENCE, "reference sample"

    def read(self, path: Path) -> pd.DataFrame:
        return pd.read_parquet(path)


class MlflowEstimators(_MlflowArtifact):
    """The default estimator loader: the JSON file named by the version's ``loopml.estimator`` tag
    (:class:`~loopml.registry.estimator.Estimator`)."""

    TAG, WHAT = tag.ESTIMATOR, "performance estimator"

    def read(self, path: Path) -> Estimator:
        return Estimator.model_validate_json(path.read_bytes())


class MonitorService:
    """Monitor reports and feedback labels of a project's endpoints.

    ``references`` loads a version's reference sample (default: :class:`MlflowReferences`),
    ``estimators`` its performance estimator (default: :class:`MlflowEstimators`); their
    answers are cached per ``(model, version)``, :data:`REFERENCE_CACHE` versions at most.
    """

    def __init__(self, db: Database, settings: Settings, endpoints: EndpointService, registry: RegistryService | None,
                 captures: CaptureService, *, references: ReferenceLoader | None = None,
                 estimators: EstimatorLoader | None = None) -> None:
        self.db = db
        self.settings = settings
        self.endpoints = endpoints
        self.captures = captures
        self._loaders = {"reference": references or MlflowReferences(registry),
                         "estimator": estimators or (MlflowEstimators(registry) if registry is not None
                                                     else _no_estimator)}
        self._cache: OrderedDict[tuple[str, str, int], Any] = OrderedDict()
        self._lock = threading.Lock()

    # -- report ------------------------------------------------------------------------

    def report(self, project: str, name: str, window: str = "1h", *, estimate: bool = True) -> MonitorReport:
        """The endpoint's monitor report over the last ``window`` (``15m``, ``1h``, ``7d``…, ≤ 30 days).

        ``requests``, ``errors`` (status ≥ 500), ``refused`` (4xx) and ``labelled`` count every
        captured request of the window. Latency (answered requests, status < 400) and the
        trend (:data:`TREND_BUCKETS` buckets) use its newest :data:`MAX_REQUESTS` (50 000) requests,
        so memory stays bounded however busy the endpoint.
        Drift compares the inputs and predictions of the serving version's successful
        requests (newest :data:`MAX_LIVE_ROWS` input rows) with that version's reference
        sample; quality compares its labelled requests' predictions with their labels (a
        multi-row request's label list is paired row by row). The estimate (the version's
        estimator over the same rows, per bucket too) is left out with ``estimate=False`` (a
        policy that does not read it). Parts that cannot be computed are empty, with the reason
        in ``notes``. :class:`InvalidInput` for a bad window, :class:`NotFound` for an unknown
        endpoint.
        """
        span = parse_window(window)
        endpoint = self.endpoints.get(project, name)
        until = utcnow()
        since = until - span
        notes: list[str] = []
        in_window = (PredictionRow.project == project, PredictionRow.endpoint == name, PredictionRow.at >= since)
        serving = (*in_window, PredictionRow.version == endpoint.version)
        estimator = self._estimator_or_note(endpoint.model, endpoint.version, notes) if estimate else None
        with self.db.session() as session:
            requests, errors, refused, labelled = session.execute(select(
                func.count(), func.sum(case((PredictionRow.status >= 500, 1), else_=0)),
                func.sum(case((PredictionRow.status.between(400, 499), 1), else_=0)),
                func.count(PredictionRow.labelled_at)).where(*in_window)).one()
            requests, errors, refused = requests or 0, errors or 0, refused or 0
            recent = pd.DataFrame(session.execute(
                select(PredictionRow.at, PredictionRow.status, PredictionRow.latency_ms).where(*in_window)
                .order_by(PredictionRow.at.desc()).limit(MAX_REQUESTS)).all(), columns=["at", "status", "latency_ms"])
            live, predictions = self._live(session, serving, notes)
            truth, predicted = self._labelled(session, serving)
            scored = _scored(session, serving, since) if estimator is not None else None
            data_quality = _data_quality(session, in_window, requests)
        if requests > MAX_REQUESTS:
            notes.append(f"latency and trend use the newest {MAX_REQUESTS} of the window's {requests} requests")
        answered = recent.loc[recent["status"] < 400, "latency_ms"]
        drift, prediction_drift = self._drift(endpoint.model, endpoint.version, live, predictions, notes)
        trend = _trend(recent, since, span)
        estimated = self._estimated(estimator, scored, span, trend, notes) if estimator is not None else None
        return MonitorReport(
            project=project, endpoint=name, version=endpoint.version, window=window, since=since, until=until,
            requests=requests, rate_per_s=requests / span.total_seconds(), errors=errors, refused=refused,
            error_rate=errors / requests if requests else None,
            latency_ms=stats.latency_summary(answered.to_numpy(dtype=float)),
            drift=[d.to_dict() for d in drift], drifted_features=[d.feature for d in drift if d.drifted],
            prediction_drift=prediction_drift.to_dict() if prediction_drift is not None else None,
            quality=self._quality(truth, predicted, notes), labelled=labelled,
            capture_dropped=self.captures.dropped[(project, name)], alerts=[],
            trend=trend, estimated=estimated, data_quality=data_quality, notes=notes,
        )

    @staticmethod
    def _live(session, serving, notes: list[str]) -> tuple[pd.DataFrame, list[Any]]:
        """Input rows and predictions of the serving version's successful requests, newest first.

        Streamed from the DB and stopped after :data:`MAX_LIVE_ROWS` input rows, so a window
        of large requests never sits in memory whole.
        """
        statement = (select(PredictionRow.features, PredictionRow.prediction)
                     .where(*serving, PredictionRow.status == 200).order_by(PredictionRow.at.desc())
                     .limit(MAX_REQUESTS).execution_options(yield_per=1000))
        groups: dict[tuple[str, ...] | None, list[list[Any]]] = {}
        predictions: list[list[Any]] = []
        rows = 0
        for features, prediction in session.execute(statement):
            if not isinstance(features, dict) or not features.get("data"):
                continue
            if rows >= MAX_LIVE_ROWS:
                notes.append(f"drift uses the newest {MAX_LIVE_ROWS} input rows of the window")
                break
            columns = features.get("columns")
            groups.setdefault(tuple(columns) if columns else None, []).append(features["data"])
            rows += len(features["data"])
            if isinstance(prediction, list):
                predictions.append(prediction)
        frames = []
        for columns, data in groups.items():
            try:
                frames.append(pd.DataFrame(list(chain.from_iterable(data)),
                                           columns=None if columns is None else list(columns)))
            except ValueError:  # rows of another width than their columns: not this replica's format
                log.warning("skipping %d captured requests whose rows do not match columns %s", len(data), columns)
        live = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return live, list(chain.from_iterable(predictions))

    @staticmethod
    def _labelled(session, serving) -> tuple[list[Any], list[Any]]:
        """Labels and predictions of the serving version's labelled requests, paired row by row."""
        statement = (select(PredictionRow.label, PredictionRow.prediction)
                     .where(*serving, PredictionRow.labelled_at.is_not(None)).order_by(PredictionRow.at.desc())
                     .limit(MAX_REQUESTS))
        truth: list[Any] = []
        predicted: list[Any] = []
        for label, prediction in session.execute(statement):
            if not isinstance(prediction, list) or not prediction:
                continue  # a refused request: nothing was predicted
            labels = label if isinstance(label, list) else [label]
            if len(labels) == len(prediction):
                truth.extend(labels)
                predicted.extend(prediction)
        return truth, predicted

    def _drift(self, model: str, version: int, live: pd.DataFrame, predictions: list[Any],
               notes: list[str]) -> tuple[list[stats.FeatureDrift], stats.FeatureDrift | None]:
        try:
            reference = self.reference(model, version)
        except LoopMLError as exc:
            log.warning("no drift for %s/%s: %s", model, version, exc.message)
            notes.append(f"no drift: the reference sample of v{version} could not be read ({exc.message})")
            return [], None
        if reference is None:
            notes.append(f"no drift: v{version} has no reference sample (log it with loopml.log_model)")
            return [], None
        features = reference.drop(columns=[c for c in (PREDICTION_COLUMN, LABEL_COLUMN) if c in reference.columns])
        if list(live.columns) and all(isinstance(c, int) for c in live.columns) and live.shape[1] == features.shape[1]:
            live = live.set_axis(list(features.columns), axis=1)  # positional inputs of a model without names
        if len(live) < stats.MIN_LIVE_ROWS:
            notes.append(f"{len(live)} input rows of v{version} in the window: drift needs {stats.MIN_LIVE_ROWS}")
        drift = stats.feature_drift(features, live)
        prediction_drift = None
        if PREDICTION_COLUMN in reference.columns and _scalars(reference[PREDICTION_COLUMN], predictions):
            prediction_drift = stats.prediction_drift(reference[PREDICTION_COLUMN], predictions)
        return drift, prediction_drift

    def _estimator_or_note(self, model: str, version: int, notes: list[str]) -> Estimator | None:
        """The version's estimator; ``None``, with the reason in ``notes``, when there is none."""
        try:
            estimator = self.estimator(model, version)
        except LoopMLError as exc:
            log.warning("no estimate for %s/%s: %s", model, version, exc.message)
            notes.append(f"no estimate: the estimator of v{version} could not be read ({exc.message})")
            return None
        if estimator is None:
            notes.append(f"no estimate: v{version} has no performance estimator (log a scikit-learn model with "
                         "loopml.log_model and X_test/y_test, or y_train)")
        return estimator

    @staticmethod
    def _estimated(estimator: Estimator, scored: _Scored, span: dt.timedelta, trend: Trend,
                   notes: list[str]) -> Estimated | None:
        """The estimate over the window (and per trend bucket, into ``trend``), beside realized
        metrics where labels exist; ``None`` with the reason in ``notes`` when there is none."""
        if not scored.rows:
            return None
        inputs = scored.inputs(estimator)
        if inputs is None:
            notes.append("no estimate: " + ("the requests carry no class probabilities (deploy with probability "
                                            "capture on)" if estimator.kind == "cbpe" else
                                            "the requests' columns are not the estimator's"))
            return None
        found = estimate(estimator, **inputs)
        if found is None:
            notes.append("no estimate: the captured rows do not fit the estimator")
            return None
        labelled = scored.labelled()
        realized = on_labelled = None
        if labelled.any():
            realized = _realized(estimator.kind, scored, labelled)
            on_labelled = estimate(estimator, **scored.inputs(estimator, labelled))["value"]
        width = span / TREND_BUCKETS
        bucket = np.clip((scored.offsets // width.total_seconds()).astype(int), 0, TREND_BUCKETS - 1)
        for index in range(TREND_BUCKETS):
            rows = bucket == index
            part = estimate(estimator, **scored.inputs(estimator, rows)) if rows.any() else None
            trend.estimated.append(part["value"] if part else None)
            trend.estimated_low.append(part["low"] if part else None)
            trend.estimated_high.append(part["high"] if part else None)
            with_labels = rows & labelled
            trend.realized.append(_realized(estimator.kind, scored, with_labels) if with_labels.any() else None)
        return Estimated(**{k: v for k, v in found.items() if k in Estimated.model_fields},
                         reference=estimator.reference, source=estimator.source, labelled=int(labelled.sum()),
                         realized=realized, estimated_on_labelled=on_labelled,
                         error=None if realized is None or on_labelled is None else on_labelled - realized)

    @staticmethod
    def _quality(truth: list[Any], predicted: list[Any], notes: list[str]) -> dict[str, Any] | None:
        if not truth:
            return None
        try:
            return stats.quality(truth, predicted)
        except InvalidInput as exc:
            notes.append(f"no quality: {exc.message}")
            return None

    def reference(self, model: str, version: int) -> pd.DataFrame | None:
        """The reference sample of ``model`` version ``version`` (cached); ``None`` if it has none."""
        return self._cached("reference", model, version)

    def estimator(self, model: str, version: int) -> Estimator | None:
        """The performance estimator of ``model`` version ``version`` (cached); ``None`` if it has none."""
        return self._cached("estimator", model, version)

    def _cached(self, kind: str, model: str, version: int) -> Any:
        key = (kind, model, version)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        found = self._loaders[kind](model, version)  # outside the lock: a slow download blocks no other report
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > 2 * REFERENCE_CACHE:
                self._cache.popitem(last=False)
        return found

    # -- the loop's state tracker --------------------------------------------------------

    def last_capture(self, project: str) -> tuple[str, dt.datetime] | None:
        """``(endpoint, when)`` of the newest captured request of the project's endpoints;
        ``None`` before the first."""
        return self._newest(project, PredictionRow.at)

    def last_feedback(self, project: str) -> tuple[str, dt.datetime] | None:
        """``(endpoint, when)`` of the newest feedback label of the project's endpoints; ``None`` before the first."""
        return self._newest(project, PredictionRow.labelled_at)

    def _newest(self, project: str, column) -> tuple[str, dt.datetime] | None:
        # one max() per endpoint: each is answered from an index on (project, endpoint, column)
        names = [endpoint.name for endpoint in self.endpoints.list(project)]
        with self.db.session() as session:
            found = [(name, session.scalar(select(func.max(column)).where(PredictionRow.project == project,
                                                                          PredictionRow.endpoint == name)))
                     for name in names]
        return max(((name, at) for name, at in found if at is not None), key=lambda item: item[1], default=None)

    # -- feedback ----------------------------------------------------------------------

    def feedback(self, project: str, name: str, items: list[FeedbackItem]) -> FeedbackResult:
        """Store the true labels of captured requests, in one transaction.

        A label for a request labelled before with the same value is ``unchanged`` (resending
        is idempotent), with another value ``updated``, else ``accepted``; request ids with no
        captured request of this endpoint are listed in ``unknown``, not stored. A request of
        n > 1 rows takes a list of n labels. :class:`InvalidInput` (nothing stored) for more
        than :data:`MAX_FEEDBACK` items, a null label, one id given two different labels, or
        a label that does not fit the request's rows; :class:`NotFound` for an unknown endpoint.
        """
        self.endpoints.get(project, name)
        labels = _labels(items)
        result = FeedbackResult(accepted=0)
        changes: list[dict[str, Any]] = []
        misfits: list[str] = []
        now = utcnow()
        with self.db.session() as session:
            found: dict[str, tuple[int, Any, Any]] = {}
            ids = list(labels)
            for start in range(0, len(ids), _IN_CHUNK):
                statement = select(PredictionRow.request_id, PredictionRow.id, PredictionRow.label,
                                   PredictionRow.prediction).where(
                    PredictionRow.project == project, PredictionRow.endpoint == name,
                    PredictionRow.request_id.in_(ids[start:start + _IN_CHUNK]))
                found.update((request_id, rest) for request_id, *rest in session.execute(statement))
            for request_id, label in labels.items():
                if request_id not in found:
                    result.unknown.append(request_id)
                    continue
                row_id, stored, prediction = found[request_id]
                if not _fits(label, prediction):
                    misfits.append(request_id)
                    continue
                if stored is None:
                    result.accepted += 1
                elif stored == label:
                    result.unchanged += 1
                    continue
                else:
                    result.updated += 1
                changes.append({"id": row_id, "label": label, "labelled_at": now})
            if misfits:
                raise InvalidInput(f"{len(misfits)} labels do not fit their requests' rows (a request of n > 1 rows "
                                   f"takes a list of n labels): {', '.join(misfits[:5])}", field="label",
                                   request_ids=misfits[:100])
            if changes:
                session.execute(update(PredictionRow), changes)
        log.info("feedback for %s/%s: %d accepted, %d updated, %d unchanged, %d unknown", project, name,
                 result.accepted, result.updated, result.unchanged, len(result.unknown))
        return result


def _no_estimator(model: str, version: int) -> None:
    return None


class _Scored:
    """The serving version's answered rows of the window, one entry per input row, newest first:
    time (seconds since the window began), input row, prediction, class probabilities and label."""

    def __init__(self, since: dt.datetime) -> None:
        self.since = since
        self.columns: list[str] | None = None
        self.rows: list[list[Any]] = []
        self.at: list[float] = []
        self.predictions: list[Any] = []
        self.probabilities: list[Any] = []
        self.labels: list[Any] = []

    def add(self, at: dt.datetime, features: Any, prediction: Any, probabilities: Any, label: Any) -> None:
        data = features.get("data") if isinstance(features, dict) else None
        if not data or not isinstance(prediction, list) or len(prediction) != len(data):
            return
        columns = features.get("columns")
        if self.columns is None:
            self.columns = list(columns) if columns else None
        elif columns and list(columns) != self.columns:
            return  # another layout of the same inputs: the newest layout is estimated
        labels = label if isinstance(label, list) and len(label) == len(data) else [label] * len(data)
        if len(data) > 1 and not isinstance(label, list):
            labels = [None] * len(data)
        if not (isinstance(probabilities, list) and len(probabilities) == len(data)):
            probabilities = [None] * len(data)
        offset = (at - self.since).total_seconds()
        self.rows += data
        self.at += [offset] * len(data)
        self.predictions += prediction
        self.probabilities += probabilities
        self.labels += labels

    @property
    def offsets(self) -> np.ndarray:
        return np.asarray(self.at, dtype=float)

    def labelled(self) -> np.ndarray:
        return np.array([label is not None for label in self.labels], dtype=bool)

    def inputs(self, estimator: Estimator, rows: np.ndarray | None = None) -> dict[str, Any] | None:
        """What :func:`~loopml.monitor.estimate.estimate` takes for ``rows`` (all when ``None``)."""
        pick = np.arange(len(self.rows)) if rows is None else np.flatnonzero(rows)
        if estimator.kind == "cbpe":
            probabilities = [self.probabilities[i] for i in pick if self.probabilities[i] is not None]
            return {"probabilities": np.asarray(probabilities, dtype=float)} if probabilities else None
        columns = self.columns or (estimator.features if self.rows and len(self.rows[0]) == len(estimator.features)
                                   else None)
        if columns is None:
            return None
        try:
            frame = pd.DataFrame([self.rows[i] for i in pick], columns=columns)
            predictions = np.asarray([self.predictions[i] for i in pick], dtype=float)
        except (ValueError, TypeError):
            return None
        return {"features": frame, "predictions": predictions}


def _scored(session, serving, since: dt.datetime) -> _Scored:
    """The serving version's answered requests of the window (newest :data:`MAX_LIVE_ROWS` rows)."""
    scored = _Scored(since)
    statement = (select(PredictionRow.at, PredictionRow.features, PredictionRow.prediction,
                        PredictionRow.probabilities, PredictionRow.label)
                 .where(*serving, PredictionRow.status == 200).order_by(PredictionRow.at.desc())
                 .limit(MAX_REQUESTS).execution_options(yield_per=1000))
    for at, features, prediction, probabilities, label in session.execute(statement):
        scored.add(at, features, prediction, probabilities, label)
        if len(scored.rows) >= MAX_LIVE_ROWS:
            break
    return scored


def _realized(kind: str, scored: _Scored, rows: np.ndarray) -> float | None:
    """Accuracy (``cbpe``) or MAE (``dle``) of the predictions of ``rows`` against their labels."""
    pick = np.flatnonzero(rows)
    truth = [scored.labels[i] for i in pick]
    predicted = [scored.predictions[i] for i in pick]
    try:
        found = stats.quality(truth, predicted, "classification" if kind == "cbpe" else "regression")
    except InvalidInput:
        return None
    return found.get("accuracy" if kind == "cbpe" else "mae")


def _data_quality(session, in_window, requests: int) -> DataQuality | None:
    """Violations per feature and kind over the window's requests; ``None`` when there were no requests."""
    if not requests:
        return None
    affected = 0
    table: dict[tuple[str, str], list[int]] = {}
    statement = (select(PredictionRow.violations).where(*in_window, PredictionRow.violations.is_not(None))
                 .limit(MAX_REQUESTS).execution_options(yield_per=1000))
    for (violations,) in session.execute(statement):
        if not isinstance(violations, list) or not violations:
            continue
        affected += 1
        for violation in violations:
            if isinstance(violation, dict):
                counts = table.setdefault((str(violation.get("feature")), str(violation.get("kind"))), [0, 0])
                counts[0] += 1
                counts[1] += int(violation.get("rows") or 1)
    rows = [{"feature": feature, "kind": kind, "requests": n, "rows": r, "share": n / requests}
            for (feature, kind), (n, r) in sorted(table.items(), key=lambda item: -item[1][0])]
    return DataQuality(requests=requests, affected=affected, share=affected / requests, violations=rows)


def _labels(items: Iterable[FeedbackItem]) -> dict[str, Any]:
    """``{request_id: label}`` in the order given; InvalidInput for what cannot be stored."""
    items = list(items)
    if len(items) > MAX_FEEDBACK:
        raise InvalidInput(f"{len(items)} labels in one call: send at most {MAX_FEEDBACK} per call "
                           "(the client splits larger sets)", field="items")
    labels: dict[str, Any] = {}
    conflicts: list[str] = []
    for index, item in enumerate(items):
        if item.label is None:
            raise InvalidInput(f"items[{index}].label is null (request {item.request_id!r}): give the true value",
                               field="label")
        if item.request_id in labels and labels[item.request_id] != item.label:
            conflicts.append(item.request_id)
        labels[item.request_id] = item.label
    if conflicts:
        raise InvalidInput(f"request ids given two different labels: {', '.join(conflicts[:5])}", field="request_id")
    return labels


def _fits(label: Any, prediction: Any) -> bool:
    """Whether ``label`` fits a request that got ``prediction``: a list of n labels for n rows."""
    if not isinstance(prediction, list):
        return True  # refused before predicting: any label may be kept, it is never scored
    if isinstance(label, list):
        return len(label) == len(prediction)
    return len(prediction) == 1


def _scalars(reference: pd.Series, live: list[Any]) -> bool:
    """Whether predictions are single values (not lists or dicts), judged by the first of each side."""
    first = [values[0] for values in (reference.tolist(), live) if len(values)]
    return bool(first) and not any(isinstance(v, (list, tuple, dict, np.ndarray)) for v in first)


def _trend(recent: pd.DataFrame, since: dt.datetime, span: dt.timedelta) -> Trend:
    """Requests, p50 latency and error rate per bucket of ``span / TREND_BUCKETS``, oldest first."""
    width = span / TREND_BUCKETS
    starts = [since + width * i for i in range(TREND_BUCKETS)]
    if recent.empty:
        return Trend(starts=starts, requests=[0] * TREND_BUCKETS, latency_p50_ms=[None] * TREND_BUCKETS,
                     error_rate=[None] * TREND_BUCKETS)
    offsets = (pd.to_datetime(recent["at"], utc=True) - pd.Timestamp(since)).dt.total_seconds().to_numpy()
    bucket = np.clip((offsets // width.total_seconds()).astype(int), 0, TREND_BUCKETS - 1)
    status = recent["status"].to_numpy()
    requests = np.bincount(bucket, minlength=TREND_BUCKETS)
    errors = np.bincount(bucket[status >= 500], minlength=TREND_BUCKETS)
    answered = status < 400
    p50 = (pd.Series(recent["latency_ms"].to_numpy()[answered]).groupby(bucket[answered]).median()
           .reindex(range(TREND_BUCKETS)))
    return Trend(
        starts=starts,
        requests=requests.tolist(),
        latency_p50_ms=[None if np.isnan(v) else float(v) for v in p50.to_numpy()],
        error_rate=[float(e / r) if r else None for e, r in zip(errors, requests, strict=False)],
    )
