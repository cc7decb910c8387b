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
gitlab      https://gitlab.com                          nickname             ``groups``
google      https://accounts.google.com                 email                none: admins add
                                                                             members
github      (OAuth 2, not OIDC)                         login                team slugs
==========  ==========================================  ===================  ==============

Who may log in: hub admins (``admin_users``, ``admin_groups``), ``allowed_users``,
members of ``allowed_groups``, and members of any project group (``<prefix><project>``).
The provider's groups replace the user's hub groups at every login (``manage_groups``).
"""

from __future__ import annotations

from typing import Any

import httpx
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from traitlets import HasTraits, Unicode

from loopml.errors import InvalidInput, Unavailable
from loopml.settings import Settings

ISSUERS = {"gitlab": "https://gitlab.com", "google": "https://accounts.google.com"}
USERNAME_CLAIMS = {"gitlab": "nickname", "google": "email"}
DISCOVERY_TIMEOUT_S = 10.0


class _ProjectGroupsAllowed(HasTraits):
    """Mixin: members of any project group may log in too."""

    project_group_prefix = Unicode("loopml-", config=True, help="Hub group of project P: <prefix>P.")

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        if await super().check_allowed(username, auth_model):
            return True
        groups = (auth_model or {}).get("groups") or []
        return any(group.startswith(self.project_group_prefix) for group in groups)


class LoopmlOIDCAuthenticator(_ProjectGroupsAllowed, GenericOAuthenticator):
    """GenericOAuthenticator (any OIDC provider) that also lets project members in."""


class LoopmlGitHubAuthenticator(_ProjectGroupsAllowed, GitHubOAuthenticator):
    """GitHubOAuthenticator whose groups are the user's team slugs."""


def _team_slugs(auth_state: dict[str, Any]) -> list[str]:
    return [team["slug"] for team in auth_state.get("teams") or [] if "slug" in team]


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
    mode, an issuer for generic and keycloak).
    """
    oauth = settings.oauth
    callback = f"{settings.hub_url}/hub/oauth_callback"
    traits: dict[str, Any] = {
        "client_id": oauth.client_id, "client_secret": oauth.client_secret, "oauth_callback_url": callback,
        "allowed_users": set(oauth.allowed_users), "admin_users": set(oauth.admin_users),
        "manage_groups": True, "allowed_groups": set(oauth.allowed_groups), "admin_groups": set(oauth.admin_groups),
        "project_group_prefix": settings.project_group_prefix, "enable_auth_state": False,
    }
    missing = [f"oauth.{name}" for name in ("client_id", "client_secret") if not getattr(oauth, name)]
    if missing:
        raise InvalidInput(f"{' and '.join(missing)} must be set for the {oauth.provider!r} identity provider "
                           "(config.toml [oauth] or LOOPML_OAUTH__CLIENT_ID / LOOPML_OAUTH__CLIENT_SECRET)")
    if oauth.provider == "github":
        # team slugs are the groups: listing a user's teams needs the read:org scope
        return LoopmlGitHubAuthenticator, {**traits, "populate_teams_in_auth_state": True,
                                           "auth_state_groups_key": _team_slugs, "scope": ["read:user", "read:org"]}
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
        "auth_state_groups_key": f"oauth_user.{oauth.groups_claim}", "login_service": _login_service(oauth.provider),
    }


def _login_service(provider: str) -> str:
    return {"dev": "the loopml dev provider", "generic": "your identity provider"}.get(provider, provider.title())
