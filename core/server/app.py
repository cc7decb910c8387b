"""The platform service: assembles every slice's router into one FastAPI app.

The app owns the shared pieces (settings, DB, authenticator, services) in one typed
:class:`~loopml.services.Services` (``app.state.services``, handed to routes by the
:func:`~loopml.services.services` dependency) and one error table: a
:class:`~loopml.errors.LoopMLError` becomes its HTTP status with a JSON ``message``; request
validation errors become 422 naming the field; anything else is logged and answered with a
generic 500 that leaks nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager, suppress

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from loopml import projects
from loopml.auth import StaticTokenAuthenticator, User, current_user
from loopml.db import Database, migrate
from loopml.errors import LoopMLError, http_status
from loopml.executor import routes as executor_routes
from loopml.executor.backend import JobBackend, job_backend_class
from loopml.executor.job_tokens import JobTokens
from loopml.executor.pipelines import routes as pipeline_routes
from loopml.executor.pipelines.service import PipelineService
from loopml.executor.schedules import ScheduleService
from loopml.executor.service import JobService
from loopml.hub_config import admin as admin_panel
from loopml.hub_config.project_setup import ProjectSetup
from loopml.monitor import ingest, policy_routes
from loopml.monitor import routes as monitor_routes
from loopml.monitor.ingest import CaptureService, capture_tokens
from loopml.monitor.policies import PolicyService
from loopml.monitor.service import MonitorService
from loopml.projects import ProjectCreate, ProjectService
from loopml.registry import mlflow_auth
from loopml.registry import routes as registry_routes
from loopml.registry.contract_service import ContractService
from loopml.registry.mlflow_auth import ProjectAccess
from loopml.registry.service import RegistryService
from loopml.registry.tracking import JobTracking
from loopml.server import loop
from loopml.server.pipeline_actions import pipeline_actions
from loopml.server.service_auth import (
    BrowserSessions,
    ChainAuthenticator,
    HubClient,
    HubTokenAuthenticator,
    browser_router,
    running_as_hub_service,
)
from loopml.services import Services, services
from loopml.serving import routes as serving_routes
from loopml.serving.service import EndpointService
from loopml.settings import Settings

log = logging.getLogger(__name__)

health_router = APIRouter(tags=["platform"])
STATUS_TIMEOUT_S = 5.0


@health_router.get("/health")
def health():
    """Liveness, without a token (used by `loopml up` and load balancers)."""
    return {"status": "ok"}


@health_router.get("/status")
async def status(user: User = Depends(current_user), state: Services = Depends(services)):
    """Each component's address and health, as the platform sees it (5 s at most per check)."""

    async def check(fn, fallback: dict) -> dict:
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), STATUS_TIMEOUT_S)
        except asyncio.TimeoutError:
            return {**fallback, "ok": False, "error": f"no answer within {STATUS_TIMEOUT_S:g} s"}

    ray, mlflow_ok = await asyncio.gather(
        check(state.backend.status, {"address": state.settings.ray_address}),
        check(lambda: {"ok": state.tracking.ping()}, {}),
    )
    ray = {k: _without_credentials(v) if isinstance(v, str) else v for k, v in ray.items()}
    return {
        "platform": {"ok": True, "url": state.settings.url, "user": user.name, "admin": user.admin,
                     "monitor_interval_s": state.settings.monitor_interval_s},
        "ray": ray,
        # any caller may read this: the address only, never a password of the tracking URI
        "mlflow": {**mlflow_ok, "uri": _without_credentials(state.tracking.tracking_uri)},
        "db": {"ok": True, "backend": state.db.engine.dialect.name},
        "jobs": {"ok": True, "isolation": state.settings.job_isolation},
    }


def _without_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` and the query (tokens travel there too) of every
    URL in it removed; each whitespace-separated word is parsed on its own (no regex to backtrack)."""
    words = []
    for word in text.split(" "):
        if "://" in word:
            scheme, _, rest = word.partition("://")
            address, slash, path = rest.partition("/")
            word = f"{scheme}://{address.rpartition('@')[2]}{slash}{path}"
            word = word.split("?", 1)[0].split("#", 1)[0]
        words.append(word)
    return " ".join(words)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg')}")
    return "invalid request: " + "; ".join(parts)


class ErrorBody(BaseModel):
    """Every error answer of the API (the OpenAPI documents it for each status below)."""

    model_config = ConfigDict(extra="allow")

    message: str = Field(description="What was wrong and how to fix it.")
    reason: str = Field(description="A stable code: invalid, unauthorized, forbidden, not_found, conflict, "
                                    "too_large, unavailable, …")


class InvalidRequestBody(ErrorBody):
    """A 422: the request does not validate; ``errors`` names each field."""

    errors: list[dict] = Field(default_factory=list, description="Up to 20 of {loc, msg}.")


ERROR_RESPONSES: dict[int | str, dict] = {
    400: {"model": ErrorBody, "description": "The request cannot be carried out as sent."},
    401: {"model": ErrorBody, "description": "No token, or one the platform does not know."},
    403: {"model": ErrorBody, "description": "The caller is not a member of the project (or not an admin)."},
    404: {"model": ErrorBody, "description": "No such project, job, model, endpoint or route."},
    409: {"model": ErrorBody, "description": "The resource exists, or its state forbids the action."},
    429: {"model": ErrorBody, "description": "A quota of the project is full (queued jobs): wait or cancel, then retry."},
    413: {"model": ErrorBody, "description": "The request body is over the limit."},
    422: {"model": InvalidRequestBody, "description": "A field is invalid."},
    503: {"model": ErrorBody, "description": "Ray, MLflow or Serve cannot be reached now; nothing was changed."},
}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoopMLError)
    async def loopml_error(request: Request, exc: LoopMLError):
        return JSONResponse(exc.to_json(), status_code=http_status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()[:20]]
        return JSONResponse({"message": _validation_message(exc), "reason": "invalid", "errors": errors},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        messages = {404: f"no such route: {request.method} {request.url.path} (the API is described at "
                         f"{request.app.openapi_url})",
                    405: f"{request.method} is not allowed on {request.url.path}",
                    413: "the request body is too large: clear the notebook's outputs or raise max_notebook_mb"}
        return JSONResponse({"message": messages.get(exc.status_code, str(exc.detail)), "reason": f"http_{exc.status_code}"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        incident = uuid.uuid4().hex[:8]
        log.error("unexpected error %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
        return JSONResponse({"message": f"internal error {incident}: the platform log has the details",
                             "reason": "internal"}, status_code=500)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with a JSON 413, declared or streamed."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, scope, receive, send) -> None:
        response = JSONResponse(
            {"message": f"the request body is over the {self.limit / 2**20:.1f} MiB limit: clear the notebook's "
                        "outputs or raise max_notebook_mb", "reason": "too_large"}, status_code=413)
        await response(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)


def _hub_auth(state: Services) -> HubClient | None:
    """Static tokens and job tokens always; with the hub also hub tokens and browser sessions. Returns the
    hub's API client, or None when the platform does not run as the hub's service."""
    settings = state.settings
    local = ChainAuthenticator(StaticTokenAuthenticator(settings), state.job_tokens)
    state.authenticator, state.sessions = local, None
    if not (settings.hub and running_as_hub_service()):
        return None
    hub = HubClient(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    workspaces = HubTokenAuthenticator(hub, settings.hub_service_name,  # state.projects is set after this
                                       is_member=lambda user, project: state.projects.member_now(user, project))
    state.authenticator = ChainAuthenticator(local, workspaces)
    secret = hmac.new((settings.admin_token or os.environ["JUPYTERHUB_API_TOKEN"]).encode(), b"browser-sessions",
                      hashlib.sha256).hexdigest()
    state.sessions = BrowserSessions(settings, secret)
    log.info("authenticating hub tokens and browser sessions through %s", hub.api_url)
    return hub


async def _set_up_projects(projects: ProjectService, attempts: int = 30) -> None:
    """Give every existing project its directory, experiment and hub group (the hub may
    still be starting: retried every 2 s)."""
    for attempt in range(attempts):
        try:
            await asyncio.to_thread(projects.ensure_hooks)
            return
        except Exception as exc:  # noqa: BLE001 - logged, retried
            log.warning("setting up the projects failed (attempt %d): %s", attempt + 1, exc)
            await asyncio.sleep(2)


def _project_mlflow(state: Services) -> Callable[[str], str]:
    """A project's MLflow set-up: its experiment and, with MLflow auth, its user and grants."""
    def set_up(project: str) -> str:
        experiment_id = state.tracking.experiment_id(project)
        if state.mlflow_access is not None:
            state.mlflow_access.provision(project, experiment_id)
        return experiment_id
    return set_up


def create_app(settings: Settings, *, backend: JobBackend | None = None) -> FastAPI:
    """The platform app. ``backend`` defaults to the one the ``job_backend`` setting names (tests may pass another)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state: Services = app.state.services
        state.db = Database(settings.database_url)
        await asyncio.to_thread(migrate, state.db.engine)
        # the platform is MLflow's admin; each project gets a user of its own (registry/mlflow_auth.py)
        state.mlflow_access = ProjectAccess(settings) if mlflow_auth.use_admin_credentials(settings) else None
        state.tracking = await asyncio.to_thread(JobTracking, settings.tracking_uri)
        # a job token's user must still be a member on every request (state.projects comes next)
        state.job_tokens = JobTokens(state.db, settings.admin_token, max_s=settings.job_token_max_s,
                                     is_member=lambda user, project: state.projects.member_now(user, project))
        hub = _hub_auth(state)
        state.projects = ProjectService(state.db, group_prefix=settings.project_group_prefix,
                                        hooks=ProjectSetup(settings, _project_mlflow(state), hub))
        for seed in settings.projects:
            await asyncio.to_thread(state.projects.create, ProjectCreate(**seed.model_dump()), exist_ok=True)
        state.registry = RegistryService(settings.tracking_uri, endpoints_of=lambda name: state.endpoints.serving(name))
        state.backend = backend or job_backend_class(settings.job_backend).from_settings(settings)
        await state.backend.start()
        state.jobs = JobService(settings, state.db, state.tracking, state.backend, job_tokens=state.job_tokens)
        state.captures = CaptureService(state.db, capture_tokens(settings))
        state.contracts = ContractService(state.db, state.registry)
        state.endpoints = EndpointService(settings, state.db, state.registry, capture_tokens=state.captures.tokens,
                                          contracts=state.contracts)
        state.contracts.on_change.append(state.endpoints.contract_changed)
        state.monitor = MonitorService(state.db, settings, state.endpoints, state.registry, state.captures)
        if backend is None:  # Serve needs the Ray connection the Ray backend opened
            await asyncio.to_thread(state.endpoints.start)
        state.pipelines = PipelineService(settings, state.db, state.jobs, state.tracking,
                                          actions=pipeline_actions(lambda: state.registry, lambda: state.endpoints))
        state.schedules = ScheduleService(state.db, state.jobs, projects=state.projects, pipelines=state.pipelines)
        state.projects.on_members_changed.append(state.schedules.check_members)
        state.policies = PolicyService(state.db, settings, state.monitor, state.jobs, state.endpoints, state.registry,
                                       state.pipelines)
        tasks = [asyncio.create_task(state.jobs.run(), name="jobs"),
                 asyncio.create_task(_set_up_projects(state.projects), name="project-setup"),
                 asyncio.create_task(state.schedules.run(), name="schedules"),
                 asyncio.create_task(state.pipelines.drive(), name="pipelines"),
                 asyncio.create_task(state.policies.run(), name="policies")]
        log.info("platform service ready at %s", settings.url)
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task

    base = settings.base_url
    app = FastAPI(title="loopml", version="0.1.0", lifespan=lifespan, openapi_url=f"{base}openapi.json",
                  docs_url=f"{base}docs", redoc_url=None)
    app.state.services = Services(settings)  # filled in by the lifespan, before the first request
    app.state.services.loop = loop.LoopTracker(app.state.services)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=int(settings.max_notebook_mb * 2 * 2**20))
    prefix = settings.api_prefix
    for router in (health_router, projects.router, loop.router, executor_routes.router, pipeline_routes.router,
                   registry_routes.router, serving_routes.router, monitor_routes.router, policy_routes.router, ingest.router):
        app.include_router(router, prefix=prefix, responses=ERROR_RESPONSES)
    app.include_router(browser_router, prefix=base.rstrip("/"))
    app.include_router(admin_panel.router, prefix=base.rstrip("/"))
    return app
