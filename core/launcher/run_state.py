"""The record of a platform instance: ``<home>/run/state.json``, its lock and its secrets.

``up`` writes the state file the moment each process starts, so ``down`` can stop it even
when ``up`` fails half way; it also keeps the settings the instance runs with (never a
secret: only the names of the secret settings that were set), the components' URLs and the
variables a Ray driver sets to connect. ``secrets.json`` (0600) keeps the generated secrets
(admin token, the dev identity provider's client secret and cookie key).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError

from loopml.errors import Conflict, InvalidInput
from loopml.hub_config import launch as hub_launch
from loopml.instance import make_private_dir, stored_secret, write_private
from loopml.launcher.processes import ProcessRecord
from loopml.launcher.ray_local import TEMP_LEAF, TEMP_PREFIX, driver_env, ray_auth_headers
from loopml.settings import Settings

STATE_FILE = Path("run") / "state.json"
LOCK_FILE = Path("run") / "up.lock"
COMPONENTS = ("ray", "mlflow", "platform")  # headless (--no-hub)
HUB_COMPONENTS = ("ray", "mlflow", "idp", "hub")  # the hub starts the platform service as its service
START_ORDER = ("ray", "mlflow", "platform", "idp", "hub")
SECRET_SETTINGS = ("admin_token", "tokens")
SECRET_FIELDS: dict = {"admin_token": True, "tokens": True, "oauth": {"client_secret": True}}
URL_SETTINGS = ("db_url", "mlflow_uri", "mlflow_backend_uri", "ray_dashboard_url")  # secret when they carry a password


class RunState(BaseModel):
    """Contents of ``<home>/run/state.json``."""

    settings: dict[str, Any] = Field(default_factory=dict,
                                     description="Settings the instance runs with, secrets left out.")
    secret_settings: list[str] = Field(default_factory=list,
                                       description="Names of the secret settings that were set (not their values).")
    urls: dict[str, str | None] = Field(default_factory=dict)
    external: list[str] = Field(default_factory=list, description="Components given by address, not started.")
    components: list[str] = Field(default_factory=lambda: list(COMPONENTS),
                                  description="The components of this instance (headless or with the hub).")
    ray_env: dict[str, str] = Field(default_factory=dict, description="Variables a Ray driver sets to connect.")
    processes: list[ProcessRecord] = Field(default_factory=list)


def read_state(home: Path) -> RunState | None:
    path = home / STATE_FILE
    if not path.exists():
        return None
    try:
        return RunState.model_validate_json(path.read_text())
    except ValidationError:
        raise InvalidInput(f"{path} is not a loopml state file; stop its processes by hand and remove it") from None


def write_state(home: Path, state: RunState) -> None:
    make_private_dir(home / STATE_FILE.parent)
    write_private(home / STATE_FILE, state.model_dump_json(indent=2))


def put_record(state: RunState, record: ProcessRecord) -> None:
    """Record ``record`` in place of any of the same name; components in start order, worker
    nodes after them (``down`` stops them newest first)."""
    state.processes = [r for r in state.processes if r.name != record.name] + [record]
    state.processes.sort(key=lambda r: START_ORDER.index(r.name) if r.name in START_ORDER else len(START_ORDER))


@contextlib.contextmanager
def up_lock(home: Path) -> Iterator[None]:
    make_private_dir(home / LOCK_FILE.parent)
    with (home / LOCK_FILE).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(f"another `loopml up` is starting the platform in {home}") from None
        yield


# what ``secure_modes`` makes owner-only: these folders (0700) and every file directly in them
# and in the data dir itself (0600): secrets.json, client.json, config.toml, the DBs (with their
# -wal/-shm/-journal), ray/auth_token, the hub's cookie secret and DB, the state file, logs.
PRIVATE_DIRS = (".", "run", "ray", "hub", "logs", "mlflow")


def secure_modes(home: Path) -> None:
    """Give the data dir ``home`` and its secret files their modes, whatever they were: a data
    dir made by an older version, copied or loosened by hand must not stay readable by others.

    Symlinks are left alone (``chmod`` would follow them out of the data dir); project
    folders and the MLflow artifact tree keep their modes (the data dir's 0700 closes them).
    """
    for name in PRIVATE_DIRS:
        folder = home / name
        if folder.is_symlink() or not folder.is_dir():
            continue
        folder.chmod(0o700)
        for entry in folder.iterdir():
            if entry.is_file() and not entry.is_symlink():
                entry.chmod(0o600)


def secret_settings(settings: Settings) -> set[str]:
    return {*SECRET_SETTINGS, *(name for name in URL_SETTINGS
                                if getattr(settings, name) and urlsplit(getattr(settings, name)).password)}


def components_of(settings: Settings) -> tuple[str, ...]:
    """The processes ``up`` runs for ``settings``: headless, or with the hub (and the dev
    identity provider unless one is configured)."""
    if not settings.hub:
        return COMPONENTS
    return tuple(name for name in HUB_COMPONENTS if name != "idp" or hub_launch.uses_dev_idp(settings))


def new_state(settings: Settings) -> RunState:
    """The state of an instance about to start with ``settings``, no process yet."""
    secret = secret_settings(settings)
    external = [name for name, given in (("ray", settings.ray_address), ("mlflow", settings.mlflow_uri)) if given]
    exclude = {**{name: True for name in secret}, **SECRET_FIELDS}
    return RunState(
        components=list(components_of(settings)),
        settings={**settings.model_dump(mode="json", exclude=exclude), "data_dir": str(settings.home)},
        secret_settings=sorted(name for name in secret if getattr(settings, name)),
        urls=urls(settings), external=external,
        ray_env=driver_env(settings.home, os.environ, own_cluster="ray" not in external),
    )


def running_settings(state: RunState, given: Settings, step: Callable[[str], None]) -> Settings:
    """The settings to restart components of a running instance with: the recorded ones, with
    this invocation's secrets. Raises :class:`Conflict` when a secret set then is not now."""
    home = given.home
    if not state.settings:
        raise Conflict(f"loopml is already running from {home} (started by an older loopml); "
                       "run `loopml down` first")
    missing = [f"LOOPML_{name.upper()}" for name in state.secret_settings if not getattr(given, name)]
    if missing:
        raise Conflict(f"loopml runs from {home} with {', '.join(missing)} set; set the same again (flag, "
                       "environment or config.toml) to restart what stopped, or run `loopml down` first")
    ours = given.model_dump(mode="json", exclude={"oauth": {"client_secret"}})
    differ = sorted(name for name, value in state.settings.items() if name != "data_dir" and ours.get(name) != value)
    if differ:
        step(f"keeping the settings loopml runs with ({', '.join(differ)} differ); "
             "run `loopml down` first to change them")
    merged = {**ours, **state.settings, "data_dir": str(home)}
    if given.oauth.client_secret:
        merged["oauth"] = {**merged.get("oauth", {}), "client_secret": given.oauth.client_secret}
    return Settings.model_validate(merged)


def resolve_admin_token(settings: Settings) -> str:
    """``settings.admin_token``, else the one in ``secrets.json``, generated there on first use."""
    return settings.admin_token or stored_secret(settings.home, "admin_token")


def urls(settings: Settings) -> dict[str, str | None]:
    dashboard = None if settings.ray_address else f"http://127.0.0.1:{settings.ray_dashboard_port}"
    hub = {"hub": settings.hub_url, "idp": f"http://127.0.0.1:{settings.idp_port}"} if settings.hub else {}
    return {
        **hub,
        "platform": settings.url,
        "ray": dashboard,
        "ray_address": settings.ray_address or f"127.0.0.1:{settings.ray_port}",
        "mlflow": settings.tracking_uri,
    }


def ray_headers(state: RunState) -> dict[str, str]:
    return ray_auth_headers({**os.environ, **state.ray_env})


def node_temp_dir(cmdline: list[str]) -> Path | None:
    """The temp dir (sessions, sockets, logs) of the Ray node started with ``cmdline``."""
    return next((Path(arg.removeprefix("--temp-dir=")) for arg in cmdline if arg.startswith("--temp-dir=")), None)


def remove_ray_temp_dir(record: ProcessRecord) -> None:
    """Remove the temp dir a stopped Ray node of ours used."""
    path = node_temp_dir(record.cmdline)
    if path is None:
        return
    if path.name == TEMP_LEAF and path.parent.name.startswith(TEMP_PREFIX):  # only the short dirs we derive
        shutil.rmtree(path.parent, ignore_errors=True)
    elif path.name.startswith(TEMP_PREFIX):  # as an earlier version derived them
        shutil.rmtree(path, ignore_errors=True)
