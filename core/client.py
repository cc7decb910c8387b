"""Sync Python client of the platform's REST API (``<url>/api/v1``), for the CLI, notebooks and widgets.

Every method either returns the answer parsed into the pydantic model the server documents
(exported by ``loopml.executor``, ``loopml.projects``, ``loopml.loop_state``, ``loopml.registry``,
``loopml.serving``, ``loopml.monitor``) or raises a
:class:`loopml.errors.LoopMLError`: the class matching the HTTP status, built from the body's
``message`` and ``reason``. The token travels only in the ``Authorization`` header: it is
never logged, never part of an error message and never in ``repr(client)``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from loopml import _client_wire as wire
from loopml.errors import InvalidInput, LoopMLError, Unauthorized, Unavailable
from loopml.executor import Job, JobStatus, PipelineCheck, PipelineRun, Resources, Schedule
from loopml.loop_state import LoopState
from loopml.monitor import (
    MAX_FEEDBACK,
    Alert,
    FeedbackItem,
    FeedbackResult,
    MonitorReport,
    Policy,
    PolicySpec,
    Requeued,
)
from loopml.registry import CHAMPION, ContractView, Model, ModelSummary, check_alias, check_version
from loopml.serving import Autoscale, Deployed, Endpoint, EndpointResources
from loopml.settings import read_client_config

if TYPE_CHECKING:
    from loopml.projects import Project, Workspace

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)

API_PREFIX = "/api/v1"
FIRST_PAGE = 100  # what a listing route answers without ``limit`` (loopml.paging.DEFAULT_LIMIT)
PAGE = 1000  # items asked per further request (the most a listing route gives)

# A platform restart (it reconciles jobs from Ray on start) must not end a wait(): outages
# shorter than this are ridden out, longer ones raise the Unavailable error.
WAIT_OUTAGE_S = 30.0

# A deploy answers once Ray Serve has a replica up (model loaded), ~15 s on a warm cluster;
# only that call waits this long, so a hung platform still fails fast everywhere else.
DEPLOY_TIMEOUT_S = 120.0


class Client:
    """Talks to one platform as one user.

    ``url`` is the platform's base URL (``http://127.0.0.1:8899`` headless, or
    ``http://host/services/loopml`` behind the hub); ``token`` a platform or JupyterHub token.
    Either left out is taken from :func:`loopml.settings.read_client_config` (``LOOPML_URL`` /
    ``LOOPML_TOKEN`` over ``$LOOPML_HOME/client.json``); when none is configured the
    constructor raises :class:`~loopml.errors.Unauthorized`. ``transport`` replaces httpx's
    network transport (tests pass an ``httpx.MockTransport``). Use as a context manager or
    call :meth:`close` to release the connection pool.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if url is None or token is None:
            try:
                config = read_client_config()
            except ValueError:
                # a hand-edited client.json; the parse error is left out as it may quote the token
                raise InvalidInput(
                    "the client config (client.json in $LOOPML_HOME or ~/.loopml) is not valid: "
                    "run `loopml up` again, or set LOOPML_URL and LOOPML_TOKEN"
                ) from None
            if config is None:
                raise Unauthorized(
                    "no loopml platform configured: run `loopml up`, or set LOOPML_URL and LOOPML_TOKEN"
                )
            url = url or config.url
            token = token or config.token
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the client can no longer send requests)."""
        return self._http.is_closed

    # -- platform ----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"status": "ok"}`` when the service answers (needs no valid token)."""
        return self._json(self._request("GET", "/health"))

    def status(self) -> dict[str, Any]:
        """``GET /status``: ``{"platform": {...}, "ray": {...}, "mlflow": {...}, "db": {...}}``, each with ``ok``."""
        return self._json(self._request("GET", "/status"))

    # -- projects ------------------------------------------------------------------------
    # loopml.projects also holds the project routes and ORM rows, so importing it pulls in
    # FastAPI and SQLAlchemy (~0.5 s); it is imported only by the methods that return Project,
    # and project_names() serves the CLI's project defaulting without it.

    def project_names(self) -> list[str]:
        """Names of the projects the caller may use (all of them for admins), sorted."""
        return sorted(item["name"] for item in self._pages("/projects", self._json_list))

    def projects(self) -> list[Project]:
        """The projects the caller may use (all of them for admins)."""
        from loopml.projects import Project

        return self._every(Project, "/projects")

    def project(self, name: str) -> Project:
        """One project; :class:`NotFound` / :class:`Forbidden` if unknown / not a member."""
        from loopml.projects import Project

        return self._parse(Project, self._request("GET", wire.api_path("projects", name)))

    def create_project(
        self, name: str, members: Iterable[str] = (), max_concurrent_jobs: int | None = None
    ) -> Project:
        """Create a project (admins only); :class:`Conflict` if it exists."""
        from loopml.projects import Project

        body = {"name": name, "members": list(members), "max_concurrent_jobs": max_concurrent_jobs}
        return self._parse(Project, self._request("POST", "/projects", json=body))

    def update_project(
        self,
        name: str,
        members: Iterable[str] | None = None,
        max_concurrent_jobs: int | None = None,
        clear_quota: bool = False,
    ) -> Project:
        """Replace the member list and/or change the quota (admins only); ``None`` keeps a field."""
        from loopml.projects import Project

        body: dict[str, Any] = {}
        if members is not None:
            body["members"] = list(members)
        if max_concurrent_jobs is not None:
            body["max_concurrent_jobs"] = max_concurrent_jobs
        if clear_quota:
            body["clear_quota"] = True
        return self._parse(Project, self._request("PATCH", wire.api_path("projects", name), json=body))

    def loop(self, project: str) -> LoopState:
        """Where ``project`` stands in the loop: each stage, whether it was reached, by what and when."""
        return self._parse(LoopState, self._request("GET", wire.api_path("projects", project, "loop")))

    def workspace_opened(self, project: str) -> Workspace:
        """Record that the caller's workspace of ``project`` started (the workspace server's extension calls it)."""
        from loopml.projects import Workspace

        return self._parse(Workspace, self._request("POST", wire.api_path("projects", project, "workspaces")))

    # -- jobs ----------------------------------------------------------------------------

    def submit(
        self,
        project: str,
        notebook: wire.Notebook,
        *,
        parameters: Mapping[str, Any] | None = None,
        resources: Resources | Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        max_retries: int = 0,
        name: str | None = None,
        kernel_name: str | None = None,
        files: Mapping[str, bytes] | None = None,
        output_files: Iterable[str] = (),
    ) -> Job:
        """Submit ``notebook`` (a path to an .ipynb file, or its nbformat JSON) as a job.

        ``name`` defaults to the file name. Parameter values may be strings: the server
        converts them to the type declared in the notebook's parameters cell. ``files``
        (relative path → content) are written into the job's working dir before it runs;
        ``output_files`` are the paths it writes there, kept in its MLflow run under
        ``outputs/``. Returns the QUEUED job; :class:`InvalidInput` for an unreadable notebook
        or a rejected value.
        """
        body = wire.job_submit(notebook, parameters, resources, timeout_s, max_retries, name, kernel_name)
        if files:
            body["files"] = wire.files_json(files)
        if output_files:
            body["output_files"] = list(output_files)
        return self._parse(Job, self._request("POST", wire.api_path("projects", project, "jobs"), json=body))

    def jobs(self, project: str, status: JobStatus | str | None = None, limit: int = 50) -> list[Job]:
        """The project's jobs, newest first, optionally only those in ``status``."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = wire.job_status(status).value
        return self._parse_list(Job, self._request("GET", wire.api_path("projects", project, "jobs"), params=params))

    def job(self, project: str, job_id: str) -> Job:
        return self._parse(Job, self._request("GET", wire.api_path("projects", project, "jobs", job_id)))

    def logs(self, project: str, job_id: str) -> str:
        """The job's log so far (plain text)."""
        return self._request("GET", wire.api_path("projects", project, "jobs", job_id, "logs")).text

    def job_output_url(self, project: str, job_id: str) -> str:
        """The REST URL of the job's executed notebook (what :meth:`output` reads); fetching
        it needs this client's token, so it is a link for tools that send one."""
        return self.url + API_PREFIX + wire.api_path("projects", project, "jobs", job_id, "output")

    def output(self, project: str, job_id: str) -> dict[str, Any]:
        """The executed notebook as an ``nbformat.NotebookNode`` (a dict; multi-line strings
        joined), partial while running; NotFound before the first cell has run."""
        import nbformat

        answer = self._request("GET", wire.api_path("projects", project, "jobs", job_id, "output"))
        return nbformat.reads(answer.text, as_version=4)

    def cancel(self, project: str, job_id: str) -> Job:
        """Cancel the job; the answer is the job after up to 5 s of waiting for CANCELLED."""
        return self._parse(Job, self._request("POST", wire.api_path("projects", project, "jobs", job_id, "cancel")))

    def requeue(
        self,
        project: str,
        job_id: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        resources: Resources | Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        max_retries: int | None = None,
    ) -> Job:
        """Run the job again as a new job; ``parameters`` are merged over the original ones."""
        body: dict[str, Any] = {"parameters": dict(parameters or {})}
        if resources is not None:
            body["resources"] = wire.resources_json(resources)
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        if max_retries is not None:
            body["max_retries"] = max_retries
        path = wire.api_path("projects", project, "jobs", job_id, "requeue")
        return self._parse(Job, self._request("POST", path, json=body))

    def wait(
        self,
        project: str,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 0.25,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll the job every ``poll_s`` seconds until its status is terminal, and return it.

        ``on_update`` gets the job after every poll (the last call sees the terminal job).
        Raises :class:`LoopMLError` with reason ``timeout`` when ``timeout`` seconds pass first
        (the job keeps running), and :class:`Unavailable` when the platform stays unreachable
        for longer than :data:`WAIT_OUTAGE_S`.
        """
        return self._poll(lambda: self.job(project, job_id), lambda job: job.status.terminal, f"job {job_id}",
                          timeout, poll_s, on_update, job_id=job_id)

    # -- pipelines -----------------------------------------------------------------------

    def validate_pipeline(self, project: str, path: str | os.PathLike, *,
                          files: Mapping[str, bytes] | None = None) -> PipelineCheck:
        """Check the pipeline file at ``path`` (native ``*.pipeline.yaml`` or Elyra ``.pipeline``) with
        the files its steps name (read from its folder, or ``files``), running nothing: the
        steps as they would run, or :class:`InvalidInput` naming each bad step and field."""
        body = wire.pipeline_submit(path, files)
        return self._parse(PipelineCheck, self._request("POST", wire.api_path("projects", project, "pipelines",
                                                                               "validate"), json=body))

    def run_pipeline(self, project: str, path: str | os.PathLike, *, parameters: Mapping[str, Any] | None = None,
                     no_cache: bool = False, files: Mapping[str, bytes] | None = None) -> PipelineRun:
        """Run the pipeline file at ``path`` with the files its steps name (from its folder, or
        ``files``); ``parameters`` override the pipeline's (text is read as the default's type).
        Returns the run once its first steps were submitted."""
        body = wire.pipeline_submit(path, files)
        body.update(parameters=dict(parameters or {}), no_cache=no_cache)
        return self._parse(PipelineRun, self._request("POST", wire.api_path("projects", project, "pipelines"),
                                                      json=body))

    def pipeline_runs(self, project: str, limit: int = 50) -> list[PipelineRun]:
        """The project's pipeline runs, newest first."""
        return self._parse_list(PipelineRun, self._request("GET", wire.api_path("projects", project, "pipelines"),
                                                           params={"limit": limit}))

    def pipeline_run(self, project: str, run_id: str) -> PipelineRun:
        return self._parse(PipelineRun, self._request("GET", wire.api_path("projects", project, "pipelines", run_id)))

    def cancel_pipeline_run(self, project: str, run_id: str) -> PipelineRun:
        """Cancel the run and its running jobs; :class:`Conflict` once it ended."""
        path = wire.api_path("projects", project, "pipelines", run_id, "cancel")
        return self._parse(PipelineRun, self._request("POST", path))

    def retry_pipeline_run(self, project: str, run_id: str) -> PipelineRun:
        """Re-run a failed or cancelled run from its failed steps, keeping what succeeded."""
        path = wire.api_path("projects", project, "pipelines", run_id, "retry")
        return self._parse(PipelineRun, self._request("POST", path))

    def wait_pipeline_run(self, project: str, run_id: str, *, timeout: float | None = None, poll_s: float = 0.5,
                          on_update: Callable[[PipelineRun], None] | None = None) -> PipelineRun:
        """Poll the run until it ended, as :meth:`wait` does for a job (same outage riding, same
        ``timeout`` error: the run keeps running)."""
        return self._poll(lambda: self.pipeline_run(project, run_id), lambda run: run.status.terminal,
                          f"pipeline run {run_id}", timeout, poll_s, on_update, run_id=run_id)

    # -- schedules -----------------------------------------------------------------------

    def create_schedule(
        self,
        project: str,
        cron: str,
        notebook: wire.Notebook,
        *,
        name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        resources: Resources | Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        max_retries: int = 0,
    ) -> Schedule:
        """Submit ``notebook`` at every tick of ``cron``; ``name`` names the schedule and its jobs."""
        template = wire.job_submit(notebook, parameters, resources, timeout_s, max_retries, name, None)
        body = {"name": name, "cron": cron, "template": template}
        return self._parse(Schedule, self._request("POST", wire.api_path("projects", project, "schedules"), json=body))

    def create_pipeline_schedule(self, project: str, cron: str, path: str | os.PathLike, *, name: str | None = None,
                                 parameters: Mapping[str, Any] | None = None, no_cache: bool = False,
                                 files: Mapping[str, bytes] | None = None) -> Schedule:
        """Run the pipeline file at ``path`` (with the files its steps name) at every tick of ``cron``."""
        pipeline = wire.pipeline_submit(path, files)
        pipeline.update(parameters=dict(parameters or {}), no_cache=no_cache)
        body = {"name": name, "cron": cron, "pipeline": pipeline}
        return self._parse(Schedule, self._request("POST", wire.api_path("projects", project, "schedules"), json=body))

    def schedules(self, project: str) -> list[Schedule]:
        return self._every(Schedule, wire.api_path("projects", project, "schedules"))

    def delete_schedule(self, project: str, schedule_id: str) -> None:
        """Delete the schedule; jobs it already started are kept."""
        self._request("DELETE", wire.api_path("projects", project, "schedules", schedule_id))

    # -- models ------------------------------------------------------------------------
    # A model is named ``name`` or ``<project>.name``; names and aliases are checked here as
    # the server checks them, so a bad one is an InvalidInput with the reason before any request.

    def models(self, project: str) -> list[ModelSummary]:
        """The project's registered models, by name, with their aliases."""
        return self._every(ModelSummary, wire.api_path("projects", project, "models"))

    def model(self, project: str, name: str) -> Model:
        """One model: its versions newest first, with metrics, params, aliases and lineage,
        and its alias history; :class:`NotFound` if the project has no such model."""
        return self._parse(Model, self._request("GET", wire.model_path(project, name)))

    def set_alias(self, project: str, name: str, alias: str, version: int) -> Model:
        """Point ``alias`` at ``version`` (moving it if another version had it) and return the
        model after the move, which the server records in ``alias_history``. Setting
        ``champion`` also takes ``challenger`` off that version. :class:`NotFound` for an
        unknown model or version."""
        body = {"alias": check_alias(alias), "version": check_version(version)}
        return self._parse(Model, self._request("POST", wire.model_path(project, name, "aliases"), json=body))

    def delete_alias(self, project: str, name: str, alias: str) -> Model:
        """Remove ``alias`` from the model; :class:`NotFound` if no version has it."""
        path = wire.model_path(project, name, "aliases", check_alias(alias))
        return self._parse(Model, self._request("DELETE", path))

    def promote(self, project: str, name: str, version: int) -> Model:
        """Make ``version`` the champion: :meth:`set_alias` with ``champion``."""
        return self.set_alias(project, name, CHAMPION, version)

    def contract(self, project: str, name: str, version: int, *, changes: Iterable[str] = ()) -> ContractView:
        """The version's data contract (the logged one, the overrides applied); with ``changes``
        (``["alcohol.max=15", …]``) those overrides are applied first, and the endpoints serving the
        version check against the result at once. :class:`InvalidInput` naming the feature and rule."""
        path = wire.model_path(project, name, "versions", str(check_version(version)), "contract")
        sets = list(changes)
        if not sets:
            return self._parse(ContractView, self._request("GET", path))
        return self._parse(ContractView, self._request("PATCH", path, json={"set": sets},
                                                       timeout=max(DEPLOY_TIMEOUT_S, self.timeout)))

    # -- endpoints -----------------------------------------------------------------------

    def deploy(self, project: str, model: str, endpoint: str, *, public: bool = False, replicas: int | None = None,
               canary: float | None = None, autoscale: str | Autoscale | None = None,
               resources: EndpointResources | Mapping[str, Any] | None = None,
               on_violation: str | None = None, capture_probabilities: bool | None = None) -> Deployed:
        """Serve ``model`` (``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` = ``NAME@champion``) at
        ``endpoint``, creating it or switching its version in place; waits up to
        :data:`DEPLOY_TIMEOUT_S` for a replica. The answer's ``key`` is set only when the
        endpoint is created and not ``public``: it is never shown again. :class:`InvalidInput`
        for a bad name or reference (before any request), :class:`NotFound` for an unknown version.
        With ``canary`` (a percentage) the version answers that share of requests beside the live one.
        ``replicas`` (default 1 for a new endpoint) or ``autoscale`` (``"MIN:MAX"``) set its scaling;
        left out, an existing endpoint keeps its own. ``resources`` (``{"custom": {"node2": 0.1}}``)
        are the custom Ray resources each replica reserves, which place replicas on the nodes
        that offer them; left out, an existing endpoint keeps its own. ``on_violation`` (``pass``,
        ``refuse`` or ``header``) is what a request breaking the version's data contract gets;
        ``capture_probabilities`` (default on) whether a classifier's class probabilities are
        captured (estimated accuracy needs them).
        """
        body = wire.endpoint_create(model, endpoint, public, replicas, canary, autoscale, resources,
                                    on_violation=on_violation, capture_probabilities=capture_probabilities)
        path = wire.api_path("projects", project, "endpoints")
        return self._parse(Deployed, self._request("POST", path, json=body, timeout=max(DEPLOY_TIMEOUT_S, self.timeout)))

    def endpoints(self, project: str) -> list[Endpoint]:
        """The project's endpoints."""
        return self._every(Endpoint, wire.api_path("projects", project, "endpoints"))

    def endpoint(self, project: str, name: str) -> Endpoint:
        """One endpoint with its history; :class:`NotFound` if the project has none of that name."""
        return self._parse(Endpoint, self._request("GET", wire.endpoint_path(project, name)))

    def update_endpoint(self, project: str, name: str, *, replicas: int | None = None,
                        autoscale: str | Autoscale | None = None, canary_percent: float | None = None,
                        rotate_key: bool = False, on_violation: str | None = None,
                        capture_probabilities: bool | None = None) -> Deployed:
        """Change a running endpoint's scaling, canary share, key, ``on_violation`` mode or
        probability capture (in place, no restart). The answer's ``key`` is the new key when
        ``rotate_key``; the old one stops working."""
        body = wire.endpoint_patch(replicas, autoscale, canary_percent, rotate_key, on_violation=on_violation,
                                   capture_probabilities=capture_probabilities)
        return self._parse(Deployed, self._request("PATCH", wire.endpoint_path(project, name), json=body,
                                                   timeout=max(DEPLOY_TIMEOUT_S, self.timeout)))

    def promote_endpoint(self, project: str, name: str) -> Endpoint:
        """End the endpoint's canary: its version takes all traffic. :class:`Conflict` without a canary."""
        return self._parse(Endpoint, self._request("POST", wire.endpoint_path(project, name) + "/promote",
                                                   timeout=max(DEPLOY_TIMEOUT_S, self.timeout)))

    def rollback_endpoint(self, project: str, name: str) -> Endpoint:
        """Drop the canary, or go back to the previously live version."""
        return self._parse(Endpoint, self._request("POST", wire.endpoint_path(project, name) + "/rollback",
                                                   timeout=max(DEPLOY_TIMEOUT_S, self.timeout)))

    def delete_endpoint(self, project: str, name: str) -> None:
        """Stop serving and forget the endpoint (its key with it); :class:`NotFound` if unknown."""
        self._request("DELETE", wire.endpoint_path(project, name))

    # -- monitoring ----------------------------------------------------------------------

    def monitor(self, project: str, name: str, window: str = "1h") -> MonitorReport:
        """Endpoint ``name``'s monitor report over the last ``window`` (``15m``, ``1h``, ``7d``…, at
        most ``30d``): traffic, errors, latency, drift against the served version's reference
        sample, quality from feedback labels, and a 12-bucket trend. :class:`InvalidInput` for a
        bad window, :class:`NotFound` for an unknown endpoint."""
        path = wire.endpoint_path(project, name) + "/monitor"
        return self._parse(MonitorReport, self._request("GET", path, params={"window": window}))

    def feedback(self, project: str, name: str, items: Iterable[Mapping[str, Any] | FeedbackItem]) -> FeedbackResult:
        """Send true labels (``{"request_id", "label"}``, ids from the ``x-request-id`` answer header).

        Items are checked here (:class:`InvalidInput` naming the item) and sent in calls of at
        most :data:`~loopml.monitor.models.MAX_FEEDBACK`, each stored in one transaction; the
        answer adds them up. Resending labels is idempotent (counted ``unchanged``), so a
        failed call can be retried whole. Request ids with no captured request come back in
        ``unknown``.
        """
        body = wire.feedback_items(items)
        path = wire.endpoint_path(project, name) + "/feedback"
        total = FeedbackResult(accepted=0)
        for start in range(0, len(body), MAX_FEEDBACK):
            part = self._parse(FeedbackResult, self._request("POST", path, json=body[start:start + MAX_FEEDBACK]))
            total.accepted += part.accepted
            total.updated += part.updated
            total.unchanged += part.unchanged
            total.unknown.extend(part.unknown)
        return total

    def set_policy(self, project: str, name: str, spec: Mapping[str, Any] | PolicySpec) -> Policy:
        """Replace endpoint ``name``'s monitoring policy (:class:`~loopml.monitor.policies.PolicySpec`
        fields; left-out fields take their defaults). :class:`InvalidInput` names a bad field."""
        body = wire.validated(PolicySpec, **(spec.model_dump() if isinstance(spec, PolicySpec) else dict(spec)))
        return self._parse(Policy, self._request("PUT", wire.endpoint_path(project, name) + "/policy", json=body))

    def policy(self, project: str, name: str) -> Policy:
        """Endpoint ``name``'s policy; :class:`NotFound` when it has none."""
        return self._parse(Policy, self._request("GET", wire.endpoint_path(project, name) + "/policy"))

    def requeue_endpoint(self, project: str, name: str, *, parameters: Mapping[str, Any] | None = None,
                         alert_id: str | None = None) -> Requeued:
        """Run the training job of the version ``name`` serves again (``parameters`` override its
        own); the version it registers becomes the challenger. Answers the new job and the alert
        that records the requeue. :class:`Conflict` when the version came from no loopml job."""
        body = {"parameters": dict(parameters or {}), "alert_id": alert_id}
        return self._parse(Requeued, self._request("POST", wire.endpoint_path(project, name) + "/requeue", json=body))

    def alerts(self, project: str, *, endpoint: str | None = None, status: str | None = None,
               job_id: str | None = None) -> list[Alert]:
        """The project's alerts, newest first; ``job_id`` finds the alert that requeued a job."""
        params = {k: v for k, v in {"endpoint": endpoint, "status": status, "job_id": job_id}.items() if v}
        return self._parse_list(Alert, self._request("GET", wire.api_path("projects", project, "alerts"), params=params))

    # -- plumbing ------------------------------------------------------------------------

    def _poll(self, fetch: Callable[[], _M], ended: Callable[[_M], bool], what: str, timeout: float | None,
              poll_s: float, on_update: Callable[[_M], None] | None, **detail: Any) -> _M:
        """``fetch()`` every ``poll_s`` seconds until ``ended``; platform outages shorter than
        :data:`WAIT_OUTAGE_S` are ridden out; ``timeout`` raises reason ``timeout`` naming ``what``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        outage_since: float | None = None
        while True:
            try:
                found = fetch()
            except Unavailable:
                now = time.monotonic()
                outage_since = outage_since or now
                if now - outage_since > WAIT_OUTAGE_S:
                    raise
                log.warning("platform at %s unavailable while waiting for %s; retrying", self.url, what)
            else:
                outage_since = None
                if on_update is not None:
                    on_update(found)
                if ended(found):
                    return found
            if deadline is not None and time.monotonic() >= deadline:
                raise LoopMLError(f"{what} did not finish within {timeout:g} s; it keeps running", reason="timeout",
                                  **detail)
            time.sleep(poll_s)

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        timeout = timeout or self.timeout
        try:
            response = self._http.request(method, path, json=json, params=params, timeout=timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Unavailable(f"cannot reach the platform at {self.url}: is it running? (`loopml status`)") from exc
        except httpx.TimeoutException as exc:
            raise Unavailable(
                f"the platform at {self.url} did not answer within {timeout:g} s: is it overloaded? (`loopml status`)"
            ) from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the platform at {self.url}: is it running? (`loopml status`)") from exc
        log.debug("%s %s -> %s", method, path, response.status_code)
        if response.is_success:
            return response
        raise wire.error_from(response, self.url)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise wire.unexpected(response, self.url, "not JSON") from None

    def _parse(self, model: type[_M], response: httpx.Response) -> _M:
        try:
            return model.model_validate(self._json(response))
        except ValidationError as exc:
            raise wire.unexpected(response, self.url, f"not a {model.__name__} ({exc.error_count()} errors)") from exc

    def _every(self, model: type[_M], path: str) -> list[_M]:
        """All items of a listing route, parsed as ``model``."""
        return self._pages(path, lambda response: self._parse_list(model, response))

    def _pages(self, path: str, parse: Callable[[httpx.Response], list[Any]]) -> list[Any]:
        """All items of a listing route: its first page as the route gives it (``limit``
        :data:`FIRST_PAGE`), then pages of :data:`PAGE` while they come back full."""
        items: list[Any] = []
        params: dict[str, int] = {}
        while True:
            page = parse(self._request("GET", path, params=params or None))
            items.extend(page)
            if len(page) < params.get("limit", FIRST_PAGE):
                return items
            params = {"limit": PAGE, "offset": len(items)}

    def _json_list(self, response: httpx.Response) -> list[Any]:
        data = self._json(response)
        if not isinstance(data, list):
            raise wire.unexpected(response, self.url, "not a list")
        return data

    def _parse_list(self, model: type[_M], response: httpx.Response) -> list[_M]:
        data = self._json(response)
        if not isinstance(data, list):
            raise wire.unexpected(response, self.url, f"not a list of {model.__name__}")
        try:
            return [model.model_validate(item) for item in data]
        except ValidationError as exc:
            raise wire.unexpected(response, self.url, f"not a list of {model.__name__} ({exc.error_count()} errors)") from exc
