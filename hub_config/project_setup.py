"""What creating a project sets up besides its row: the project's shared directory (the root
of its members' workspaces), its MLflow experiment and, with the hub, its hub group."""

from __future__ import annotations

import logging
from collections.abc import Callable

from loopml.auth import ADMIN_USER, User
from loopml.projects import Project, ProjectHooks
from loopml.settings import Settings

log = logging.getLogger(__name__)


class ProjectSetup(ProjectHooks):
    """Project hooks of the platform service. ``experiment`` creates a project's MLflow
    experiment (idempotent); ``hub`` is the :class:`~loopml.server.service_auth.HubClient`
    when the platform runs as the hub's service."""

    def __init__(self, settings: Settings, experiment: Callable[[str], object], hub=None) -> None:
        self.settings = settings
        self.experiment = experiment
        self.hub = hub

    def created(self, project: Project) -> None:
        directory = self.settings.projects_dir / project.name
        directory.mkdir(parents=True, exist_ok=True)
        self.experiment(project.name)
        if self.hub is not None:
            self.hub.ensure_group(project.group)
        log.info("project %s set up: directory %s, hub group %s", project.name, directory,
                 project.group if self.hub else "(no hub)")

    def group_members(self, group: str) -> list[str]:
        return self.hub.group_members(group) if self.hub is not None else []

    def user(self, name: str) -> User:
        """A static token's user as the settings have them (the built-in admin, ``tokens``);
        with the hub, anyone else as the hub has them now (its record is cached 30 s); a
        name the hub does not know has no groups and is not an admin."""
        static = [u for u in self.settings.tokens.values() if u.name == name]
        if static or (name == ADMIN_USER and self.settings.admin_token):
            return User(name=name, admin=name == ADMIN_USER or any(u.admin for u in static))
        record = (self.hub.user(name) if self.hub is not None else None) or {}
        return User(name=name, admin=bool(record.get("admin")), groups=frozenset(record.get("groups") or []))
