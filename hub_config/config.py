"""JupyterHub's configuration, built from loopml's :class:`~loopml.settings.Settings`.

``jupyterhub -f hub_config/jupyterhub_config.py`` (what ``loopml up`` runs) calls
:func:`configure`; the settings come from the ``LOOPML_*`` environment ``up`` gives the hub.

What it sets up:

- the hub on ``127.0.0.1:hub_port`` behind configurable-http-proxy (the npm package in the
  checkout's ``node_modules``), its API on ``hub_api_port``, its state in ``<home>/hub``;
- login through the identity provider of ``settings.oauth``
  (:mod:`loopml.hub_config.authenticator`);
- named servers, one per project, on the spawner ``settings.hub_spawner_class`` names with
  loopml's workspace rules added (:class:`~loopml.hub_config.spawner.LoopmlSpawnerMixin`),
  opened from the hub home page, which lists the user's projects (``templates/home.html``);
- the platform service as the managed service ``loopml`` at ``/services/loopml/`` (``python
  -m loopml.server``, with the settings ``up`` was given), shown in the Services menu;
- roles: users may access the service; the service may read users and groups and manage
  groups (a project's group is created with the project).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from loopml.hub_config.authenticator import authenticator_config
from loopml.hub_config.launch import HERE, node_modules
from loopml.hub_config.spawner import LoopmlSpawnerMixin, spawner_base, spawner_class, template_projects
from loopml.settings import Settings, load_settings

TEMPLATES = HERE / "templates"
# Passed on to the platform service: its settings, and how to reach the instance's Ray cluster.
SERVICE_ENV_PREFIXES = ("LOOPML_", "RAY_")
SERVICE_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
SERVICE_START_TIMEOUT_S = 180  # the platform connects to Ray and starts Serve first; slow on a busy box
SERVICE_SCOPES = ["list:users", "read:users", "list:groups", "read:groups", "admin:groups"]


def proxy_command() -> list[str]:
    found = node_modules() / ".bin" / "configurable-http-proxy"
    if found.exists():
        return [str(found)]
    on_path = shutil.which("configurable-http-proxy")
    if on_path:
        return [on_path]
    raise FileNotFoundError(f"configurable-http-proxy is not installed in {node_modules()}: run `make up`")


def service_environment(settings: Settings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The platform service's environment: the hub's ``LOOPML_*``/``RAY_*`` variables and a
    few basics, with the service's URL prefix and port."""
    environ = dict(os.environ if environ is None else environ)
    env = {k: v for k, v in environ.items() if k.startswith(SERVICE_ENV_PREFIXES) or k in SERVICE_ENV_KEEP}
    env.pop("LOOPML_OAUTH__CLIENT_SECRET", None)  # the hub's, not the service's
    env["LOOPML_BASE_URL"] = service_prefix(settings)
    env["LOOPML_HUB"] = "true"
    return env


def service_prefix(settings: Settings) -> str:
    return f"/services/{settings.hub_service_name}/"


def configure(c: Any, settings: Settings | None = None) -> None:
    """Fill JupyterHub's config object ``c`` from ``settings`` (default: the environment)."""
    settings = settings or load_settings()
    hub_dir = settings.home / "hub"
    hub_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = settings.hub_service_name

    c.JupyterHub.bind_url = f"http://127.0.0.1:{settings.hub_port}/"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_api_port}"
    c.JupyterHub.db_url = f"sqlite:///{hub_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(hub_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(hub_dir / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.command = proxy_command()
    c.ConfigurableHTTPProxy.pid_file = str(hub_dir / "proxy.pid")
    c.ConfigurableHTTPProxy.debug = False

    cls, traits = authenticator_config(settings)
    c.JupyterHub.authenticator_class = cls
    for trait, value in traits.items():
        setattr(c[cls.__name__], trait, value)

    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = 0
    c.JupyterHub.default_url = "/hub/home"
    c.JupyterHub.spawner_class = spawner_class(spawner_base(settings.hub_spawner_class))
    c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
    c.Spawner.default_url = "/lab"
    c.Spawner.http_timeout = 60
    c.Spawner.start_timeout = 120
    c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", f"access:services!service={name}"]
    rules = c[LoopmlSpawnerMixin.__name__]  # the workspace rules' traits, whatever spawner they are added to
    rules.projects_dir = str(settings.projects_dir)
    rules.database_url = settings.database_url
    rules.group_prefix = settings.project_group_prefix
    rules.data_dir = str(settings.home)
    rules.isolation = getattr(settings, "job_isolation", "bwrap")
    rules.platform_url = f"{settings.hub_url}{service_prefix(settings).rstrip('/')}"
    c.SimpleLocalProcessSpawner.home_dir_template = str(hub_dir / "homes" / "{username}")
    if os.geteuid() == 0:
        c.LocalProcessSpawner.args = ["--allow-root"]

    c.JupyterHub.template_paths = [str(TEMPLATES)]
    c.JupyterHub.template_vars = {"loopml_projects": functools.partial(template_projects, settings.database_url,
                                                                       settings.project_group_prefix),
                                  "loopml_service": name, "loopml_admin_url": f"{service_prefix(settings)}admin"}

    c.JupyterHub.services = [{
        "name": name,
        "url": f"http://127.0.0.1:{settings.port}",
        "command": [sys.executable, "-m", "loopml.server"],
        "environment": service_environment(settings),
        "oauth_no_confirm": True,
        "timeout": SERVICE_START_TIMEOUT_S,
        "display": True,
        "info": {"description": "loopml: jobs, models, endpoints, monitoring; admin panel for hub admins"},
    }]
    c.JupyterHub.load_roles = [
        {"name": "user", "scopes": ["self", f"access:services!service={name}"]},
        {"name": f"{name}-service", "services": [name], "scopes": SERVICE_SCOPES},
    ]
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.cleanup_proxy = True
