"""Policies, alerts, requeues and challengers: the endpoint's monitoring closes the loop.

Every ``monitor_interval_s`` the platform evaluates each endpoint's policy over its window
(:meth:`PolicyService.evaluate_once`): a crossed threshold opens an alert (one open alert per
endpoint and kind; it closes when the condition clears or the version changes). With action
``requeue`` the alert resubmits the training job of the serving version (same notebook
snapshot and parameters, the policy's overrides on top) with trigger ``policy`` — at most once
per endpoint per cooldown, however many alerts fire. A version a pipeline registered is
retrained by its pipeline instead: the run that made it runs again (same files and parameters,
the overrides on top, no cache), and the challenger is the version its gate let through. A user requeue (button, CLI, API) does
the same with trigger ``user`` and a ``manual`` alert that records it.

When the requeued job succeeds, the version it registered is the challenger: it is scored
against the champion on the endpoint's recent labelled requests; with ``auto_promote`` and a
win by ``promote_margin`` it becomes ``champion`` and the endpoint switches to it inside its
live replicas. Lineage: alert → job (``job_id``) → version (``produced_version``) →
evaluation; a version's registry lineage names its job, whose alert ``GET .../alerts?job_id=``
finds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import tempfile
import threading
import uuid
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import or_, select

from loopml import sandbox
from loopml.db import Database, utcnow
from loopml.errors import Conflict, NotFound
from loopml.executor.models import Job, JobRequeue, JobStatus, Trigger
from loopml.executor.pipelines.models import PipelineRun
from loopml.executor.pipelines.run_state import RunStatus, StepStatus
from loopml.monitor.models import Alert, Policy, PolicySpec, Requeued, RequeueRequest
from loopml.monitor.orm import AlertRow, PolicyRow, PredictionRow
from loopml.monitor.stats import quality
from loopml.registry.names import short_name
from loopml.registry.tags import CHAMPION
from loopml.serving.models import EndpointCreate
from loopml.serving.protocols import ModelInput

if TYPE_CHECKING:
    from loopml.executor.pipelines.service import PipelineService
    from loopml.executor.service import JobService
    from loopml.monitor.service import MonitorService
    from loopml.registry.service import RegistryService
    from loopml.serving.service import EndpointService
    from loopml.settings import Settings

log = logging.getLogger(__name__)

POLICY_USER = "policy"
EVALUATION_ROWS = 2000  # labelled requests a challenger is scored on, newest first
EVALUATION_TIMEOUT_S = 300.0


def to_alert(row: AlertRow) -> Alert:
    return Alert(**{name: getattr(row, name) for name in Alert.model_fields})


class PolicyService:
    def __init__(self, db: Database, settings: Settings, monitor: MonitorService, jobs: JobService,
                 endpoints: EndpointService, registry: RegistryService,
                 pipelines: PipelineService | None = None) -> None:
        self.db, self.settings = db, settings
        self.monitor, self.jobs, self.endpoints, self.registry = monitor, jobs, endpoints, registry
        self.pipelines = pipelines
        self._lock = threading.Lock()  # one evaluation or requeue at a time: the cooldown holds
        self.predict = predict_sandboxed
        self.predict_with_probabilities = predict_sandboxed_with_probabilities

    # -- policies and alerts ------------------------------------------------------------

    def set_policy(self, user: str, project: str, name: str, spec: PolicySpec) -> Policy:
        self.endpoints.get(project, name)  # NotFound for an unknown endpoint
        with self.db.session() as session:
            row = self._policy_row(session, project, name)
            if row is None:
                row = PolicyRow(project=project, endpoint=name)
                session.add(row)
            row.spec, row.updated_by, row.updated_at = spec.model_dump(mode="json"), user, utcnow()
            session.flush()
            return self._policy(row)

    def get_policy(self, project: str, name: str) -> Policy:
        with self.db.session() as session:
            row = self._policy_row(session, project, name)
            if row is None:
                raise NotFound(f"endpoint {name!r} has no policy: set one with PUT .../endpoints/{name}/policy",
                               endpoint=name)
            return self._policy(row)

    def alerts(self, project: str, endpoint: str | None = None, status: str | None = None,
               job_id: str | None = None) -> list[Alert]:
        query = select(AlertRow).where(AlertRow.project == project)
        for column, value in ((AlertRow.endpoint, endpoint), (AlertRow.status, status), (AlertRow.job_id, job_id)):
            if value is not None:
                query = query.where(column == value)
        with self.db.session() as session:
            return [to_alert(r) for r in session.scalars(query.order_by(AlertRow.opened_at.desc()).limit(500))]

    @staticmethod
    def _policy_row(session, project: str, name: str) -> PolicyRow | None:
        return session.scalar(select(PolicyRow).where(PolicyRow.project == project, PolicyRow.endpoint == name))

    @staticmethod
    def _policy(row: PolicyRow) -> Policy:
        return Policy(project=row.project, endpoint=row.endpoint, spec=PolicySpec(**row.spec),
                      last_requeue_at=row.last_requeue_at, updated_by=row.updated_by, updated_at=row.updated_at)

    # -- requeue ------------------------------------------------------------------------

    def requeue(self, user: str, project: str, name: str, request: RequeueRequest) -> Requeued:
        """Resubmit the training job of the version ``name`` serves (trigger ``user``)."""
        endpoint = self.endpoints.get(project, name)
        with self._lock, self.db.session() as session:
            if request.alert_id is not None:
                row = session.get(AlertRow, request.alert_id)
                if row is None or (row.project, row.endpoint) != (project, name):
                    raise NotFound(f"alert {request.alert_id!r} does not exist on endpoint {name!r}", alert=request.alert_id)
            else:
                row = AlertRow(id=uuid.uuid4().hex, project=project, endpoint=name, kind="manual",
                               version=endpoint.version, window="-", value=0.0, detail={"user": user},
                               status="closed", action="requeue", closed_at=utcnow(), opened_at=utcnow())
                session.add(row)
            started = self._requeue_training(user, endpoint, request.parameters, Trigger.USER)
            _record(row, started)
            session.flush()
            if isinstance(started, Job):
                return Requeued(job=started, alert=to_alert(row))
            return Requeued(pipeline_run=started, alert=to_alert(row))

    def _requeue_training(self, user: str, endpoint, parameters: dict[str, Any], trigger: Trigger) -> Job | PipelineRun:
        """Train the serving version again: re-run the pipeline that registered it, else its job."""
        pipeline_run_id = (self.registry.training_pipeline_run_id(endpoint.model, endpoint.version)
                           if self.pipelines is not None else None)
        if pipeline_run_id:
            return self.pipelines.rerun_blocking(user, endpoint.project, pipeline_run_id, parameters, trigger=trigger)
        job_id = self.registry.training_job_id(endpoint.model, endpoint.version)
        if not job_id:
            raise Conflict(f"{endpoint.model} v{endpoint.version} was not registered by a loopml job or pipeline: "
                           "there is no training to requeue; submit the training notebook instead",
                           endpoint=endpoint.name)
        return self.jobs.requeue(user, endpoint.project, job_id, JobRequeue(parameters=parameters), trigger=trigger)

    # -- evaluation ---------------------------------------------------------------------

    async def run(self) -> None:
        """Evaluate every policy every ``settings.monitor_interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.settings.monitor_interval_s)
            await asyncio.to_thread(self.evaluate_once)

    def evaluate_once(self) -> None:
        """One pass over all policies; an endpoint that fails is logged and skipped."""
        with self.db.session() as session:
            policies = {(r.project, r.endpoint) for r in session.scalars(select(PolicyRow))}
            waiting = {(r.project, r.endpoint) for r in session.scalars(select(AlertRow).where(
                _requeued(), AlertRow.evaluation.is_(None)))}
        for project, name in sorted(policies | waiting):
            try:
                with self._lock:
                    if (project, name) in policies:
                        self._evaluate(project, name)
                    self._follow_up(project, name)
            except NotFound as gone:  # the endpoint was deleted; its policy and alerts stay on record
                log.info("policy of %s/%s not evaluated: %s", project, name, gone.message)
            except Exception:
                log.exception("policy evaluation of %s/%s failed", project, name)

    def _evaluate(self, project: str, name: str) -> None:
        spec = self.get_policy(project, name).spec
        report = self.monitor.report(project, name, spec.window, estimate=_needs_estimate(spec))
        now = utcnow()
        with self.db.session() as session:
            policy = self._policy_row(session, project, name)
            spec = PolicySpec(**policy.spec)
            open_alerts = {a.kind: a for a in session.scalars(select(AlertRow).where(
                AlertRow.project == project, AlertRow.endpoint == name, AlertRow.status == "open"))}
            for kind, alert in list(open_alerts.items()):
                if alert.version != report.version:
                    alert.status, alert.closed_at = "closed", now
                    alert.detail = {**alert.detail, "closed": "the endpoint serves another version"}
                    del open_alerts[kind]
            if report.requests < spec.min_samples:
                return
            fired = _fired(spec, report)
            for kind, alert in open_alerts.items():
                if kind not in fired:
                    alert.status, alert.closed_at = "closed", now
            for kind, (value, threshold, detail) in fired.items():
                if kind in open_alerts:
                    open_alerts[kind].value, open_alerts[kind].detail = value, detail
                    continue
                alert = AlertRow(id=uuid.uuid4().hex, project=project, endpoint=name, kind=kind,
                                 version=report.version, window=spec.window, value=value, threshold=threshold,
                                 detail=detail, status="open", action="alert", opened_at=now)
                session.add(alert)
                if spec.action == "requeue":
                    self._policy_requeue(policy, spec, alert, now)
                log.info("alert %s on %s/%s: %s=%s (%s)", alert.id, project, name, kind, value, alert.action)

    def _policy_requeue(self, policy: PolicyRow, spec: PolicySpec, alert: AlertRow, now: dt.datetime) -> None:
        if policy.last_requeue_at is not None and (now - policy.last_requeue_at).total_seconds() < spec.cooldown_s:
            alert.action = "cooldown"
            return
        try:
            started = self._requeue_training(POLICY_USER, self.endpoints.get(policy.project, policy.endpoint),
                                             spec.parameters, Trigger.POLICY)
        except (Conflict, NotFound) as exc:  # NotFound: the pipeline run that made the version is gone
            alert.action, alert.detail = "no_training_job", {**alert.detail, "error": exc.message}
            return
        _record(alert, started)
        policy.last_requeue_at = now

    def _follow_up(self, project: str, name: str) -> None:
        """Find the challengers of requeued jobs that finished, score them, promote winners."""
        with self.db.session() as session:
            waiting = session.scalars(select(AlertRow).where(
                AlertRow.project == project, AlertRow.endpoint == name, _requeued(),
                AlertRow.evaluation.is_(None))).all()
            for alert in waiting:
                if alert.pipeline_run_id is not None:
                    self._follow_pipeline(alert)
                    continue
                job = self.jobs.get(project, alert.job_id)
                if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
                    alert.evaluation = {"result": f"the training job {job.status.value.lower()}: no challenger"}
                elif job.status == JobStatus.SUCCEEDED:
                    endpoint = self.endpoints.get(alert.project, alert.endpoint)
                    short = short_name(alert.project, endpoint.model)
                    produced = [m.version for m in job.models if m.name in (endpoint.model, short)]
                    alert.evaluation = self._challenge(alert, endpoint, produced,
                                                       f"the training job registered no version of {endpoint.model}")

    def _follow_pipeline(self, alert: AlertRow) -> None:
        if self.pipelines is None:
            return
        run = self.pipelines.get(alert.project, alert.pipeline_run_id)
        if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            failed = "; ".join(f"{s.id}: {s.message}" for s in run.steps if s.status == StepStatus.FAILED)
            alert.evaluation = {"result": f"the training pipeline run {run.status.value.lower()}"
                                          f"{' (' + failed + ')' if failed else ''}: no challenger"}
        elif run.status == RunStatus.SUCCEEDED:
            endpoint = self.endpoints.get(alert.project, alert.endpoint)
            produced, why = self.pipelines.registered_versions(alert.project, run.id,
                                                               short_name(alert.project, endpoint.model))
            alert.evaluation = self._challenge(alert, endpoint, produced, why or "")

    def _challenge(self, alert: AlertRow, endpoint, produced: list[int], none_because: str) -> dict[str, Any]:
        if not produced:
            return {"result": none_because}
        alert.produced_version = challenger = max(produced)
        policy = self._spec(alert.project, alert.endpoint)
        evaluation = self.compare(alert.project, alert.endpoint, endpoint.model, endpoint.version, challenger,
                                  policy.promote_margin, on_estimate=policy.promote_on_estimate)
        if evaluation["winner"] == "challenger" and policy.auto_promote:
            short = short_name(alert.project, endpoint.model)
            self.registry.set_alias(alert.project, short, CHAMPION, challenger, user=POLICY_USER)
            self.endpoints.deploy(POLICY_USER, alert.project, EndpointCreate(name=alert.endpoint,
                                                                            model=f"{short}/{challenger}"))
            evaluation["promoted"] = True
        return evaluation

    def _spec(self, project: str, name: str) -> PolicySpec:
        """The endpoint's policy, or the defaults (no auto-promotion) for one without."""
        with self.db.session() as session:
            row = self._policy_row(session, project, name)
            return PolicySpec(**row.spec) if row is not None else PolicySpec()

    def compare(self, project: str, name: str, model: str, champion: int, challenger: int,
                margin: float, *, on_estimate: bool = False) -> dict[str, Any]:
        """Score ``challenger`` and ``champion`` on the endpoint's newest labelled requests
        served by the champion; ``winner`` is ``challenger`` only when it wins by ``margin``.
        With ``on_estimate`` the challenger must also win on estimated performance over the
        newest captured requests, labelled or not (:meth:`estimate_race`); without labels that
        decides alone. The challenger predicts in a sandboxed process of its own
        (:func:`predict_sandboxed`), never here."""
        labelled = self._compare_on_labels(project, name, model, champion, challenger, margin)
        if not on_estimate:
            return labelled
        race = self.estimate_race(project, name, model, champion, challenger, margin)
        has_labels = "n" in labelled
        won = race.get("winner") == "challenger" and (not has_labels or labelled["winner"] == "challenger")
        return {**labelled, "winner": "challenger" if won else "champion", "estimated": race,
                "result": labelled.get("result") if has_labels or won else race.get("result", labelled.get("result"))}

    def estimate_race(self, project: str, name: str, model: str, champion: int, challenger: int,
                      margin: float) -> dict[str, Any]:
        """Both versions' estimated performance on the newest captured requests the champion
        answered (:data:`EVALUATION_ROWS`): the champion's from what it captured, the
        challenger's from its own answers (sandboxed) and its own estimator."""
        from loopml.monitor.estimate import estimate

        estimators = {v: self.monitor.estimator(model, v) for v in (champion, challenger)}
        if any(e is None for e in estimators.values()) or estimators[champion].kind != estimators[challenger].kind:
            return {"winner": "champion", "result": "no estimate race: both versions need a performance estimator "
                                                    "of one kind (log them with loopml.log_model)"}
        with self.db.session() as session:
            rows = session.scalars(select(PredictionRow).where(
                PredictionRow.project == project, PredictionRow.endpoint == name, PredictionRow.version == champion,
                PredictionRow.status == 200, PredictionRow.features.is_not(None))
                .order_by(PredictionRow.id.desc()).limit(EVALUATION_ROWS)).all()
            frames, served, probabilities = [], [], []
            for row in rows:
                count = len(row.features["data"])
                if not isinstance(row.prediction, list) or len(row.prediction) != count:
                    continue
                frames.append(pd.DataFrame(row.features["data"], columns=row.features["columns"]))
                served += row.prediction
                probabilities += row.probabilities if isinstance(row.probabilities, list) else [None] * count
        if not frames:
            return {"winner": "champion", "result": "no captured requests to estimate on"}
        features = pd.concat(frames, ignore_index=True)
        kind = estimators[champion].kind
        if kind == "cbpe":
            known = [p for p in probabilities if p is not None]
            old = estimate(estimators[champion], probabilities=known) if known else None
            _, new_probabilities = self.predict_with_probabilities(
                self.registry.download_uri(model, challenger), features, self.settings)
            new = estimate(estimators[challenger], probabilities=new_probabilities) if new_probabilities else None
        else:
            old = estimate(estimators[champion], features=features, predictions=served)
            predicted, _ = self.predict_with_probabilities(self.registry.download_uri(model, challenger), features,
                                                           self.settings)
            new = estimate(estimators[challenger], features=features, predictions=predicted)
        if old is None or new is None:
            return {"winner": "champion", "result": "no estimate race: the captured requests carry no class "
                                                    "probabilities", "champion_estimate": old,
                    "challenger_estimate": new}
        if kind == "cbpe":
            won = new["value"] > old["value"] + margin
        else:
            won = new["value"] < old["value"] * (1 - margin)
        return {"winner": "challenger" if won else "champion", "metric": old["metric"], "n": old["n"],
                "champion_estimate": old, "challenger_estimate": new, "margin": margin}

    def _compare_on_labels(self, project: str, name: str, model: str, champion: int, challenger: int,
                           margin: float) -> dict[str, Any]:
        with self.db.session() as session:
            rows = session.scalars(select(PredictionRow).where(
                PredictionRow.project == project, PredictionRow.endpoint == name, PredictionRow.version == champion,
                PredictionRow.label.is_not(None), PredictionRow.features.is_not(None))
                .order_by(PredictionRow.id.desc()).limit(EVALUATION_ROWS)).all()
            frames, labels, served = [], [], []
            for row in rows:
                frames.append(pd.DataFrame(row.features["data"], columns=row.features["columns"]))
                count = len(row.features["data"])
                labels += row.label if isinstance(row.label, list) else [row.label] * count
                served += row.prediction or [None] * count
        if not frames:
            return {"winner": "champion", "result": "no labelled requests to compare on: promote by hand",
                    "champion": champion, "challenger": challenger}
        features = pd.concat(frames, ignore_index=True)
        predicted = self.predict(self.registry.download_uri(model, challenger), features, self.settings)
        old = quality(labels, served)
        new = quality(labels, predicted, old.get("task"))
        if old.get("task") == "classification":
            won = (new["accuracy"] or 0) > (old["accuracy"] or 0) + margin
        else:
            won = (new["rmse"] is not None and old["rmse"] is not None
                   and new["rmse"] < old["rmse"] * (1 - margin))
        return {"winner": "challenger" if won else "champion", "champion": champion, "challenger": challenger,
                "n": len(labels), "champion_quality": old, "challenger_quality": new, "margin": margin,
                "promoted": False}


def _requeued():
    """Alerts that started a training (a job or a pipeline run)."""
    return or_(AlertRow.job_id.is_not(None), AlertRow.pipeline_run_id.is_not(None))


def _record(alert: AlertRow, started: Job | PipelineRun) -> None:
    alert.action = "requeue"
    if isinstance(started, Job):
        alert.job_id = started.id
    else:
        alert.pipeline_run_id = started.id


def predict_sandboxed(uri: str, features: pd.DataFrame, settings) -> list[Any]:
    """The predictions of the model at ``uri`` for ``features`` (see :func:`predict_sandboxed_with_probabilities`)."""
    return predict_sandboxed_with_probabilities(uri, features, settings, probabilities=False)[0]


def predict_sandboxed_with_probabilities(uri: str, features: pd.DataFrame, settings, *,
                                         probabilities: bool = True) -> tuple[list[Any], list[list[float]] | None]:
    """The predictions for ``features`` of the model at artifact URI ``uri`` (a version's
    :meth:`~loopml.registry.service.RegistryService.download_uri`, or a local folder), from a
    model host started for this evaluation alone.

    Loading a model can unpickle whatever its author logged, so it happens neither in the
    platform process nor in a reused worker that loaded other projects' models: the platform
    downloads the version (data only) and a fresh sandboxed process
    (:class:`~loopml.serving.model_host.ModelHost`) loads it and answers JSON, then ends.
    Pass the download URI, not ``models:/<name>/<version>``: MLflow would resolve that against
    the process's default registry (a local ./mlflow.db), not the platform's.
    """
    import mlflow.artifacts

    from loopml.serving.model_host import ModelHost

    with tempfile.TemporaryDirectory(prefix="loopml-challenger-") as folder:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder,
                                                    tracking_uri=settings.tracking_uri)
        with ModelHost(local, isolation=settings.job_isolation,
                       hide=sandbox.hidden_paths(settings.home), timeout_s=EVALUATION_TIMEOUT_S) as host:
            parsed = ModelInput(features, tuple(str(c) for c in features.columns))
            if probabilities:
                return host.predict_with_probabilities(parsed)
            return host.predict(parsed), None


def _fired(spec: PolicySpec, report) -> dict[str, tuple[float, float | None, dict[str, Any]]]:
    """The conditions ``report`` meets: ``{kind: (value, threshold, detail)}``."""
    fired: dict[str, tuple[float, float | None, dict[str, Any]]] = {}
    estimated = report.estimated
    if spec.drift and report.drifted_features and (not spec.drift_needs_estimate or _estimate_dropped(spec, estimated)):
        share = len(report.drifted_features) / max(len(report.drift), 1)
        detail: dict[str, Any] = {"features": report.drifted_features}
        if estimated is not None:
            detail["estimated"] = {"metric": estimated.metric, "value": estimated.value,
                                   "reference": estimated.reference.get(estimated.metric)}
        fired["drift"] = (share, None, detail)
    if estimated is not None:
        band = {"low": estimated.low, "high": estimated.high, "n": estimated.n}
        if (estimated.metric == "accuracy" and spec.estimated_accuracy_below is not None
                and estimated.value < spec.estimated_accuracy_below):
            fired["est_accuracy"] = (estimated.value, spec.estimated_accuracy_below, band)
        if estimated.metric == "mae" and spec.estimated_mae_above is not None and estimated.value > spec.estimated_mae_above:
            fired["est_mae"] = (estimated.value, spec.estimated_mae_above, band)
    quality = report.data_quality
    if spec.violations_above is not None and quality is not None and quality.share is not None \
            and quality.share > spec.violations_above:
        fired["violations"] = (quality.share, spec.violations_above,
                               {"affected": quality.affected, "features": sorted({v["feature"] for v in
                                                                                  quality.violations})})
    accuracy = (report.quality or {}).get("accuracy")
    if spec.accuracy_below is not None and accuracy is not None and accuracy < spec.accuracy_below:
        fired["accuracy"] = (accuracy, spec.accuracy_below, {"n": report.quality.get("n")})
    if spec.error_rate_above is not None and report.error_rate is not None and report.error_rate > spec.error_rate_above:
        fired["error_rate"] = (report.error_rate, spec.error_rate_above, {"errors": report.errors})
    return fired


def _needs_estimate(spec: PolicySpec) -> bool:
    """Whether evaluating ``spec`` reads estimated performance (else the report skips it: it reads
    every captured row of the window once more)."""
    return (spec.estimated_accuracy_below is not None or spec.estimated_mae_above is not None
            or (spec.drift and spec.drift_needs_estimate))


def _estimate_dropped(spec: PolicySpec, estimated) -> bool:
    """Whether estimated performance fell from the version's held-out figure by more than ``estimate_drop``
    (no estimate: the drift alone decides, as without the option)."""
    if estimated is None:
        return True
    reference = estimated.reference.get(estimated.metric)
    if reference is None:
        return True
    if estimated.metric == "accuracy":
        return estimated.value < reference - spec.estimate_drop
    return estimated.value > reference * (1 + spec.estimate_drop)
