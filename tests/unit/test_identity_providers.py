"""GitHub and GitLab logins against a local fake of the provider's API (issue 14, Show 2).

oauthenticator's own code runs unchanged: ``get_authenticated_user`` (what the hub's OAuth
callback calls) exchanges the code at the fake's token endpoint, reads ``/user``,
``/user/teams`` and ``/orgs/<org>/members/<user>`` (GitHub) or the userinfo endpoint
(GitLab), applies the managed groups and admin groups, and runs ``check_allowed``. Only
the provider is fake: a tornado app on 127.0.0.1 that answers as GitHub / GitLab would.

In every table, ``myorg`` is the allowed organization, ``evilorg`` anyone's, and project
``demo`` exists (``ghost`` does not).
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from urllib.parse import parse_qs

import pytest
from oauthenticator.oauth2 import _serialize_state
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets.config import Config

from loopml.auth import User
from loopml.db import Database, migrate
from loopml.errors import InvalidInput
from loopml.hub_config.authenticator import authenticator_config
from loopml.projects import ProjectCreate, ProjectService
from loopml.settings import load_settings


def team(org: str, slug: str) -> dict[str, Any]:
    return {"slug": slug, "name": slug, "organization": {"login": org}}


# login -> (teams of /user/teams, orgs the user is a member of)
GITHUB_USERS = {
    "mallory": ([team("evilorg", "loopml-admins")], {"evilorg"}),
    "mona": ([team("MyOrg", "loopml-admins")], {"myorg"}),
    "eve": ([team("evilorg", "loopml-demo")], {"evilorg", "myorg"}),
    "alice": ([team("myorg", "loopml-demo")], {"myorg"}),
    "bob": ([team("myorg", "loopml-ghost")], {"myorg"}),
}
# nickname -> the userinfo `groups` claim (GitLab: full paths, inherited ones included)
GITLAB_USERS = {
    "mallory": ["loopml-admins"],
    "mona": ["myorg", "myorg/loopml-admins"],
    "eve": ["evilorg", "evilorg/loopml-demo", "loopml-demo"],
    "alice": ["myorg", "myorg/loopml-demo"],
    "bob": ["myorg", "myorg/loopml-ghost"],
    "deep": ["myorg", "myorg/sub", "myorg/sub/loopml-demo"],
}
# user -> (may log in, is admin, groups that must be among their hub groups, member of demo)
EXPECTED = {
    "mallory": (False, False, set(), False),
    "mona": (True, True, {"myorg{sep}loopml-admins"}, True),
    "eve": (False, False, set(), False),
    "alice": (True, False, {"myorg{sep}loopml-demo", "loopml-demo"}, True),
    "bob": (False, False, set(), False),
    "deep": (False, False, set(), False),
}


class _Fake(web.RequestHandler):
    def user(self) -> str:
        return self.request.headers.get("Authorization", "").split()[-1].removeprefix("token-")

    def token(self) -> None:  # the code is the user's name here
        code = parse_qs(self.request.body.decode())["code"][0]
        self.write({"access_token": f"token-{code}", "token_type": "bearer", "scope": "read:user,read:org"})


class GitHubToken(_Fake):
    def post(self):
        self.token()


class GitHubUser(_Fake):
    def get(self):
        self.write({"login": self.user(), "id": 1, "email": f"{self.user()}@example.org"})


class GitHubTeams(_Fake):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(GITHUB_USERS[self.user()][0]))


class GitHubOrgMember(_Fake):
    def get(self, org: str, login: str):
        member = login == self.user() and org.lower() in GITHUB_USERS[login][1]
        self.set_status(204 if member else 404)


class GitLabToken(_Fake):
    def post(self):
        self.token()


class GitLabUserinfo(_Fake):
    def get(self):
        self.write({"sub": "1", "nickname": self.user(), "groups": GITLAB_USERS[self.user()]})


APPS = {
    "github": [(r"/login/oauth/access_token", GitHubToken), (r"/api/v3/user", GitHubUser),
               (r"/api/v3/user/teams", GitHubTeams), (r"/api/v3/orgs/([^/]+)/members/([^/]+)", GitHubOrgMember)],
    "gitlab": [(r"/oauth/token", GitLabToken), (r"/oauth/userinfo", GitLabUserinfo)],
}


class Callback:
    """What oauthenticator reads of the hub's OAuth callback handler."""

    def __init__(self, code: str) -> None:
        self.code = code

    def get_argument(self, name: str, default: str | None = None) -> str | None:
        return self.code if name == "code" else default

    def get_state_cookie(self) -> str:
        return _serialize_state({"state_id": "s", "code_verifier": "v" * 43})


def settings_for(tmp_path, provider: str, url: str, **oauth):
    endpoints = {} if provider == "github" else {
        "authorize_url": f"{url}/oauth/authorize", "token_url": f"{url}/oauth/token",
        "userdata_url": f"{url}/oauth/userinfo"}
    return load_settings(data_dir=tmp_path, oauth={"provider": provider, "client_id": "id", "client_secret": "s",
                                                   "allowed_organizations": ["myorg"], **endpoints, **oauth})


def with_project_demo(settings) -> ProjectService:
    db = Database(settings.database_url)
    migrate(db.engine)
    service = ProjectService(db, group_prefix=settings.project_group_prefix)
    service.create(ProjectCreate(name="demo"))
    return service


async def log_in_all(settings, provider: str, port: int, users) -> dict[str, dict | None]:
    server = HTTPServer(web.Application(APPS[provider]))
    server.add_sockets([listening(port)])
    try:
        cls, traits = authenticator_config(settings)
        if provider == "github":
            traits = {**traits, "github_url": f"http://127.0.0.1:{port}"}
        auth = cls(config=Config({cls.__name__: traits}))
        return {user: await auth.get_authenticated_user(Callback(user), None) for user in users}
    finally:
        server.stop()


def listening(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    sock.setblocking(False)
    return sock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("provider, users", [("github", GITHUB_USERS), ("gitlab", GITLAB_USERS)])
def test_only_groups_of_allowed_organizations_grant_login_admin_and_membership(tmp_path, provider, users):
    port = free_port()
    settings = settings_for(tmp_path, provider, f"http://127.0.0.1:{port}")
    projects = with_project_demo(settings)
    demo = projects.get("demo")
    sep = ":" if provider == "github" else "/"
    logged_in = asyncio.run(log_in_all(settings, provider, port, users))
    for user in users:
        allowed, admin, groups, member = EXPECTED[user]
        model = logged_in[user]
        assert (model is not None) == allowed, f"{provider} {user}: may log in should be {allowed}: {model}"
        if model is None:
            continue
        assert bool(model["admin"]) == admin, f"{provider} {user}: admin should be {admin}"
        assert {g.format(sep=sep) for g in groups} <= set(model["groups"]), (provider, user, model["groups"])
        assert not any(g.startswith("evilorg") for g in model["groups"]), (provider, user, model["groups"])
        as_platform_sees = User(name=user, admin=bool(model["admin"]), groups=frozenset(model["groups"]))
        assert projects.is_member(as_platform_sees, demo) == member, f"{provider} {user}: member of demo"


def test_a_team_of_another_org_gives_no_group_even_to_a_member_of_the_allowed_org(tmp_path):
    port = free_port()
    settings = settings_for(tmp_path, "github", f"http://127.0.0.1:{port}", allowed_users=["eve"])
    with_project_demo(settings)
    [eve] = asyncio.run(log_in_all(settings, "github", port, ["eve"])).values()
    assert eve is not None and eve["groups"] == [] and not eve["admin"]  # let in by name, given nothing


@pytest.mark.parametrize("provider, groups, expected", [
    ("github", ["loopml-admins"], {"myorg:loopml-admins", "other:loopml-admins"}),
    ("github", ["MyOrg:ML-Admins"], {"myorg:ml-admins"}),
    ("gitlab", ["loopml-admins"], {"myorg/loopml-admins", "other/loopml-admins"}),
    ("gitlab", ["myorg", "other/sub/admins"], {"myorg", "other/sub/admins"}),
])
def test_bare_admin_groups_are_qualified_with_each_allowed_organization(tmp_path, provider, groups, expected):
    settings = load_settings(data_dir=tmp_path, oauth={
        "provider": provider, "client_id": "i", "client_secret": "s", "admin_groups": groups,
        "allowed_organizations": ["myorg", "other"], "authorize_url": "https://x/a", "token_url": "https://x/t",
        "userdata_url": "https://x/u"})
    _, traits = authenticator_config(settings)
    assert traits["admin_groups"] == expected


@pytest.mark.parametrize("provider, setting, group", [
    ("github", "admin_groups", "evilorg:loopml-admins"),
    ("github", "allowed_groups", "evilorg:staff"),
    ("gitlab", "admin_groups", "evilorg/loopml-admins"),
])
def test_a_qualified_group_of_an_unlisted_owner_is_a_readable_config_error(tmp_path, provider, setting, group):
    settings = load_settings(data_dir=tmp_path, oauth={
        "provider": provider, "client_id": "i", "client_secret": "s", setting: [group],
        "allowed_organizations": ["myorg"], "authorize_url": "https://x/a", "token_url": "https://x/t",
        "userdata_url": "https://x/u"})
    with pytest.raises(InvalidInput, match=rf"oauth\.{setting} names '{group}'.*outside oauth\.allowed_organizations"):
        authenticator_config(settings)


def test_without_allowed_organizations_github_groups_are_none_and_the_default_admin_group_is_empty(tmp_path):
    settings = load_settings(data_dir=tmp_path, oauth={"provider": "github", "client_id": "i", "client_secret": "s"})
    _, traits = authenticator_config(settings)
    assert traits["admin_groups"] == set() and traits["allowed_organizations"] == set()
    assert traits["auth_state_groups_key"]({"teams": [team("anyorg", "loopml-admins")]}) == []


def test_allowed_organizations_is_refused_for_providers_whose_groups_are_unqualified(tmp_path):
    settings = load_settings(data_dir=tmp_path, oauth={"provider": "generic", "issuer": "https://x", "client_id": "i",
                                                       "client_secret": "s", "allowed_organizations": ["myorg"]})
    with pytest.raises(InvalidInput, match="allowed_organizations is for the github and gitlab providers"):
        authenticator_config(settings, discover_endpoints=lambda issuer: {})


def test_up_refuses_a_group_of_an_unlisted_organization_before_starting_anything(tmp_path):
    from loopml.launcher import up

    settings = load_settings(data_dir=tmp_path / "home", oauth={
        "provider": "github", "client_id": "i", "client_secret": "s", "allowed_organizations": ["myorg"],
        "admin_groups": ["evilorg:loopml-admins"]})
    with pytest.raises(InvalidInput, match="oauth.admin_groups names 'evilorg:loopml-admins'"):
        up(settings)
    assert not (tmp_path / "home" / "run").exists()
