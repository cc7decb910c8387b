"""The hub's configuration: identity provider presets, the service and roles, project groups."""

from __future__ import annotations

import asyncio

import pytest
from traitlets.config import Config

from loopml.auth import User
from loopml.db import Database, migrate
from loopml.errors import InvalidInput
from loopml.hub_config.authenticator import (
    LoopmlGitHubAuthenticator,
    LoopmlOIDCAuthenticator,
    authenticator_config,
)
from loopml.hub_config.config import configure, service_environment
from loopml.projects import ProjectCreate, ProjectService
from loopml.settings import load_settings

DISCOVERED = {"authorize_url": "https://idp/authorize", "token_url": "https://idp/token",
              "userdata_url": "https://idp/userinfo"}


def settings_with(tmp_path, **oauth):
    return load_settings(data_dir=tmp_path, hub_port=18000, oauth={"client_id": "id", "client_secret": "s", **oauth})


def discover(issuer: str) -> dict[str, str]:
    discover.asked = issuer
    return DISCOVERED


@pytest.mark.parametrize("provider, issuer, username_claim", [
    pytest.param("generic", "https://login.example.org", "preferred_username", id="generic"),
    pytest.param("keycloak", "https://kc.example.org/realms/ml", "preferred_username", id="keycloak"),
    pytest.param("gitlab", "https://gitlab.com", "nickname", id="gitlab"),
    pytest.param("google", "https://accounts.google.com", "email", id="google"),
])
def test_oidc_presets_discover_their_endpoints_and_pick_the_username_claim(tmp_path, provider, issuer, username_claim):
    given = {"issuer": issuer} if provider in ("generic", "keycloak") else {}
    cls, traits = authenticator_config(settings_with(tmp_path, provider=provider, **given), discover_endpoints=discover)
    assert cls is LoopmlOIDCAuthenticator and discover.asked == issuer
    assert {k: traits[k] for k in DISCOVERED} == DISCOVERED
    assert traits["username_claim"] == username_claim and traits["manage_groups"]
    assert traits["oauth_callback_url"] == "http://127.0.0.1:18000/hub/oauth_callback"
    cls(config=Config({cls.__name__: traits}))  # every trait exists and validates


def test_the_dev_provider_uses_its_fixed_endpoints_and_the_groups_claim(tmp_path):
    settings = load_settings(data_dir=tmp_path, idp_port=18003, oauth={"client_id": "hub", "client_secret": "x"})
    cls, traits = authenticator_config(settings, discover_endpoints=None)
    assert traits["authorize_url"] == "http://127.0.0.1:18003/auth" and traits["userdata_url"].endswith("/me")
    assert traits["auth_state_groups_key"] == "oauth_user.groups" and traits["admin_groups"] == {"loopml-admins"}


def test_github_groups_are_org_team_of_the_allowed_organizations(tmp_path):
    cls, traits = authenticator_config(settings_with(tmp_path, provider="github", allowed_organizations=["MyOrg"]))
    assert cls is LoopmlGitHubAuthenticator and traits["populate_teams_in_auth_state"]
    assert "read:org" in traits["scope"] and traits["allowed_organizations"] == {"myorg"}
    assert traits["admin_groups"] == {"myorg:loopml-admins"}  # the default, qualified
    teams = [{"slug": "loopml-iris", "organization": {"login": "MyOrg"}}, {"name": "x"},
             {"slug": "loopml-iris", "organization": {"login": "evilorg"}}, {"slug": "loopml-admins"}]
    assert traits["auth_state_groups_key"]({"teams": teams}) == ["loopml-iris", "myorg:loopml-iris"]
    cls(config=Config({cls.__name__: traits}))


def test_gitlab_groups_are_full_paths_under_the_allowed_organizations(tmp_path):
    cls, traits = authenticator_config(settings_with(tmp_path, provider="gitlab", allowed_organizations=["myorg"]),
                                       discover_endpoints=discover)
    claim = ["loopml-iris", "myorg", "myorg/loopml-iris", "myorg/sub/loopml-x", "evil/loopml-iris", "MyOrg/Team"]
    assert traits["auth_state_groups_key"]({"oauth_user": {"groups": claim}}) == [
        "loopml-iris", "myorg", "myorg/loopml-iris", "myorg/sub/loopml-x", "myorg/team"]
    assert traits["admin_groups"] == {"myorg/loopml-admins"}


@pytest.mark.parametrize("oauth, named", [
    pytest.param({"provider": "generic", "client_id": "i", "client_secret": "s"}, "oauth.issuer", id="no-issuer"),
    pytest.param({"provider": "github", "client_secret": "s"}, "oauth.client_id", id="no-client-id"),
    pytest.param({"provider": "keycloak", "client_id": "i"}, "oauth.client_secret", id="no-secret"),
])
def test_missing_provider_settings_are_named(tmp_path, oauth, named):
    with pytest.raises(InvalidInput, match=named):
        authenticator_config(load_settings(data_dir=tmp_path, oauth=oauth))


def test_members_of_the_group_of_an_existing_project_may_log_in_and_others_may_not(tmp_path):
    settings = settings_with(tmp_path, provider="generic", issuer="https://x")
    db = Database(settings.database_url)
    migrate(db.engine)
    ProjectService(db).create(ProjectCreate(name="iris"))
    cls, traits = authenticator_config(settings, discover_endpoints=discover)
    auth = cls(config=Config({cls.__name__: traits}))

    def allowed(name: str, *groups: str) -> bool:
        return asyncio.run(auth.check_allowed(name, {"name": name, "admin": False, "groups": list(groups)}))

    assert allowed("alice", "loopml-iris")
    assert not allowed("mallory", "staff") and not allowed("bob", "loopml-ghost")  # no project ghost


def test_the_hub_runs_the_platform_as_its_service_with_the_settings_and_least_scopes(tmp_path):
    settings = load_settings(data_dir=tmp_path, port=18899, hub_port=18800, idp_port=18803,
                             oauth={"client_id": "hub", "client_secret": "x"})
    c = Config()
    configure(c, settings)
    [service] = c.JupyterHub.services
    assert service["name"] == "loopml" and service["url"] == "http://127.0.0.1:18899"
    assert service["environment"]["LOOPML_BASE_URL"] == "/services/loopml/"
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    assert "access:services!service=loopml" in roles["user"]["scopes"]
    assert "admin:users" not in roles["loopml-service"]["scopes"]
    assert "access:services!service=loopml" in c.Spawner.server_token_scopes
    assert c.JupyterHub.bind_url == "http://127.0.0.1:18800/" and c.JupyterHub.allow_named_servers
    assert c.LoopmlSpawnerMixin.platform_url == "http://127.0.0.1:18800/services/loopml"


def test_the_service_never_gets_the_hubs_oauth_secret():
    env = service_environment(load_settings(), {"LOOPML_OAUTH__CLIENT_SECRET": "s3cret", "LOOPML_PORT": "1",
                                                "RAY_AUTH_MODE": "token", "AWS_SECRET_ACCESS_KEY": "x"})
    assert "LOOPML_OAUTH__CLIENT_SECRET" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["LOOPML_PORT"] == "1" and env["RAY_AUTH_MODE"] == "token"


def test_project_membership_comes_from_admins_or_the_project_group(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    migrate(db.engine)
    service = ProjectService(db, group_prefix="loopml-")
    service.create(ProjectCreate(name="iris", members=["dave"]))
    assert [p.name for p in service.visible_to(User("alice", groups=frozenset({"loopml-iris"})))] == ["iris"]
    assert [p.name for p in service.visible_to(User("dave"))] == ["iris"]
    assert service.visible_to(User("eve", groups=frozenset({"loopml-other", "iris"}))) == []
    assert [p.name for p in service.visible_to(User("root", admin=True))] == ["iris"]
    assert service.get("iris").group == "loopml-iris"
