"""Hub tokens as platform users: a workspace's token (the server's own JUPYTERHUB_API_TOKEN,
its LOOPML_TOKEN) acts only in its workspace's project and never as an admin; the user's own
API tokens act in all the user's projects. A workspace left running loses its project when
its user leaves it. The hub's answers are the fake (the outer edge), shaped as JupyterHub
6's ``GET /hub/api/user`` answers them (expanded scopes)."""

from __future__ import annotations

import pytest

from loopml.db import Database, migrate
from loopml.errors import Forbidden
from loopml.projects import ProjectCreate, ProjectService, ProjectUpdate
from loopml.server.service_auth import HubTokenAuthenticator, workspace_projects

SERVICE = "access:services!service=loopml"
# a server token with c.Spawner.server_token_scopes (hub_config/config.py), as the hub expands them
WORKSPACE = ["access:servers!server=alice/demo", SERVICE, "users:activity!user=alice"]
# a token from the hub's token page: the user role's "self", expanded
OWN = ["access:servers!user=alice", SERVICE, "read:users!user=alice", "servers!user=alice", "tokens!user=alice",
       "users:activity!user=alice"]


class FakeHub:
    def __init__(self, scopes: list[str], admin: bool = False) -> None:
        self.scopes, self.admin = scopes, admin

    def identify(self, token):
        return {"kind": "user", "name": "alice", "scopes": self.scopes}

    def user(self, name):
        return {"name": name, "admin": self.admin, "groups": ["loopml-demo", "loopml-fraud"]}


@pytest.mark.parametrize("scopes, expected", [
    pytest.param(WORKSPACE, frozenset({"demo"}), id="a-workspace-token"),
    pytest.param(OWN, None, id="the-users-own-token"),
    pytest.param([SERVICE], None, id="a-token-for-the-service-only"),
    pytest.param(["access:servers", SERVICE], None, id="access-to-all-servers"),
    pytest.param(["access:servers!server=bob/fraud", SERVICE], None, id="another-users-server-grants-nothing-here"),
])
def test_workspace_projects_reads_the_server_of_the_tokens_scopes(scopes, expected):
    assert workspace_projects({"name": "alice", "scopes": scopes}) == expected


@pytest.fixture
def projects(tmp_path) -> ProjectService:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    migrate(db.engine)
    service = ProjectService(db)
    service.create(ProjectCreate(name="demo", members=["alice"]))
    service.create(ProjectCreate(name="fraud", members=["alice"]))
    return service


def authenticate(projects: ProjectService, scopes: list[str], admin: bool = False):
    return HubTokenAuthenticator(FakeHub(scopes, admin), "loopml", is_member=projects.member_now).authenticate("t")


def test_a_workspace_token_acts_in_its_project_only(projects):
    user = authenticate(projects, WORKSPACE)
    assert [p.name for p in projects.visible_to(user)] == ["demo"]
    with pytest.raises(Forbidden, match="not a member of project 'fraud'"):
        projects.require_member(user, "fraud")


def test_the_users_own_token_acts_in_all_their_projects(projects):
    user = authenticate(projects, OWN)
    assert [p.name for p in projects.visible_to(user)] == ["demo", "fraud"]


def test_an_admins_workspace_token_is_no_admin_token(projects):
    assert not authenticate(projects, WORKSPACE, admin=True).admin
    assert authenticate(projects, OWN, admin=True).admin


def test_a_running_workspaces_token_loses_its_project_when_its_user_leaves_it(projects):
    authenticator = HubTokenAuthenticator(FakeHub(WORKSPACE), "loopml", is_member=projects.member_now)
    assert [p.name for p in projects.visible_to(authenticator.authenticate("t"))] == ["demo"]
    projects.update("demo", ProjectUpdate(members=[]))
    user = authenticator.authenticate("t")  # the hub's answer is cached: the membership is not
    assert projects.visible_to(user) == []
    with pytest.raises(Forbidden, match="not a member of project 'demo'"):
        projects.require_member(user, "demo")
