"""Policies over a real SQLite DB: alerts open and close, one requeue per cooldown, a user
requeue records a manual alert, and a finished job's challenger is followed up."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from loopml.db import Database, migrate
from loopml.errors import Conflict
from loopml.executor.models import Job, JobStatus, Trigger
from loopml.executor.pipelines.models import PipelineRun, PipelineStep
from loopml.executor.pipelines.run_state import RunStatus, StepStatus
from loopml.monitor.models import DataQuality, Estimated, PolicySpec, RequeueRequest
from loopml.monitor.policies import PolicyService
from loopml.projects import ProjectCreate, ProjectService
from loopml.registry.models import ModelRef
from loopml.settings import load_settings
from tests.unit.payloads import job_json


@dataclass
class Fakes:
    report: dict[str, Any] = field(default_factory=lambda: {
        "requests": 500, "version": 1, "drift": [{}, {}, {}, {}], "drifted_features": [], "quality": None,
        "error_rate": 0.0, "errors": 0})
    requeued: list[tuple[str, str, dict, Trigger]] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    job_of_version: str | None = "train-1"
    deployed: list[str] = field(default_factory=list)
    aliased: list[int] = field(default_factory=list)
    pipeline_of_version: str | None = None
    reruns: list[tuple[str, str, dict, Trigger]] = field(default_factory=list)
    runs: dict[str, PipelineRun] = field(default_factory=dict)
    gate: tuple[list[int], str | None] = ([], "no step registered one")

    # pipelines
    def rerun_blocking(self, user, project, run_id, overrides, *, trigger):
        self.reruns.append((user, run_id, overrides, trigger))
        run = pipeline_run(f"p{len(self.reruns) + 1}", trigger=trigger, parent_id=run_id)
        self.runs[run.id] = run
        return run

    def get_run(self, project, run_id):
        return self.runs[run_id]

    def registered_versions(self, project, run_id, model):
        assert model == "iris"
        return self.gate

    # monitor
    def report_of(self, project, name, window, estimate=True):
        return SimpleNamespace(**{"estimated": None, "data_quality": None, **self.report})

    # jobs
    def requeue(self, user, project, job_id, change, trigger):
        job = Job(**job_json(f"j{len(self.requeued) + 2}", trigger=trigger.value, parent_id=job_id,
                             parameters=change.parameters))
        self.requeued.append((user, job_id, change.parameters, trigger))
        self.jobs[job.id] = job
        return job

    def get(self, project, job_id):
        return self.jobs[job_id]


def pipeline_run(run_id: str, status: RunStatus = RunStatus.RUNNING, **fields: Any) -> PipelineRun:
    now = dt.datetime.now(dt.timezone.utc)
    step = PipelineStep(id="train", kind="notebook", after=[], status=StepStatus.FAILED if status == RunStatus.FAILED
                        else StepStatus.RUNNING, message="its job failed: boom" if status == RunStatus.FAILED else None)
    return PipelineRun(id=run_id, project="demo", user="alice", name="retrain", source_name="retrain.pipeline.yaml",
                       status=status, attempt=1, parameters={}, no_cache=True, steps=[step], mlflow_run_id=None,
                       created_at=now, updated_at=now, finished_at=None, **fields)


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def service(tmp_path, monkeypatch, fakes) -> PolicyService:
    monkeypatch.delenv("LOOPML_HOME", raising=False)
    settings = load_settings(data_dir=tmp_path)
    db = Database(settings.database_url)
    migrate(db.engine)
    ProjectService(db).create(ProjectCreate(name="demo", members=["alice"]))
    endpoint = SimpleNamespace(project="demo", name="ep", model="demo.iris", version=1)
    endpoints = SimpleNamespace(get=lambda project, name: endpoint,
                                deploy=lambda user, project, spec: fakes.deployed.append(spec.model))
    registry = SimpleNamespace(
        training_job_id=lambda model, version: fakes.job_of_version or None,
        training_pipeline_run_id=lambda model, version: fakes.pipeline_of_version,
        set_alias=lambda project, name, alias, version, user: fakes.aliased.append(version))
    monitor = SimpleNamespace(report=fakes.report_of)
    jobs = SimpleNamespace(requeue=fakes.requeue, get=fakes.get)
    pipelines = SimpleNamespace(rerun_blocking=fakes.rerun_blocking, get=fakes.get_run,
                                registered_versions=fakes.registered_versions)
    policies = PolicyService(db, settings, monitor, jobs, endpoints, registry, pipelines)
    policies.compare = lambda *args, **options: {"winner": "challenger", "promoted": False}
    yield policies
    db.engine.dispose()


def open_alerts(service) -> list:
    return [a for a in service.alerts("demo") if a.status == "open"]


def test_drift_opens_one_alert_and_requeues_once_per_cooldown(service, fakes):
    service.set_policy("alice", "demo", "ep", PolicySpec(action="requeue", cooldown_s=3600, parameters={"C": 0.5}))
    fakes.report["drifted_features"] = ["petal_width", "petal_length"]
    for _ in range(3):
        service.evaluate_once()
    [alert] = open_alerts(service)
    assert (alert.kind, alert.value, alert.detail["features"]) == ("drift", 0.5, ["petal_width", "petal_length"])
    assert alert.action == "requeue" and alert.job_id == "j2"
    assert fakes.requeued == [("policy", "train-1", {"C": 0.5}, Trigger.POLICY)]

    fakes.report["drifted_features"] = []  # condition clears, then fires again inside the cooldown
    service.evaluate_once()
    assert open_alerts(service) == []
    fakes.report["drifted_features"] = ["petal_width"]
    service.evaluate_once()
    [again] = open_alerts(service)
    assert again.action == "cooldown" and again.job_id is None and len(fakes.requeued) == 1


def test_thresholds_below_min_samples_do_not_fire(service, fakes):
    service.set_policy("alice", "demo", "ep", PolicySpec(min_samples=1000, accuracy_below=0.9))
    fakes.report.update(drifted_features=["x"], quality={"accuracy": 0.5, "n": 50})
    service.evaluate_once()
    assert service.alerts("demo") == []


def estimated(metric: str, value: float, reference: float) -> Estimated:
    return Estimated(metric=metric, value=value, low=value - 0.02, high=value + 0.02, n=500,
                     reference={metric: reference}, source="test")


@pytest.mark.parametrize("spec, report, kind, value", [
    ({"accuracy_below": 0.9, "drift": False}, {"quality": {"accuracy": 0.7, "n": 80}}, "accuracy", 0.7),
    ({"error_rate_above": 0.05, "drift": False}, {"error_rate": 0.2, "errors": 100}, "error_rate", 0.2),
    ({"estimated_accuracy_below": 0.8, "drift": False}, {"estimated": estimated("accuracy", 0.62, 0.85)},
     "est_accuracy", 0.62),
    ({"estimated_mae_above": 1.0, "drift": False}, {"estimated": estimated("mae", 1.4, 0.6)}, "est_mae", 1.4),
    ({"violations_above": 0.1, "drift": False},
     {"data_quality": DataQuality(requests=200, affected=50, share=0.25, violations=[
         {"feature": "x", "kind": "out_of_range", "requests": 50, "rows": 50, "share": 0.25}])}, "violations", 0.25),
], ids=["accuracy", "error-rate", "estimated-accuracy", "estimated-mae", "violations"])
def test_other_thresholds_alert_without_requeue(service, fakes, spec, report, kind, value):
    service.set_policy("alice", "demo", "ep", PolicySpec(**spec))
    fakes.report.update(report)
    service.evaluate_once()
    [alert] = open_alerts(service)
    assert (alert.kind, alert.value, alert.action) == (kind, value, "alert") and fakes.requeued == []


@pytest.mark.parametrize("estimate, fires", [
    (None, True),  # no estimator: the drift alone decides
    (estimated("accuracy", 0.84, 0.85), False),  # within estimate_drop of the held-out accuracy
    (estimated("accuracy", 0.70, 0.85), True),
    (estimated("mae", 0.62, 0.6), False),
    (estimated("mae", 0.9, 0.6), True),
], ids=["no-estimate", "accuracy-held", "accuracy-dropped", "mae-held", "mae-rose"])
def test_drift_needs_an_estimated_drop_when_the_policy_says_so(service, fakes, estimate, fires):
    service.set_policy("alice", "demo", "ep", PolicySpec(drift_needs_estimate=True, action="requeue", cooldown_s=0))
    fakes.report.update(drifted_features=["x3"], estimated=estimate)
    service.evaluate_once()
    assert [a.kind for a in open_alerts(service)] == (["drift"] if fires else [])
    assert len(fakes.requeued) == (1 if fires else 0)


def test_a_new_serving_version_closes_the_old_versions_alerts(service, fakes):
    service.set_policy("alice", "demo", "ep", PolicySpec())
    fakes.report["drifted_features"] = ["x"]
    service.evaluate_once()
    fakes.report.update(version=2, drifted_features=[])
    service.evaluate_once()
    [alert] = service.alerts("demo")
    assert alert.status == "closed" and "another version" in alert.detail["closed"]


def test_user_requeue_records_a_manual_alert_and_the_challenger_is_promoted(service, fakes):
    service.set_policy("alice", "demo", "ep", PolicySpec(auto_promote=True, drift=False))
    requeued = service.requeue("alice", "demo", "ep", RequeueRequest(parameters={"C": 2}))
    assert requeued.alert.kind == "manual" and requeued.alert.job_id == requeued.job.id
    assert fakes.requeued == [("alice", "train-1", {"C": 2}, Trigger.USER)]
    assert service.alerts("demo", job_id=requeued.job.id)[0].id == requeued.alert.id

    service.evaluate_once()  # still running: nothing to follow up
    assert service.alerts("demo")[0].evaluation is None
    fakes.jobs[requeued.job.id] = requeued.job.model_copy(update={
        "status": JobStatus.SUCCEEDED, "models": [ModelRef(name="demo.iris", version=2)]})
    service.evaluate_once()
    [alert] = service.alerts("demo")
    assert alert.produced_version == 2 and alert.evaluation["promoted"] is True
    assert fakes.aliased == [2] and fakes.deployed == ["iris/2"]


def test_a_failed_training_job_ends_the_follow_up(service, fakes):
    requeued = service.requeue("alice", "demo", "ep", RequeueRequest())
    fakes.jobs[requeued.job.id] = requeued.job.model_copy(update={"status": JobStatus.FAILED})
    service.evaluate_once()
    assert "failed" in service.alerts("demo")[0].evaluation["result"]


def test_a_version_without_a_training_job_cannot_be_requeued(service, fakes):
    fakes.job_of_version = None
    with pytest.raises(Conflict, match="no training to requeue"):
        service.requeue("alice", "demo", "ep", RequeueRequest())
    assert service.alerts("demo") == []


def test_a_version_a_pipeline_made_is_retrained_by_rerunning_that_pipeline(service, fakes):
    fakes.pipeline_of_version = "p1"
    service.set_policy("alice", "demo", "ep", PolicySpec(action="requeue", auto_promote=True, parameters={"C": 3}))
    fakes.report["drifted_features"] = ["x"]
    service.evaluate_once()
    [alert] = open_alerts(service)
    assert fakes.reruns == [("policy", "p1", {"C": 3}, Trigger.POLICY)] and fakes.requeued == []
    assert (alert.action, alert.pipeline_run_id, alert.job_id) == ("requeue", "p2", None)

    service.evaluate_once()  # the run is still going: nothing to follow up
    assert service.alerts("demo")[0].evaluation is None
    fakes.gate = ([4], None)
    fakes.runs["p2"] = fakes.runs["p2"].model_copy(update={"status": RunStatus.SUCCEEDED})
    service.evaluate_once()
    [alert] = service.alerts("demo")
    assert alert.produced_version == 4 and alert.evaluation["promoted"] is True
    assert fakes.aliased == [4] and fakes.deployed == ["iris/4"]


def test_a_pipeline_whose_gate_held_the_version_back_leaves_no_challenger(service, fakes):
    fakes.pipeline_of_version = "p1"
    requeued = service.requeue("alice", "demo", "ep", RequeueRequest())
    assert requeued.job is None and requeued.pipeline_run.parent_id == "p1"
    assert requeued.alert.pipeline_run_id == requeued.pipeline_run.id
    fakes.gate = ([], "the pipeline's gate held the new version back (deploy: accuracy = 0.5 < 0.9)")
    fakes.runs["p2"] = fakes.runs["p2"].model_copy(update={"status": RunStatus.SUCCEEDED})
    service.evaluate_once()
    [alert] = service.alerts("demo")
    assert alert.produced_version is None and "gate held the new version back" in alert.evaluation["result"]
    assert fakes.aliased == [] and fakes.deployed == []


def test_a_failed_training_pipeline_ends_the_follow_up_naming_the_failed_step(service, fakes):
    fakes.pipeline_of_version = "p1"
    requeued = service.requeue("alice", "demo", "ep", RequeueRequest())
    fakes.runs[requeued.pipeline_run.id] = pipeline_run(requeued.pipeline_run.id, RunStatus.FAILED)
    service.evaluate_once()
    assert service.alerts("demo")[0].evaluation == {
        "result": "the training pipeline run failed (train: its job failed: boom): no challenger"}


def test_policy_rejects_a_bad_window():
    with pytest.raises(ValueError, match="window"):
        PolicySpec(window="soon")


def test_a_deleted_endpoints_policy_is_skipped_without_a_traceback(service, fakes, caplog):
    from loopml.errors import NotFound

    service.set_policy("alice", "demo", "ep", PolicySpec())

    def gone(project, name, *window, **options):
        raise NotFound(f"endpoint {name!r} does not exist")

    service.monitor.report = gone  # as the real report does for a deleted endpoint
    with caplog.at_level("INFO", logger="loopml.monitor.policies"):
        service.evaluate_once()
    assert "does not exist" in caplog.text and "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


def test_promote_on_estimate_needs_the_challenger_to_win_on_estimated_accuracy(tmp_path, monkeypatch):
    """The race on unlabelled traffic: the champion's captured probabilities against the
    challenger's own (from its sandboxed answers), each through its own estimator."""
    import numpy as np

    from loopml.monitor.orm import PredictionRow
    from loopml.registry.estimator import fit_estimator

    monkeypatch.delenv("LOOPML_HOME", raising=False)
    settings = load_settings(data_dir=tmp_path)
    db = Database(settings.database_url)
    migrate(db.engine)
    ProjectService(db).create(ProjectCreate(name="demo", members=["alice"]))
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0, 1, 400)  # a calibrated model: P(class 1) is what it says
    truth = (rng.random(400) < confidence).astype(int)
    estimator = fit_estimator("cbpe", y_true=truth, probabilities=np.column_stack([1 - confidence, confidence]),
                              classes=[0, 1])
    with db.session() as session:
        for i in range(100):
            p = 0.55 if i % 2 else 0.45  # the champion hesitates on this traffic
            session.add(PredictionRow(project="demo", endpoint="ep", request_id=f"r{i}", version=1,
                                      at=dt.datetime.now(dt.timezone.utc), status=200, latency_ms=1.0,
                                      features={"columns": ["a"], "data": [[float(i)]]}, prediction=[int(p > 0.5)],
                                      probabilities=[[1 - p, p]]))
    monitor = SimpleNamespace(estimator=lambda model, version: estimator)
    registry = SimpleNamespace(download_uri=lambda model, version: f"runs:/x/{version}")
    policies = PolicyService(db, settings, monitor, None, None, registry)
    answers = []
    policies.predict_with_probabilities = lambda uri, features, settings: (
        answers.append((uri, len(features))) or ([1] * len(features), [[0.03, 0.97]] * len(features)))
    result = policies.compare("demo", "ep", "demo.iris", 1, 2, 0.05, on_estimate=True)
    race = result["estimated"]
    assert answers == [("runs:/x/2", 100)]
    assert race["champion_estimate"]["value"] < 0.6 < 0.9 < race["challenger_estimate"]["value"]
    assert result["winner"] == "challenger"  # no labels: the estimate decides
    assert policies.compare("demo", "ep", "demo.iris", 1, 2, 0.05)["winner"] == "champion"  # not asked: by hand
    policies.predict_with_probabilities = lambda uri, features, settings: ([0] * len(features),
                                                                          [[0.5, 0.5]] * len(features))
    assert policies.compare("demo", "ep", "demo.iris", 1, 2, 0.05, on_estimate=True)["winner"] == "champion"
    db.engine.dispose()
