"""Platform settings and the client configuration file.

Precedence, documented once for every setting: CLI flag (passed as keyword arguments to
:func:`load_settings`) > environment (``LOOPML_<NAME>``, the data dir as ``LOOPML_HOME``) >
``<data dir>/config.toml`` > the defaults below.
"""

from __future__ import annotations

import json
import os
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from loopml.errors import InvalidInput

CLIENT_FILE = "client.json"
CONFIG_FILE = "config.toml"
DEFAULT_HOME = "~/.loopml"


JOB_BACKEND_ENTRY_POINTS = "loopml.job_backends"


def job_backend_names() -> list[str]:
    """Names of the installed job backends (entry points of ``loopml.job_backends``), sorted.

    Only the names: the settings check a ``job_backend`` without importing any backend;
    :func:`loopml.executor.backend.job_backend_class` loads the one named.
    """
    return sorted({point.name for point in entry_points(group=JOB_BACKEND_ENTRY_POINTS)})


def unknown_job_backend(name: str) -> str:
    """Why ``name`` is no ``job_backend``, listing the known ones."""
    return f"No job backend named {name!r}; known job backends: {', '.join(job_backend_names()) or 'none'}"


class TokenUser(BaseModel):
    """A static API token (headless mode) and who it authenticates."""

    name: str = Field(description="User name the token authenticates as.")
    admin: bool = Field(False, description="Admins may create projects and see every project.")


class ProjectSeed(BaseModel):
    """A project created at start-up if missing (headless mode)."""

    name: str
    members: list[str] = Field(default_factory=list)
    max_concurrent_jobs: int | None = None


class OAuthSettings(BaseModel):
    """The identity provider JupyterHub logs users in with (``[oauth]`` in config.toml, or
    ``LOOPML_OAUTH__<FIELD>``). ``provider = "dev"`` (the default) starts the bundled
    development OIDC provider; see docs/hub.md for GitHub, Google, GitLab and Keycloak."""

    provider: Literal["dev", "generic", "github", "google", "gitlab", "keycloak"] = Field(
        "dev", description="dev = the bundled development OIDC provider (loopback, demo users); generic = any "
                           "OIDC provider by issuer or URLs.")
    client_id: str | None = Field(None, description="OAuth client id registered with the provider.")
    client_secret: str | None = Field(None, description="OAuth client secret (never logged).")
    issuer: str | None = Field(None, description="OIDC issuer URL (generic, keycloak: <server>/realms/<realm>); "
                                                 "endpoints are discovered from it.")
    authorize_url: str | None = Field(None, description="Authorization endpoint, when not discovered.")
    token_url: str | None = Field(None, description="Token endpoint, when not discovered.")
    userdata_url: str | None = Field(None, description="Userinfo endpoint, when not discovered.")
    scope: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    username_claim: str = Field("preferred_username", description="Claim that becomes the hub user name.")
    groups_claim: str = Field("groups", description="Claim listing the user's groups (kept in sync with hub groups).")
    allowed_users: list[str] = Field(default_factory=list, description="Users who may log in whatever their groups.")
    allowed_groups: list[str] = Field(default_factory=list, description="Groups whose members may log in, besides "
                                      "members of any project group and the admin groups.")
    admin_users: list[str] = Field(default_factory=list, description="Hub admins, hence platform admins.")
    admin_groups: list[str] = Field(default_factory=lambda: ["loopml-admins"],
                                    description="Members of these groups are hub and platform admins.")
    allowed_organizations: list[str] = Field(
        default_factory=list, description="github: the organizations whose teams are groups (`org:team`); gitlab: "
                                          "the group paths under which groups count. Groups of any other owner "
                                          "grant nothing (see docs/hub.md).")
    dev_users_file: Path | None = Field(None, description="Users of the dev provider (default: "
                                        "hub_config/dev_users.json, documented demo users).")


class Settings(BaseSettings):
    """Everything the platform service and ``loopml up`` read."""

    model_config = SettingsConfigDict(env_prefix="LOOPML_", extra="forbid", populate_by_name=True,
                                      env_nested_delimiter="__")

    data_dir: Path = Field(
        Path(DEFAULT_HOME),
        validation_alias="LOOPML_HOME",
        description="Where the platform keeps its DB, MLflow store, logs and client config.",
    )
    host: str = Field("127.0.0.1", description="Address the platform service binds to.")
    port: int = Field(8899, description="Port of the platform service.")
    base_url: str = Field("/", description="URL prefix of the platform service (e.g. /services/loopml/).")
    db_url: str | None = Field(None, description="SQLAlchemy URL of the platform DB (default: SQLite in the data dir).")
    ray_address: str | None = Field(None, description="Join this Ray cluster instead of starting a head node.")
    ray_dashboard_url: str | None = Field(None, description="Ray dashboard / Jobs API URL (default: the local head's).")
    ray_port: int = Field(6380, description="GCS port of the Ray head started by `loopml up`.")
    ray_dashboard_port: int = Field(8265, description="Dashboard / Jobs API port of that head.")
    ray_num_cpus: int | None = Field(None, description="CPUs the Ray head offers (default: all).")
    ray_temp_dir: str | None = Field(None, description="Ray's temp dir (kept short: Ray puts sockets in it).")
    mlflow_uri: str | None = Field(None, description="Use this MLflow tracking server instead of starting one.")
    mlflow_port: int = Field(5050, description="Port of the MLflow server started by `loopml up`.")
    mlflow_backend_uri: str | None = Field(
        None, description="SQLAlchemy URL of the backend store of the MLflow server started by `loopml up`, e.g. "
                          "postgresql+psycopg://USER:PASSWORD@HOST:5432/mlflow (default: SQLite in the data dir); "
                          "unused with mlflow_uri. Secret when it carries a password: never logged or recorded.")
    mlflow_auth: bool = Field(True, description=(
        "Run the MLflow server started by `loopml up` with MLflow's basic-auth app: the platform is its admin, "
        "each project a user that reaches only its own experiment, artifacts and `<project>.*` models. "
        "Off: MLflow answers anyone who reaches its port. No effect with mlflow_uri."))
    serve_port: int = Field(8000, description="HTTP port of the model endpoints, on serve_host.")
    serve_host: str = Field("127.0.0.1", description=(
        "Address the endpoints' ingress (and each replica's own port) listens on: loopback by default; on a "
        "cluster the node's address, so that callers outside the Ray pods reach them."))
    serve_public_url: str | None = Field(None, description=(
        "Base URL callers use for endpoints (`loopml deploy`, `endpoints show`, the panels print "
        "<serve_public_url>/<project>/<endpoint>), e.g. https://models.example.com behind a load balancer; "
        "default http://<serve_host>:<serve_port>."))
    serve_ingress: Literal["haproxy", "proxy"] = Field("haproxy", description=(
        "What routes endpoint requests to replicas: \"haproxy\" (Ray Serve's HAProxy mode, its configuration "
        "made loopback-safe; ~1 ms per request) or \"proxy\" (Ray Serve's Python proxy; ~10 ms)."))
    serve_max_inflight: int = Field(32, ge=1, le=10_000, description=(
        "Requests in flight per replica of an endpoint: the 4 a replica runs plus those waiting for it. More "
        "are refused at once with 503 and Retry-After (with serve_ingress = \"proxy\": per Serve HTTP proxy, "
        "for an endpoint of one replica; each further replica adds 4)."))
    max_request_mb: float = Field(10.0, description="Largest request body an endpoint accepts, in MiB.")
    capture_sample: float = Field(1.0, ge=0, le=1, description="Share of endpoint requests captured for "
                                  "monitoring (0 turns capture off).")
    contract_tolerance: float = Field(0.1, ge=0, le=10, description=(
        "How far a model version's data contract widens each feature's observed range, as a share of that "
        "range on each side (0.1: a feature seen in [0, 10] may be in [-1, 11]); applied by loopml.log_model "
        "in jobs when the version is registered, so it changes the contracts of versions logged after."))
    monitor_interval_s: float = Field(10.0, gt=0, description="Seconds between evaluations of the endpoints' "
                                      "monitoring policies.")
    serve_request_timeout_s: float = Field(30.0, gt=0, description="End-to-end limit of one endpoint request, in "
                                           "seconds: past it the caller gets an error, never a hang.")
    admin_token: str | None = Field(None, description="Token of the built-in admin user (generated by `loopml up`).")
    tokens: dict[str, TokenUser] = Field(default_factory=dict, description="Static tokens: token -> user.")
    projects: list[ProjectSeed] = Field(default_factory=list, description="Projects to create at start-up.")
    warm_kernels: bool = Field(True, description="Keep a pre-started kernel in each idle runner worker.")
    kernel_name: str = Field("python3", description="Kernel used when a notebook names none.")
    job_isolation: Literal["bwrap", "off"] = Field("bwrap", description=(
        "How user code (job kernels, workspace servers, model hosts) runs: \"bwrap\" in a bubblewrap "
        "sandbox (own pid namespace, private /tmp and working dir, no Ray token, nothing of the data dir); "
        "\"off\" unsandboxed (only for a machine that cannot sandbox, among users who trust each other)."))
    job_backend: str = Field("ray", description=(
        "Where job attempts run: the name of an entry point of the loopml.job_backends group (\"ray\": the "
        "Ray cluster, through loopml's dispatcher actor); another package may add its own."))
    max_notebook_mb: float = Field(20.0, description="Largest notebook accepted by submit, in MiB.")
    max_job_files_mb: float = Field(100.0, gt=0, description="Most a job's input files may take together, and "
                                    "its output files together, in MiB (files sent in a REST body are also bounded "
                                    "by its limit, twice max_notebook_mb).")
    job_token_max_s: float = Field(86400.0, gt=0, description="Longest life of a job's token (LOOPML_TOKEN in its "
                                   "kernel), in seconds, even while the job runs; a job's timeout_s ends it sooner.")
    schedule_min_interval_s: float = Field(60.0, ge=0, description="Shortest time between two runs of a "
                                           "schedule, in seconds: a cron that fires more often is refused.")
    max_queued_jobs_per_project: int = Field(100, ge=1, description="Jobs a project may have QUEUED at once: "
                                             "a further submit is refused with 429, a schedule's run is skipped.")
    hub: bool = Field(True, description="Start JupyterHub (login, workspaces; the platform runs as its service). "
                                        "False (`loopml up --no-hub`): headless, static tokens only.")
    hub_port: int = Field(8800, description="Public port of JupyterHub's proxy (the URL users open).")
    hub_api_port: int = Field(8801, description="Port of the hub's own API, behind the proxy.")
    proxy_api_port: int = Field(8802, description="Port of configurable-http-proxy's REST API.")
    idp_port: int = Field(8803, description="Port of the bundled development OIDC provider.")
    hub_service_name: str = Field("loopml", description="Name of the platform's hub service (/services/<name>/).")
    hub_spawner_class: str = Field("simple", description=(
        "JupyterHub spawner the project workspaces run on, with loopml's workspace rules added: an entry point "
        "name of the jupyterhub.spawners group (simple, localprocess, kubespawner…) or an import path "
        "(module.Class or module:Class)."))
    project_group_prefix: str = Field("loopml-", description="Hub group of project P: <prefix>P (IdP groups too).")
    oauth: OAuthSettings = Field(default_factory=OAuthSettings, description="Identity provider of the hub.")

    @field_validator("job_backend")
    @classmethod
    def _job_backend(cls, value: str) -> str:
        # names only: the backend's module (and Ray) is imported when the platform starts it
        if value not in job_backend_names():
            raise ValueError(unknown_job_backend(value))
        return value

    @field_validator("base_url")
    @classmethod
    def _slashes(cls, value: str) -> str:
        return "/" + value.strip("/") + "/" if value.strip("/") else "/"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFile(settings_cls, init_settings.init_kwargs))

    @property
    def home(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'loopml.db'}"

    @property
    def api_prefix(self) -> str:
        return f"{self.base_url}api/v1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.base_url.rstrip('/')}"

    @property
    def public_url(self) -> str:
        """The platform's URL for clients: through the hub's proxy with the hub, else direct."""
        return f"{self.hub_url}{self.base_url.rstrip('/')}" if self.hub else self.url

    @property
    def hub_url(self) -> str:
        """The public URL of JupyterHub (its proxy)."""
        return f"http://127.0.0.1:{self.hub_port}"

    @property
    def projects_dir(self) -> Path:
        """Where each project's shared directory (its workspaces' root) lives."""
        return self.home / "projects"

    @property
    def dashboard_url(self) -> str:
        return self.ray_dashboard_url or f"http://127.0.0.1:{self.ray_dashboard_port}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_uri or f"http://127.0.0.1:{self.mlflow_port}"


class _ConfigFile(PydanticBaseSettingsSource):
    """Reads ``config.toml`` from the data dir named by the higher-priority sources."""

    def __init__(self, settings_cls: type[BaseSettings], init_kwargs: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        home = init_kwargs.get("data_dir") or init_kwargs.get("LOOPML_HOME") or os.environ.get("LOOPML_HOME") or DEFAULT_HOME
        self.path = Path(home).expanduser() / CONFIG_FILE

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            return tomllib.loads(self.path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"{self.path} is not valid TOML: {exc}; fix or remove it") from None


def load_settings(**overrides: Any) -> Settings:
    """Settings with ``overrides`` (CLI flags; ``None`` means "not given") on top.

    Raises :class:`InvalidInput` naming the setting when a value (from any source) is wrong.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidInput(f"invalid loopml settings ({problems}): check the flags, LOOPML_* variables and "
                           f"{CONFIG_FILE} in the data dir") from None


class ClientConfig(BaseModel):
    """Where the CLI and Python client find the platform, and the token they use."""

    url: str
    token: str


def write_client_config(home: Path, config: ClientConfig) -> Path:
    path = home / CLIENT_FILE
    path.write_text(config.model_dump_json(indent=2))
    path.chmod(0o600)
    return path


def read_client_config(home: str | Path | None = None) -> ClientConfig | None:
    """The client config: ``LOOPML_URL``/``LOOPML_TOKEN`` override ``client.json``."""
    home = Path(home or os.environ.get("LOOPML_HOME") or DEFAULT_HOME).expanduser()
    stored: dict[str, str] = {}
    path = home / CLIENT_FILE
    if path.exists():
        stored = json.loads(path.read_text())
    url = os.environ.get("LOOPML_URL") or stored.get("url")
    token = os.environ.get("LOOPML_TOKEN") or stored.get("token")
    if not url or not token:
        return None
    return ClientConfig(url=url, token=token)
