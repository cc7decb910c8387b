"""Who may log in to the hub, and as whom: oauthenticator configured from :class:`OAuthSettings`.

Every provider but GitHub speaks OpenID Connect and is configured the same way, through
:class:`LoopmlOIDCAuthenticator` (oauthenticator's ``GenericOAuthenticator``): its
endpoints come from ``<issuer>/.well-known/openid-configuration`` unless given. The
presets only fill in the issuer and the username claim:

==========  ==========================================  ===================  ==============
provider    issuer (default)                            username claim       groups from
==========  ==========================================  ===================  ==============
dev         the bundled provider, http://127.0.0.1:P    preferred_username   ``groups``
generic     ``oauth.issuer``                            (configured)         ``groups``
keycloak    ``oauth.issuer`` = <server>/realms/<realm>  preferred_username   ``groups`` (a
                                                                             group-membership
                                                                             mapper)
gitlab      https://gitlab.com                          nickname             ``groups`` (full
                                                                             paths)
google      https://accounts.google.com                 email                none: admins add
                                                                             members
github      (OAuth 2, not OIDC)                         login                ``org:team``
==========  ==========================================  ===================  ==============

On GitHub and GitLab a group counts only when ``oauth.allowed_organizations`` names its
owner (:mod:`loopml.hub_config.identity`); ``admin_groups`` and ``allowed_groups`` are
matched exactly on those qualified names.

Who may log in: hub admins (``admin_users``, ``admin_groups``), ``allowed_users``,
members of ``allowed_groups``, and members of the project group (``<prefix><project>``) of
a project that exists in the platform DB. On GitHub the last must also be members of an
allowed organization, as GitHub answers oauthenticator's ``allowed_organizations`` check.
The user's groups replace their hub groups at every login (``manage_groups``).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import httpx
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from traitlets import HasTraits, Unicode

from loopml.auth import User
from loopml.errors import InvalidInput, LoopMLError, Unavailable
from loopml.hub_config.identity import GroupPolicy, claim_groups, github_groups
from loopml.hub_config.spawner import HubProjects, refuse
from loopml.settings import Settings

ISSUERS = {"gitlab": "https://gitlab.com", "google": "https://accounts.google.com"}
USERNAME_CLAIMS = {"gitlab": "nickname", "google": "email"}
DISCOVERY_TIMEOUT_S = 10.0


@functools.cache
def _projects(database_url: str, group_prefix: str) -> HubProjects:
    return HubProjects(database_url, group_prefix)


class _ProjectGroupsAllowed(HasTraits):
    """Mixin: members of the project group of an existing project may log in too."""

    project_group_prefix = Unicode("loopml-", config=True, help="Hub group of project P: <prefix>P.")
    database_url = Unicode("", config=True, help="The platform DB: its projects' groups admit a login.")

    async def in_project_group(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        """Whether the user's groups hold the group of a project that exists now."""
        groups = set((auth_model or {}).get("groups") or [])
        if not groups or not self.database_url:
            return False
        source = _projects(self.database_url, self.project_group_prefix)
        try:
            projects = await asyncio.to_thread(source.service.visible_to, User(name=username, admin=True))
        except LoopMLError as exc:
            raise refuse(503, f"cannot read the platform's projects to check {username}'s groups ({exc}): "
                              "try again in a moment") from None
        return any(project.group in groups for project in projects)

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        if await super().check_allowed(username, auth_model):
            return True
        return await self.in_project_group(username, auth_model)


class LoopmlOIDCAuthenticator(_ProjectGroupsAllowed, GenericOAuthenticator):
    """GenericOAuthenticator (any OIDC provider) that also lets project members in."""


class LoopmlGitHubAuthenticator(_ProjectGroupsAllowed, GitHubOAuthenticator):
    """GitHubOAuthenticator whose groups are ``org:team`` of the allowed organizations."""

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        # GitHubOAuthenticator admits admins, allowed_users, allowed_groups and (asking GitHub)
        # every member of allowed_organizations; of those members, only project members pass
        if not await GitHubOAuthenticator.check_allowed(self, username, auth_model):
            return False
        model = auth_model or {}
        if model.get("admin") or username in self.allowed_users or set(model.get("groups") or []) & self.allowed_groups:
            return True
        return await self.in_project_group(username, auth_model)


def dev_issuer(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.idp_port}"


def discover(issuer: str) -> dict[str, str]:
    """The endpoints of an OIDC provider, from its discovery document."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        document = httpx.get(url, timeout=DISCOVERY_TIMEOUT_S).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Unavailable(f"cannot read the OIDC discovery document {url} ({exc}): check oauth.issuer, or set "
                          "oauth.authorize_url, oauth.token_url and oauth.userdata_url") from None
    return {"authorize_url": document["authorization_endpoint"], "token_url": document["token_endpoint"],
            "userdata_url": document["userinfo_endpoint"]}


def authenticator_config(settings: Settings, *, discover_endpoints=discover) -> tuple[type, dict[str, Any]]:
    """The authenticator class for ``settings.oauth`` and the traits to set on it.

    Raises :class:`InvalidInput` naming the missing setting (client id/secret outside dev
    mode, an issuer for generic and keycloak), or a group outside ``allowed_organizations``.
    """
    oauth = settings.oauth
    callback = f"{settings.hub_url}/hub/oauth_callback"
    missing = [f"oauth.{name}" for name in ("client_id", "client_secret") if not getattr(oauth, name)]
    if missing:
        raise InvalidInput(f"{' and '.join(missing)} must be set for the {oauth.provider!r} identity provider "
                           "(config.toml [oauth] or LOOPML_OAUTH__CLIENT_ID / LOOPML_OAUTH__CLIENT_SECRET)")
    policy = GroupPolicy.of(oauth.provider, oauth.allowed_organizations, settings.project_group_prefix)
    traits: dict[str, Any] = {
        "client_id": oauth.client_id, "client_secret": oauth.client_secret, "oauth_callback_url": callback,
        "allowed_users": set(oauth.allowed_users), "admin_users": set(oauth.admin_users), "manage_groups": True,
        "allowed_groups": policy.configured("allowed_groups", oauth.allowed_groups),
        "admin_groups": policy.configured("admin_groups", oauth.admin_groups),
        "project_group_prefix": settings.project_group_prefix, "database_url": settings.database_url,
        "enable_auth_state": False,
    }
    if oauth.provider == "github":
        # a user's teams (GitHub's /user/teams) are the groups: listing them needs the read:org scope
        return LoopmlGitHubAuthenticator, {
            **traits, "populate_teams_in_auth_state": True, "allowed_organizations": set(policy.organizations),
            "auth_state_groups_key": functools.partial(github_groups, policy), "scope": ["read:user", "read:org"]}
    issuer = dev_issuer(settings) if oauth.provider == "dev" else oauth.issuer or ISSUERS.get(oauth.provider)
    urls = {"authorize_url": oauth.authorize_url, "token_url": oauth.token_url, "userdata_url": oauth.userdata_url}
    if oauth.provider == "dev":
        urls = {"authorize_url": f"{issuer}/auth", "token_url": f"{issuer}/token", "userdata_url": f"{issuer}/me"}
    elif not all(urls.values()):
        if not issuer:
            raise InvalidInput(f"oauth.issuer must be set for the {oauth.provider!r} identity provider (or all of "
                               "oauth.authorize_url, oauth.token_url and oauth.userdata_url)")
        urls = {**discover_endpoints(issuer), **{k: v for k, v in urls.items() if v}}
    username_claim = oauth.username_claim
    if oauth.provider in USERNAME_CLAIMS and "username_claim" not in oauth.model_fields_set:
        username_claim = USERNAME_CLAIMS[oauth.provider]
    return LoopmlOIDCAuthenticator, {
        **traits, **urls, "scope": list(oauth.scope), "username_claim": username_claim,
        "auth_state_groups_key": (functools.partial(claim_groups, policy, oauth.groups_claim) if policy.qualified
                                  else f"oauth_user.{oauth.groups_claim}"),
        "login_service": _login_service(oauth.provider),
    }


def _login_service(provider: str) -> str:
    return {"dev": "the loopml dev provider", "generic": "your identity provider"}.get(provider, provider.title())
