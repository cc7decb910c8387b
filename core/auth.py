"""Who is calling: token authentication for every REST route.

The authenticator is chosen by the app (headless mode: :class:`StaticTokenAuthenticator`
from settings); routes depend on :func:`current_user`, project-scoped routes on
:func:`member` and admin-only routes on :func:`admin_user`. Tokens are compared in constant
time and never logged.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from fastapi import Depends, Request

from loopml.errors import Forbidden, Unauthorized
from loopml.services import Services, services
from loopml.settings import Settings

ADMIN_USER = "admin"


@dataclass(frozen=True)
class User:
    """An authenticated caller."""

    name: str
    admin: bool = False
    groups: frozenset[str] = frozenset()  # hub groups (from the identity provider); project P is <prefix>P
    only_projects: frozenset[str] | None = None  # a job token: the job's project, nothing else


class Authenticator(Protocol):
    """Who a token belongs to: the user, or None for a token it does not know."""

    def authenticate(self, token: str) -> User | None: ...


class StaticTokenAuthenticator:
    """Headless mode: the admin token from ``loopml up`` plus the ``tokens`` table of the config."""

    def __init__(self, settings: Settings) -> None:
        self._users: list[tuple[str, User]] = [
            (token, User(name=user.name, admin=user.admin)) for token, user in settings.tokens.items()
        ]
        if settings.admin_token:
            self._users.append((settings.admin_token, User(name=ADMIN_USER, admin=True)))

    def authenticate(self, token: str) -> User | None:
        found = None
        for known, user in self._users:
            if hmac.compare_digest(known.encode(), token.encode()):
                found = user
        return found


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <t>`` (or JupyterHub's ``token <t>``).

    Raises :class:`Unauthorized` for a token of characters no issued token has (every one is
    printable ASCII): Starlette decodes any header byte (as latin-1), but comparing it in
    constant time or forwarding it to the hub would fail on it.
    """
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not value.strip():
        return None
    token = value.strip()
    if not (token.isascii() and token.isprintable()):
        raise Unauthorized("the API token holds characters no token has (tokens are printable ASCII): send the "
                           "token as it was issued to you")
    return token


def current_user(request: Request, found: Services = Depends(services)) -> User:
    """FastAPI dependency: the caller, or 401 with how to authenticate.

    The token comes from ``Authorization``; with the hub, a browser session cookie works too
    (see :mod:`loopml.server.service_auth`, which checks its XSRF token).
    """
    token = bearer_token(request)
    if token is None and found.sessions is not None:
        token = found.sessions.session_token(request)
    if token is None:
        raise Unauthorized(
            "no API token: send 'Authorization: Bearer <token>' (the CLI reads it from LOOPML_TOKEN "
            "or the client config written by `loopml up`)"
        )
    user = found.authenticator.authenticate(token)
    if user is None:
        raise Unauthorized("the API token is not valid: use the token printed by `loopml up` or issued to you")
    return user


def member(project: str, user: User = Depends(current_user), found: Services = Depends(services)) -> User:
    """FastAPI dependency of every project-scoped route: the caller, once their membership of
    the path's ``project`` is checked (403 otherwise)."""
    found.projects.require_member(user, project)
    return user


def admin_user(user: User = Depends(current_user)) -> User:
    """FastAPI dependency: the caller, who must be a platform admin (checked before the body is read)."""
    if not user.admin:
        raise Forbidden("only platform admins create and change projects: ask one to do it for you")
    return user
