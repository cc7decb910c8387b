"""MonitorService on a real SQLite DB: captured rows are inserted as replicas store them; only
the endpoint lookup and the reference sample (MLflow) are fakes, injected as in production."""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from loopml.auth import StaticTokenAuthenticator
from loopml.db import Database, migrate, utcnow
from loopml.errors import InvalidInput, NotFound
from loopml.monitor.ingest import CaptureService
from loopml.monitor.models import MAX_FEEDBACK, MAX_WINDOW, FeedbackItem, parse_window
from loopml.monitor.orm import PredictionRow
from loopml.monitor.service import MlflowReferences, MonitorService
from loopml.projects import ProjectCreate, ProjectService
from loopml.registry.sdk import LABEL_COLUMN, PREDICTION_COLUMN
from loopml.registry.service import RegistryService
from loopml.server.app import create_app
from loopml.settings import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

IRIS = load_iris(as_frame=True)
COLUMNS = [str(c) for c in IRIS.data.columns]
SHIFTED = [COLUMNS[1], COLUMNS[2]]
MODEL = "demo.iris"


class FakeEndpoints:
    """The endpoint lookup of :class:`~loopml.serving.service.EndpointService`: ``demo/iris`` serves ``version``."""

    def __init__(self) -> None:
        self.version = 1

    def get(self, project: str, name: str) -> SimpleNamespace:
        if (project, name) != ("demo", "iris"):
            raise NotFound(f"endpoint {name!r} does not exist in project {project!r}", endpoint=name)
        return SimpleNamespace(model=MODEL, version=self.version, canary_version=None)


class FakeReferences:
    """The reference loader: the iris data set (with its labels as predictions) for every version."""

    def __init__(self, reference: pd.DataFrame | None) -> None:
        self.reference = reference
        self.calls: list[tuple[str, int]] = []

    def __call__(self, model: str, version: int) -> pd.DataFrame | None:
        self.calls.append((model, version))
        return self.reference


def iris_reference() -> pd.DataFrame:
    frame = IRIS.data.copy()
    frame.columns = COLUMNS
    frame[PREDICTION_COLUMN] = IRIS.target.to_numpy()
    frame[LABEL_COLUMN] = IRIS.target.to_numpy()
    return frame


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.upper().startswith("LOOPML_"):
            monkeypatch.delenv(name)
    return load_settings(data_dir=tmp_path, admin_token="admin-token",
                         tokens={"alice-token": {"name": "alice"}, "bob-token": {"name": "bob"}})


@pytest.fixture
def db(settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    migrate(database.engine)
    ProjectService(database).create(ProjectCreate(name="demo", members=["alice"]))
    yield database
    database.engine.dispose()


@pytest.fixture
def endpoints() -> FakeEndpoints:
    return FakeEndpoints()


@pytest.fixture
def references() -> FakeReferences:
    return FakeReferences(iris_reference())


@pytest.fixture
def captures(db) -> CaptureService:
    return CaptureService(db, None)


@pytest.fixture
def service(db, settings, endpoints, references, captures) -> MonitorService:
    return MonitorService(db, settings, endpoints, None, captures, references=references)


class Traffic:
    """Inserts captured requests as the capture route stores them; ids ``r0``, ``r1``… in order."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.count = 0

    def add(self, *, rows: np.ndarray | None = None, predictions: list[Any] | None = None, status: int = 200,
            latency_ms: float = 10.0, ago: dt.timedelta = dt.timedelta(minutes=1), version: int = 1,
            endpoint: str = "iris", project: str = "demo") -> list[str]:
        """One request per row of ``rows`` (or one request without features); returns the request ids."""
        now = utcnow()
        records = []
        for row in (rows if rows is not None else [None]):
            request_id = f"r{self.count}"
            self.count += 1
            features = None if row is None else {"columns": COLUMNS, "data": [list(map(float, row))]}
            prediction = None if status != 200 else (
                [predictions[len(records)]] if predictions is not None else [0])
            records.append(PredictionRow(project=project, endpoint=endpoint, request_id=request_id,
                                         version=version, at=now - ago, status=status, latency_ms=latency_ms,
                                         features=features, prediction=prediction))
        with self.db.session() as session:
            session.add_all(records)
        return [r.request_id for r in records]

    def add_batch(self, rows: np.ndarray, predictions: list[Any], ago: dt.timedelta = dt.timedelta(minutes=1)) -> str:
        """One multi-row request; returns its id."""
        request_id = f"r{self.count}"
        self.count += 1
        with self.db.session() as session:
            session.add(PredictionRow(project="demo", endpoint="iris", request_id=request_id, version=1,
                                      at=utcnow() - ago, status=200, latency_ms=12.0,
                                      features={"columns": COLUMNS, "data": rows.tolist()}, prediction=predictions))
        return request_id


@pytest.fixture
def traffic(db) -> Traffic:
    return Traffic(db)


def sample(count: int, seed: int = 0, shift: float = 0.0) -> tuple[np.ndarray, list[int]]:
    """``count`` iris rows with small noise (``shift`` added to the SHIFTED features) and their classes."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(IRIS.data), count)
    rows = np.round(IRIS.data.to_numpy()[index] + rng.normal(0, 0.05, (count, 4)), 1)
    rows[:, [1, 2]] += shift
    return rows, IRIS.target.to_numpy()[index].tolist()


# -- window ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, span", [
    ("15m", dt.timedelta(minutes=15)), ("1h", dt.timedelta(hours=1)), ("24h", dt.timedelta(hours=24)),
    ("7d", dt.timedelta(days=7)), ("30d", MAX_WINDOW), ("9999s", dt.timedelta(seconds=9999)),
], ids=["15m", "1h", "24h", "7d", "30d", "9999s"])
def test_windows_parse(text, span):
    assert parse_window(text) == span


@pytest.mark.parametrize("text", ["", "1", "h", "1w", "1.5h", "-1h", " 1h", "1H", "12345s", "0m", "31d", "721h"],
                         ids=["empty", "no-unit", "no-number", "weeks", "fraction", "negative", "space", "upper",
                              "five-digits", "zero", "31d", "over-30d"])
def test_bad_windows_name_the_field_and_the_format(service, text):
    with pytest.raises(InvalidInput) as caught:
        service.report("demo", "iris", text)
    assert caught.value.details["field"] == "window"
    assert "15m" in caught.value.message and "30d" in caught.value.message


def test_unknown_endpoint_is_not_found(service):
    with pytest.raises(NotFound):
        service.report("demo", "other")
    with pytest.raises(NotFound):
        service.feedback("demo", "other", [FeedbackItem(request_id="r0", label=1)])


# -- traffic, latency, trend ----------------------------------------------------------------

def test_counts_rates_and_latency_cover_the_window_of_this_endpoint_only(service, traffic, captures):
    rows, _ = sample(90)
    traffic.add(rows=rows[:60], latency_ms=10.0, ago=dt.timedelta(minutes=52))
    traffic.add(rows=rows[60:], latency_ms=30.0, ago=dt.timedelta(minutes=2))
    for _ in range(6):
        traffic.add(status=422, latency_ms=1000.0)
    for _ in range(4):
        traffic.add(status=500, latency_ms=2000.0, ago=dt.timedelta(minutes=2))
    traffic.add(rows=rows[:5], ago=dt.timedelta(hours=2))  # before the window
    traffic.add(rows=rows[:5], endpoint="other")  # another endpoint
    captures.dropped[("demo", "iris")] += 7

    report = service.report("demo", "iris", "1h")

    assert (report.requests, report.errors, report.refused) == (100, 4, 6)
    assert report.error_rate == pytest.approx(0.04) and report.rate_per_s == pytest.approx(100 / 3600)
    assert report.until - report.since == dt.timedelta(hours=1) and report.window == "1h"
    assert report.latency_ms["p50"] == pytest.approx(10.0) and report.latency_ms["max"] == pytest.approx(30.0)
    assert report.latency_ms["mean"] == pytest.approx((60 * 10 + 30 * 30) / 90)
    assert report.capture_dropped == 7 and report.alerts == []
    trend = report.trend
    assert len(trend.starts) == len(trend.requests) == 12 and sum(trend.requests) == 100
    assert trend.starts[0] == report.since and trend.starts[1] - trend.starts[0] == dt.timedelta(minutes=5)
    assert trend.requests[1] == 60 and trend.requests[-1] == 40  # 52 min ago: the second 5-minute bucket
    assert trend.latency_p50_ms[1] == pytest.approx(10.0) and trend.latency_p50_ms[-1] == pytest.approx(30.0)
    assert trend.latency_p50_ms[0] is None and trend.error_rate[0] is None
    assert trend.error_rate[1] == 0 and trend.error_rate[-1] == pytest.approx(4 / 40)


def test_an_endpoint_without_traffic_reports_zeros_and_why_drift_is_empty(service):
    report = service.report("demo", "iris", "15m")
    assert (report.requests, report.rate_per_s, report.error_rate, report.labelled) == (0, 0.0, None, 0)
    assert set(report.latency_ms.values()) == {None} and report.quality is None
    assert report.trend.requests == [0] * 12 and report.drifted_features == []
    assert any("drift needs 30" in note for note in report.notes)


# -- drift ----------------------------------------------------------------------------------

def test_in_distribution_traffic_does_not_drift(service, traffic):
    rows, classes = sample(200, seed=1)
    traffic.add(rows=rows[:150], predictions=classes[:150])
    traffic.add_batch(rows[150:], classes[150:])  # a multi-row request counts each of its rows
    report = service.report("demo", "iris")
    assert [d["feature"] for d in report.drift] == COLUMNS and report.drifted_features == []
    assert {d["n_live"] for d in report.drift} == {200} and {d["n_reference"] for d in report.drift} == {150}
    assert report.prediction_drift["drifted"] is False and report.prediction_drift["n_live"] == 200


def test_shifted_features_drift_and_only_they(service, traffic):
    rows, classes = sample(200, seed=2, shift=3.0)
    traffic.add(rows=rows, predictions=classes)
    report = service.report("demo", "iris")
    assert report.drifted_features == SHIFTED
    assert {d["feature"]: d["drifted"] for d in report.drift} == {c: c in SHIFTED for c in COLUMNS}


def test_drift_reads_only_the_serving_versions_successful_requests(service, traffic, endpoints):
    calm, _ = sample(100, seed=3)
    shifted, _ = sample(100, seed=4, shift=3.0)
    traffic.add(rows=calm, version=2)
    traffic.add(rows=shifted, version=1)  # the version served before
    traffic.add(rows=shifted, status=422)  # refused requests carry features too, but were never answered
    endpoints.version = 2
    report = service.report("demo", "iris")
    assert report.version == 2 and report.requests == 300
    assert report.drifted_features == [] and {d["n_live"] for d in report.drift} == {100}


def test_the_reference_is_loaded_once_per_version(service, traffic, references, endpoints):
    traffic.add(rows=sample(40)[0])
    service.report("demo", "iris")
    service.report("demo", "iris", "24h")
    endpoints.version = 2
    service.report("demo", "iris")
    assert references.calls == [(MODEL, 1), (MODEL, 2)]


def test_without_a_reference_sample_the_report_says_why_drift_is_empty(db, settings, endpoints, captures, traffic):
    service = MonitorService(db, settings, endpoints, None, captures, references=FakeReferences(None))
    traffic.add(rows=sample(40)[0])
    report = service.report("demo", "iris")
    assert report.requests == 40 and report.drift == [] and report.prediction_drift is None
    assert any("no reference sample" in note for note in report.notes)


def test_an_unreadable_reference_leaves_the_rest_of_the_report(db, settings, endpoints, captures, traffic):
    from loopml.errors import Unavailable

    def broken(model: str, version: int):
        raise Unavailable("the MLflow server did not answer", component="mlflow")

    traffic.add(rows=sample(40)[0])
    report = MonitorService(db, settings, endpoints, None, captures, references=broken).report("demo", "iris")
    assert report.requests == 40 and report.drift == []
    assert any("could not be read" in note and "did not answer" in note for note in report.notes)


ROOT = "mlflow-artifacts:/1/r1/artifacts"
OWN = "loopml/reference/iris/m-1.parquet"


class FakeMlflow:
    """An MLflow client with versions 1.. of MODEL with the given reference tags, logged by run
    ``r1`` of the project's experiment (or ``run_of`` a version); runs ``r1`` (experiment ``demo``)
    and ``b1`` (experiment ``bob``). ``fetched`` lists what the loader downloaded."""

    def __init__(self, tags: dict[int, str | None], run_of: dict[int, str | None] | None = None) -> None:
        self.tags, self.run_of = tags, run_of or {}
        self.runs = {"r1": ("1", ROOT), "b1": ("2", "mlflow-artifacts:/2/b1/artifacts")}

    def get_model_version(self, name, version):
        tag = self.tags[int(version)]
        return SimpleNamespace(tags={} if tag is None else {MlflowReferences.TAG: tag},
                               run_id=self.run_of.get(int(version), "r1"))

    def get_run(self, run_id):
        experiment_id, root = self.runs[run_id]
        return SimpleNamespace(info=SimpleNamespace(experiment_id=experiment_id, artifact_uri=root))

    def get_experiment(self, experiment_id):
        return SimpleNamespace(name={"1": "demo", "2": "bob"}[experiment_id])


def fake_registry(tags: dict[int, str | None], run_of: dict[int, str | None] | None = None) -> RegistryService:
    """The real RegistryService over :class:`FakeMlflow`: it decides what a reference tag may name."""
    registry = RegistryService("http://127.0.0.1:1")
    registry.client = FakeMlflow(tags, run_of)
    return registry


@pytest.fixture
def fetched(tmp_path, monkeypatch) -> list[str]:
    """What the loader downloads: ``runs:/r1/<OWN>`` gives the iris reference, nothing else exists."""
    import mlflow.artifacts

    calls: list[str] = []

    def download(artifact_uri, dst_path, tracking_uri):
        calls.append(artifact_uri)
        assert artifact_uri == f"runs:/r1/{OWN}", artifact_uri
        target = Path(dst_path) / "m-1.parquet"
        iris_reference().to_parquet(target, index=False)
        return str(target)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download)
    return calls


@pytest.mark.parametrize("tag", [f"runs:/r1/{OWN}", f"{ROOT}/{OWN}"], ids=["runs-uri", "artifact-root"])
def test_the_mlflow_loader_reads_the_reference_artifact_of_the_versions_own_run(fetched, tag):
    load = MlflowReferences(fake_registry({1: tag, 2: None}))
    pd.testing.assert_frame_equal(load(MODEL, 1), iris_reference())
    assert load(MODEL, 2) is None and fetched == [f"runs:/r1/{OWN}"]  # always through runs:/ of that run


@pytest.mark.parametrize(("tag", "run_id", "why"), [
    ("file:///etc/passwd", "r1", "not an artifact of that run"),
    ("http://169.254.169.254/latest/meta-data", "r1", "not an artifact of that run"),
    ("https://evil.example/x.parquet", "r1", "not an artifact of that run"),
    ("models:/demo.iris/1", "r1", "not an artifact of that run"),
    (f"runs:/b1/{OWN}", "r1", "not an artifact of that run"),  # another run (of another project)
    (f"runs:/r1x/{OWN}", "r1", "not an artifact of that run"),
    (f"runs:/r1/../b1/{OWN}", "r1", "not an artifact of that run"),
    (f"runs:/r1/a/%2e%2e/{OWN}", "r1", "not an artifact of that run"),
    ("runs:/r1/", "r1", "not an artifact of that run"),
    (f"{ROOT}/../../2/b1/artifacts/{OWN}", "r1", "not an artifact of that run"),
    (f"mlflow-artifacts:/2/b1/artifacts/{OWN}", "r1", "not an artifact of that run"),
    (f"{ROOT}x/{OWN}", "r1", "not an artifact of that run"),
    (f"runs:/b1/{OWN}", "b1", "not of the model's project"),  # a version pointed at B's run
    (f"runs:/r1/{OWN}", None, "without a run"),
], ids=["file", "metadata-http", "https", "models-uri", "other-run", "run-prefix", "dotdot", "encoded-dotdot", "empty",
        "root-dotdot", "other-run-root", "root-prefix", "run-of-other-project", "no-run"])
def test_a_reference_tag_outside_the_versions_own_run_is_refused_and_never_fetched(fetched, tag, run_id, why):
    load = MlflowReferences(fake_registry({1: tag}, run_of={1: run_id}))
    with pytest.raises(InvalidInput, match=why) as refused:
        load(MODEL, 1)
    assert fetched == [] and "loopml.reference" in refused.value.message and "runs:/" in refused.value.message


def test_a_refused_reference_tag_is_a_note_of_the_report_not_an_error(db, settings, endpoints, captures, traffic,
                                                                       fetched):
    traffic.add(rows=sample(40)[0])
    references = MlflowReferences(fake_registry({1: "http://169.254.169.254/x"}))
    report = MonitorService(db, settings, endpoints, None, captures, references=references).report("demo", "iris")
    assert report.requests == 40 and report.drift == [] and fetched == []
    assert any("could not be read" in note and "not an artifact of that run" in note for note in report.notes)


# -- feedback and quality -------------------------------------------------------------------

def labels_of(db: Database) -> dict[str, Any]:
    with db.session() as session:
        return {r.request_id: r.label for r in session.query(PredictionRow).where(PredictionRow.labelled_at.is_not(None))}


def test_feedback_counts_accepted_updated_unchanged_and_lists_unknown_ids(service, traffic, db):
    ids = traffic.add(rows=sample(4)[0], predictions=[0, 1, 2, 1])
    first = service.feedback("demo", "iris", [FeedbackItem(request_id=i, label=label)
                                              for i, label in zip(ids[:3], [0, 1, 2], strict=True)]
                             + [FeedbackItem(request_id="nope", label=1)])
    assert (first.accepted, first.updated, first.unchanged, first.unknown) == (3, 0, 0, ["nope"])

    again = service.feedback("demo", "iris", [FeedbackItem(request_id=ids[0], label=0),
                                              FeedbackItem(request_id=ids[1], label=2),
                                              FeedbackItem(request_id=ids[3], label=1)])
    assert (again.accepted, again.updated, again.unchanged, again.unknown) == (1, 1, 1, [])
    assert labels_of(db) == {ids[0]: 0, ids[1]: 2, ids[2]: 2, ids[3]: 1}


def test_resending_labels_is_idempotent_and_quality_counts_each_once(service, traffic):
    rows, classes = sample(100, seed=5)
    predicted = list(classes)
    predicted[:10] = [(c + 1) % 3 for c in classes[:10]]  # ten wrong answers
    ids = traffic.add(rows=rows, predictions=predicted)
    items = [FeedbackItem(request_id=i, label=c) for i, c in zip(ids, classes, strict=True)]
    assert service.feedback("demo", "iris", items).accepted == 100
    resent = service.feedback("demo", "iris", items)
    assert (resent.accepted, resent.updated, resent.unchanged) == (0, 0, 100)
    report = service.report("demo", "iris")
    assert report.labelled == 100
    assert report.quality["task"] == "classification" and report.quality["n"] == 100
    assert report.quality["accuracy"] == pytest.approx(0.9)


def test_a_multi_row_request_takes_a_label_per_row(service, traffic, db):
    rows, _ = sample(3, seed=6)
    request_id = traffic.add_batch(rows, [0, 1, 2])
    single = traffic.add(rows=rows[:1], predictions=[5.0])[0]
    with pytest.raises(InvalidInput) as caught:
        service.feedback("demo", "iris", [FeedbackItem(request_id=request_id, label=1)])
    assert caught.value.details["field"] == "label" and request_id in caught.value.message
    with pytest.raises(InvalidInput):
        service.feedback("demo", "iris", [FeedbackItem(request_id=single, label=[1, 2])])
    assert labels_of(db) == {}
    assert service.feedback("demo", "iris", [FeedbackItem(request_id=request_id, label=[0, 1, 1]),
                                             FeedbackItem(request_id=single, label=[5])]).accepted == 2
    quality = service.report("demo", "iris").quality
    assert quality["n"] == 4 and quality["accuracy"] == pytest.approx(3 / 4)


def test_regression_labels_give_mae_and_rmse(service, traffic):
    ids = traffic.add(rows=sample(3)[0], predictions=[1.5, 2.25, 3.0])
    service.feedback("demo", "iris", [FeedbackItem(request_id=i, label=v) for i, v in zip(ids, [1.0, 2.0, 3.75], strict=True)])
    quality = service.report("demo", "iris").quality
    assert quality["task"] == "regression" and quality["mae"] == pytest.approx(0.5)


@pytest.mark.parametrize("items, field, says", [
    ([FeedbackItem(request_id="r0", label=None)], "label", "null"),
    ([FeedbackItem(request_id="r0", label=1), FeedbackItem(request_id="r0", label=2)], "request_id", "r0"),
    ([FeedbackItem(request_id=f"x{i}", label=1) for i in range(MAX_FEEDBACK + 1)], "items", "at most 10000"),
], ids=["null-label", "two-labels-for-one-id", "too-many"])
def test_bad_feedback_is_refused_whole(service, traffic, db, items, field, says):
    traffic.add(rows=sample(2)[0])
    with pytest.raises(InvalidInput) as caught:
        service.feedback("demo", "iris", [FeedbackItem(request_id="r1", label=1), *items])
    assert caught.value.details["field"] == field and says in caught.value.message
    assert labels_of(db) == {}


def test_many_labels_are_matched_in_chunks(service, traffic):
    ids = traffic.add(rows=sample(1200, seed=7)[0])
    items = [FeedbackItem(request_id=i, label=0) for i in ids] + [FeedbackItem(request_id="gone", label=0)]
    result = service.feedback("demo", "iris", items)
    assert (result.accepted, result.unknown) == (1200, ["gone"])


# -- routes ---------------------------------------------------------------------------------

@pytest.fixture
def http(settings, db, service) -> TestClient:
    app = create_app(settings)
    app.state.services.authenticator = StaticTokenAuthenticator(settings)  # no lifespan: no Ray, no MLflow
    app.state.services.projects = ProjectService(db)
    app.state.services.monitor = service
    return TestClient(app, raise_server_exceptions=False)


MONITOR, FEEDBACK = "/api/v1/projects/demo/endpoints/iris/monitor", "/api/v1/projects/demo/endpoints/iris/feedback"


@pytest.mark.parametrize("token, method, path, status", [
    ("alice-token", "GET", MONITOR, 200),
    ("alice-token", "POST", FEEDBACK, 200),
    ("admin-token", "GET", MONITOR, 200),
    ("bob-token", "GET", MONITOR, 403),
    ("bob-token", "POST", FEEDBACK, 403),
    (None, "GET", MONITOR, 401),
], ids=["member-report", "member-feedback", "admin-report", "non-member-report", "non-member-feedback",
        "no-token"])
def test_who_may_read_reports_and_send_labels(http, traffic, token, method, path, status):
    traffic.add(rows=sample(1)[0])
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = http.request(method, path, headers=headers, json=[{"request_id": "r0", "label": 1}]
                          if method == "POST" else None)
    assert answer.status_code == status, answer.text


def test_routes_answer_the_report_and_refuse_a_bad_window_naming_it(http, traffic):
    traffic.add(rows=sample(1)[0])
    auth = {"Authorization": "Bearer alice-token"}
    report = http.get(MONITOR, params={"window": "15m"}, headers=auth).json()
    assert report["requests"] == 1 and report["window"] == "15m" and len(report["trend"]["starts"]) == 12
    bad = http.get(MONITOR, params={"window": "2w"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["field"] == "window" and "2w" in bad.json()["message"]
    answer = http.post(FEEDBACK, headers=auth, json=[{"request_id": "r0", "label": 2}, {"request_id": "zz", "label": 1}])
    assert answer.json() == {"accepted": 1, "updated": 0, "unchanged": 0, "unknown": ["zz"]}
    missing = http.post(FEEDBACK, headers=auth, json=[{"label": 2}])
    assert missing.status_code == 422 and "request_id" in missing.json()["message"]


# -- estimated performance and data quality ------------------------------------------------------


def iris_estimator():
    """A CBPE estimator of a logistic regression on iris, fit on held-out rows."""
    from sklearn.linear_model import LogisticRegression

    from loopml.registry.estimator import fit_estimator

    rng = np.random.default_rng(0)
    index = rng.permutation(len(IRIS.data))
    train, test = index[:90], index[90:]
    model = LogisticRegression(max_iter=500).fit(IRIS.data.to_numpy()[train], IRIS.target.to_numpy()[train])
    X = IRIS.data.to_numpy()[test]
    return model, fit_estimator("cbpe", y_true=IRIS.target.to_numpy()[test], probabilities=model.predict_proba(X),
                                classes=list(model.classes_))


def add_scored(db, model, rows: np.ndarray, *, ago: dt.timedelta, labels: list[int] | None = None,
               probabilities: bool = True, violations: list[dict] | None = None) -> None:
    now = utcnow()
    with db.session() as session:
        for i, row in enumerate(rows):
            proba = model.predict_proba(row[None, :])
            session.add(PredictionRow(
                project="demo", endpoint="iris", request_id=f"s{ago.total_seconds()}-{i}", version=1, at=now - ago,
                status=200, latency_ms=5.0, features={"columns": COLUMNS, "data": [row.tolist()]},
                prediction=[int(proba.argmax())], probabilities=proba.round(4).tolist() if probabilities else None,
                label=None if labels is None else labels[i], labelled_at=None if labels is None else now,
                violations=violations))


def test_the_report_estimates_accuracy_per_bucket_and_its_error_once_labels_come(db, settings, endpoints, captures):
    model, estimator = iris_estimator()
    calls = []
    service = MonitorService(db, settings, endpoints, None, captures, references=FakeReferences(None),
                             estimators=lambda m, v: calls.append((m, v)) or estimator)
    rows, classes = sample(120, seed=4)
    add_scored(db, model, rows[:60], ago=dt.timedelta(minutes=50))
    add_scored(db, model, rows[60:], ago=dt.timedelta(minutes=5), labels=classes[60:])
    report = service.report("demo", "iris", "1h")
    est = report.estimated
    assert est.metric == "accuracy" and est.n == 120 and est.low <= est.value <= est.high
    assert est.labelled == 60 and est.realized == pytest.approx(
        float(np.mean(model.predict(rows[60:]) == np.asarray(classes[60:]))))
    assert est.error == pytest.approx(est.estimated_on_labelled - est.realized)
    filled = [i for i, v in enumerate(report.trend.estimated) if v is not None]
    assert len(filled) == 2 and [i for i, v in enumerate(report.trend.realized) if v is not None] == [filled[1]]
    service.report("demo", "iris", "1h")
    assert calls == [(MODEL, 1)]  # loaded once per version


def test_without_an_estimator_or_probabilities_the_report_says_why(db, settings, endpoints, captures):
    model, estimator = iris_estimator()
    rows, _ = sample(40, seed=5)
    add_scored(db, model, rows, ago=dt.timedelta(minutes=1), probabilities=False)
    none = MonitorService(db, settings, endpoints, None, captures, references=FakeReferences(None)).report(
        "demo", "iris", "1h")
    assert none.estimated is None and any("no performance estimator" in n for n in none.notes)
    bare = MonitorService(db, settings, endpoints, None, captures, references=FakeReferences(None),
                          estimators=lambda m, v: estimator).report("demo", "iris", "1h")
    assert bare.estimated is None and any("no class probabilities" in n for n in bare.notes)


def test_the_data_quality_table_counts_violations_per_feature_and_kind(db, service, traffic):
    model, _ = iris_estimator()
    rows, _ = sample(10, seed=6)
    traffic.add(rows=rows[:6])
    add_scored(db, model, rows[6:8], ago=dt.timedelta(minutes=2),
               violations=[{"feature": COLUMNS[0], "kind": "out_of_range", "rows": 1}])
    add_scored(db, model, rows[8:], ago=dt.timedelta(minutes=3),
               violations=[{"feature": COLUMNS[0], "kind": "out_of_range", "rows": 1},
                           {"feature": COLUMNS[3], "kind": "missing", "rows": 1}])
    quality = service.report("demo", "iris", "1h").data_quality
    assert (quality.requests, quality.affected, quality.share) == (10, 4, 0.4)
    assert quality.violations == [
        {"feature": COLUMNS[0], "kind": "out_of_range", "requests": 4, "rows": 4, "share": 0.4},
        {"feature": COLUMNS[3], "kind": "missing", "requests": 2, "rows": 2, "share": 0.2}]
