"""How ``loopml up`` starts the hub's processes: the bundled development OIDC provider and
JupyterHub (which starts configurable-http-proxy and the platform service itself)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from loopml.errors import Unavailable
from loopml.settings import Settings

HERE = Path(__file__).resolve().parent

DEV_CLIENT_ID = "loopml-hub"
DEV_USERS_FILE = HERE / "dev_users.json"
DEV_PROJECTS = ("demo",)  # created at start with the dev provider when no project is configured
DEV_WARNING = ("WARNING: no identity provider is configured, so the bundled DEVELOPMENT OIDC provider runs (loopback "
               "only, demo users from {users}). Do not use it for real users: configure [oauth] (docs/hub.md).")


def node_modules() -> Path:
    """The checkout's ``node_modules`` (installed by ``make up`` / ``make test``)."""
    return HERE.parent / "node_modules"


def uses_dev_idp(settings: Settings) -> bool:
    return settings.oauth.provider == "dev"


def dev_users_file(settings: Settings) -> Path:
    return Path(settings.oauth.dev_users_file or DEV_USERS_FILE).expanduser()


def dev_users(settings: Settings) -> dict[str, dict]:
    """The dev provider's users (name -> password, groups...)."""
    return json.loads(dev_users_file(settings).read_text())


def idp_command(settings: Settings) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise Unavailable("Node.js is not installed: the hub's proxy and the dev identity provider need it "
                          "(install Node.js 20+, then run `make up`)")
    if not (node_modules() / "oidc-provider").exists():
        raise Unavailable(f"the npm package oidc-provider is not installed in {node_modules()}: run `make up`")
    return [node, str(HERE / "dev_idp.mjs")]


def idp_env(settings: Settings, environ: dict[str, str], client_secret: str, cookie_key: str) -> dict[str, str]:
    return {**{k: v for k, v in environ.items() if k in ("PATH", "HOME", "LANG")},
            "LOOPML_IDP_PORT": str(settings.idp_port), "LOOPML_IDP_CLIENT_ID": DEV_CLIENT_ID,
            "LOOPML_IDP_CLIENT_SECRET": client_secret,
            "LOOPML_IDP_REDIRECT_URI": f"{settings.hub_url}/hub/oauth_callback",
            "LOOPML_IDP_USERS": str(dev_users_file(settings)), "LOOPML_IDP_COOKIE_KEY": cookie_key}


def hub_command() -> list[str]:
    if not (node_modules() / ".bin" / "configurable-http-proxy").exists() and not shutil.which("configurable-http-proxy"):
        raise Unavailable(f"configurable-http-proxy is not installed in {node_modules()}: run `make up`")
    return [sys.executable, "-m", "jupyterhub", "-f", str(HERE / "jupyterhub_config.py")]


def idp_health_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.idp_port}/.well-known/openid-configuration"


def hub_health_url(settings: Settings) -> str:
    return f"{settings.hub_url}/hub/health"
