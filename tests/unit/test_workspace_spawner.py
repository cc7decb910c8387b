"""A sandboxed workspace's environment: the workspace's variables and JupyterHub's, nothing
of the hub's own (no RAY_*, no LOOPML_* setting, not its PATH or home); the server runs under
bubblewrap with the project's directory bound and the data dir hidden."""

from __future__ import annotations

import os
import sys

import pytest
from jupyterhub.objects import Hub

from loopml.hub_config.spawner import ProjectSpawner


class HubUser:
    name, admin, url, groups = "bob", False, "/user/bob/", []

    def __init__(self) -> None:
        self.spawners = {}


def spawner(isolation: str) -> ProjectSpawner:
    made = ProjectSpawner(user=HubUser(), hub=Hub(), api_token="workspace-token", oauth_client_id="jupyterhub-user-bob",
                          projects_dir="/data/projects", platform_url="http://127.0.0.1:1/services/loopml",
                          data_dir="/data", isolation=isolation, env_keep=["PATH", "PYTHONPATH", "RAY_ADDRESS"])
    made.notebook_dir = "/data/projects/demo"
    return made


@pytest.fixture(autouse=True)
def hub_environment(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv("PYTHONPATH", "/data/hub-only")
    monkeypatch.setenv("LOOPML_ADMIN_TOKEN", "platform-secret")


def test_a_sandboxed_workspace_gets_its_own_variables_and_jupyterhubs_only():
    env = spawner("bwrap").get_env()
    assert env["LOOPML_TOKEN"] == env["JUPYTERHUB_API_TOKEN"] == "workspace-token"
    assert env["HOME"] == "/tmp" and env["PATH"].split(":")[0] == os.path.dirname(sys.executable)
    assert not [k for k in env if k.startswith("RAY_") or k in ("PYTHONPATH", "LOOPML_ADMIN_TOKEN")], sorted(env)
    assert "platform-secret" not in env.values()
    assert {k for k in env if k.startswith("LOOPML_")} <= {"LOOPML_PROJECT", "LOOPML_URL", "LOOPML_TOKEN",
                                                           "LOOPML_HUB_INSTANCE"}


def test_with_isolation_off_the_workspace_keeps_jupyterhubs_environment():
    env = spawner("off").get_env()
    assert env["RAY_ADDRESS"] == "127.0.0.1:6379" and env["HOME"] != "/tmp"
