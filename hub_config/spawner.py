"""Project workspaces: one named server per project, ``/user/<user>/<project>/``.

:class:`LoopmlSpawnerMixin` holds the workspace rules and composes with any JupyterHub
spawner (``hub_spawner_class`` chooses it, :func:`spawner_class` builds the composition);
:class:`ProjectSpawner` is the mixin on the default ``SimpleLocalProcessSpawner``. A workspace
is JupyterLab (``jupyterhub-singleuser``) in the project's shared directory (with a local
process spawner ``<home>/projects/<project>``), with the environment that makes the CLI, the
Python client and the magics work with no setup:

- ``LOOPML_PROJECT``: the project (the default ``-P`` of every command),
- ``LOOPML_URL``: the platform service, through the hub's proxy,
- ``LOOPML_TOKEN``: the workspace's own hub token (the same as ``JUPYTERHUB_API_TOKEN``),
  which may access the platform service, in this project only (see
  :func:`loopml.server.service_auth.workspace_projects`), and nothing else of the hub.

A server without a name, or for a project the user is not a member of, is refused before
anything starts, with a page that says why.

With a local process spawner and ``job_isolation = "bwrap"`` (the default) the server and its
kernels run in a sandbox (:mod:`loopml.sandbox`): they see the project's directory (read-write), the Python
environment and the OS read-only, a private ``/tmp`` (also ``$HOME``) and their own processes
only; nothing else of the data dir (no ``secrets.json``, no other project's directory), and
only the environment above and the hub's ``JUPYTERHUB_*`` variables, never the hub's own
(no ``RAY_*``, no ``LOOPML_*`` setting). Stopping the server ends the sandbox and all it
started. With ``"off"`` the server runs as the hub's OS user with the hub's file access. Other
spawners (KubeSpawner) isolate the server themselves: its container.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from importlib.metadata import entry_points
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner, Spawner
from tornado import web
from traitlets import Unicode
from traitlets.config import Configurable

from loopml import sandbox
from loopml.auth import User
from loopml.db import Database
from loopml.errors import InvalidInput, LoopMLError, NotFound
from loopml.instance import MARKER
from loopml.names import check_name
from loopml.projects import Project, ProjectService
from loopml.registry import mlflow_auth
from loopml.settings import Settings

log = logging.getLogger(__name__)


def refuse(status: int, message: str) -> web.HTTPError:
    """An HTTPError whose message the hub's error page shows (not only its log)."""
    error = web.HTTPError(status, message)
    error.jupyterhub_message = message
    return error


class HubProjects:
    """The platform's projects as the hub sees them (read from the platform DB)."""

    def __init__(self, database_url: str, group_prefix: str) -> None:
        self.service = ProjectService(Database(database_url), group_prefix=group_prefix)

    @staticmethod
    def as_user(hub_user: Any) -> User:
        groups = frozenset(getattr(g, "name", g) for g in getattr(hub_user, "groups", None) or [])
        return User(name=hub_user.name, admin=bool(getattr(hub_user, "admin", False)), groups=groups)

    def for_user(self, hub_user: Any) -> list[Project]:
        """The projects the hub user may open (members; admins see all)."""
        return self.service.visible_to(self.as_user(hub_user))

    def for_template(self, hub_user: Any) -> list[dict[str, Any]]:
        """The home page's project list: name, whether its workspace runs, its URLs."""
        if hub_user is None:
            return []
        try:
            projects = self.for_user(hub_user)
        except Exception as exc:  # noqa: BLE001 - the page must render; the log says why
            log.warning("cannot list the projects of %s: %s", hub_user.name, exc)
            return []
        spawners = getattr(hub_user, "spawners", {}) or {}
        rows = []
        for project in projects:
            spawner = spawners.get(project.name)
            rows.append({"name": project.name, "running": bool(spawner and spawner.active),
                         "open_url": f"spawn/{hub_user.name}/{project.name}",
                         "member": project.name in project.members or project.group in self.as_user(hub_user).groups})
        return rows

    def check_member(self, hub_user: Any, project: str) -> Project:
        """The project, if the hub user may open its workspace; else a 4xx naming why."""
        try:
            check_name("project", project)
            found = self.service.get(project)
        except InvalidInput as exc:
            raise refuse(400, f"{exc} (a workspace is named after its project)") from None
        except NotFound:
            raise refuse(404, f"there is no project {project!r}: open a project listed on the home page") from None
        except LoopMLError as exc:
            raise refuse(503, str(exc)) from None
        if not self.service.is_member(self.as_user(hub_user), found):
            raise refuse(403, f"{hub_user.name} is not a member of project {project!r}, so its workspace "
                                     "cannot be opened: ask a platform admin to add you")
        return found


@functools.cache
def _projects(database_url: str, group_prefix: str) -> HubProjects:
    return HubProjects(database_url, group_prefix)


def hub_projects(settings: Settings) -> HubProjects:
    """The (one per DB) :class:`HubProjects` of ``settings``."""
    return _projects(settings.database_url, settings.project_group_prefix)


def template_projects(database_url: str, group_prefix: str, hub_user: Any) -> list[dict[str, Any]]:
    """The home page's project list (a plain function: JupyterHub deep-copies its config)."""
    return _projects(database_url, group_prefix).for_template(hub_user)


SPAWNER_ENTRY_POINTS = "jupyterhub.spawners"


class LoopmlSpawnerMixin(Configurable):
    """The workspace rules, for any JupyterHub spawner: put it first, ``class S(LoopmlSpawnerMixin,
    KubeSpawner)``. Only members of the project a server is named after may start it; the
    server gets the project's environment; with a local process spawner it runs in the
    project's directory, sandboxed unless ``isolation`` is ``"off"``."""

    projects_dir = Unicode(config=True, help="Directory holding each project's shared directory.")
    platform_url = Unicode(config=True, help="The platform service's URL as workspaces reach it.")
    database_url = Unicode(config=True, help="The platform DB (project membership is read from it).")
    group_prefix = Unicode("loopml-", config=True, help="Hub group of project P: <prefix>P.")
    data_dir = Unicode(config=True, help="The instance's data dir: a sandboxed workspace sees none of it but "
                                         "its project's directory.")
    isolation = Unicode("bwrap", config=True, help='"bwrap": run the server sandboxed; "off": as the hub\'s user.')

    # what a sandboxed server keeps of the environment JupyterHub builds (the rest is the
    # hub's own: PATH, PYTHONPATH, VIRTUAL_ENV, its home)
    SANDBOX_ENV_PREFIXES = ("JUPYTERHUB_", "JPY_")
    SANDBOX_ENV_KEEP = ("LOOPML_PROJECT", "LOOPML_URL", "LOOPML_TOKEN", "USER", "LANG", "LC_ALL", MARKER)
    SANDBOX_HOME = "/tmp"  # private to the sandbox: nothing a member leaves there reaches another member

    @property
    def sandboxed(self) -> bool:
        """Whether the server runs in loopml's sandbox: a local process, unless isolation is off
        (another spawner's server is isolated by what it runs in, e.g. its container)."""
        return self.isolation != "off" and isinstance(self, LocalProcessSpawner)

    async def start(self):
        if not self.name:
            raise refuse(400, "workspaces belong to projects: open one from the project list on the hub "
                                     "home page (/hub/home)")
        _projects(self.database_url, self.group_prefix).check_member(self.user, self.name)
        if isinstance(self, LocalProcessSpawner):  # elsewhere the project's directory is mounted (notebook_dir)
            self.notebook_dir = f"{self.projects_dir}/{self.name}"
        if not self.sandboxed:
            return await super().start()
        problem = sandbox.check()
        if problem:
            raise refuse(503, f"workspaces cannot be sandboxed on this machine: {problem}")
        # LocalProcessSpawner runs self.cmd + get_args(): the args go to the program inside
        command = list(self.cmd)
        self.cmd = sandbox.wrap(command, workdir=self.notebook_dir, hide=sandbox.hidden_paths(self.data_dir))
        try:
            return await super().start()
        finally:
            self.cmd = command

    def get_env(self):
        env = super().get_env()
        env.update(LOOPML_PROJECT=self.name, LOOPML_URL=self.platform_url, LOOPML_TOKEN=self.api_token)
        mlflow = mlflow_auth.workspace_env(self.data_dir, self.name)  # the project's MLflow user, if auth is on
        env.update(mlflow)
        if MARKER in os.environ:  # so `loopml down` finds the workspace even if the hub died
            env[MARKER] = os.environ[MARKER]
        if not self.sandboxed:
            return env
        kept = {**{k: v for k, v in env.items() if k.startswith(self.SANDBOX_ENV_PREFIXES) or k in self.SANDBOX_ENV_KEEP},
                **mlflow}
        return {**sandbox.environment(kept, self.notebook_dir), "HOME": self.SANDBOX_HOME, "SHELL": "/bin/bash",
                "IPYTHONDIR": f"{self.SANDBOX_HOME}/.ipython"}


class ProjectSpawner(LoopmlSpawnerMixin, SimpleLocalProcessSpawner):
    """A project workspace on the local machine: JupyterLab rooted in the project's shared directory."""


def spawner_base(name: str) -> type[Spawner]:
    """The JupyterHub spawner class ``name`` names: an entry point of the ``jupyterhub.spawners``
    group (``simple``, ``localprocess``, ``kubespawner``…) or an import path (``module.Class``
    or ``module:Class``). Raises :class:`InvalidInput` naming what exists for a name that
    resolves to no spawner."""
    found = {point.name: point for point in entry_points(group=SPAWNER_ENTRY_POINTS)}
    if name in found:
        base = found[name].load()
    else:
        module, sep, attr = name.replace(":", ".").rpartition(".")
        if not sep:
            raise InvalidInput(f"unknown hub_spawner_class {name!r}: use one of {', '.join(sorted(found))} (the "
                               f"{SPAWNER_ENTRY_POINTS} entry points) or an import path like "
                               "kubespawner.KubeSpawner", field="hub_spawner_class")
        try:
            base = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise InvalidInput(f"hub_spawner_class {name!r} cannot be imported ({exc}): install its package, or "
                               f"use one of {', '.join(sorted(found))}", field="hub_spawner_class") from None
    if not (isinstance(base, type) and issubclass(base, Spawner)):
        raise InvalidInput(f"hub_spawner_class {name!r} is not a JupyterHub Spawner class", field="hub_spawner_class")
    return base


@functools.cache
def spawner_class(base: type[Spawner]) -> type[Spawner]:
    """``base`` with loopml's workspace rules: ``LoopmlSpawnerMixin`` first (one class per base)."""
    if issubclass(base, LoopmlSpawnerMixin):
        return base
    return type("LoopmlSpawner", (LoopmlSpawnerMixin, base), {"__module__": __name__})
