"""The platform as a JupyterHub service: who is calling, by hub token or browser session.

When the platform runs as the hub's managed service (``JUPYTERHUB_API_TOKEN`` and
``JUPYTERHUB_API_URL`` in its environment), :class:`HubTokenAuthenticator` accepts any hub
token that may access the service (``access:services!service=<name>``): a user's API token,
a workspace kernel's ``JUPYTERHUB_API_TOKEN``, or the OAuth token of a browser session. The
user's admin flag and groups are read from the hub with the service's own token (cached
:data:`USER_CACHE_S` seconds), whatever the caller's token may read: hub admins are platform
admins, hub groups make project members. A workspace's token acts only in its workspace's project
(:func:`workspace_projects`), never as an admin; the user's own API tokens act in all of
the user's projects.

Browser sessions (HubOAuth, :data:`browser_router`): ``GET <base>login?next=`` sends the
browser to the hub's OAuth authorize page with a fresh ``state`` (kept, with the PKCE
verifier and the ``next`` URL, in a signed, httponly state cookie for 10 minutes);
``<base>oauth_callback`` checks the state against the cookie (a mismatch or a replay is a
400), exchanges the code for a token and keeps it in the signed, httponly session cookie.
``next`` must be a path on this site; anything else becomes the admin panel. Requests with
the session cookie carry an XSRF token: REST calls other than GET/HEAD send it as
``X-XSRFToken``, forms as ``_xsrf``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from loopml.auth import User
from loopml.errors import Forbidden, Unavailable
from loopml.services import services
from loopml.settings import Settings

log = logging.getLogger(__name__)

USER_CACHE_S = 30.0
TOKEN_CACHE_S = 30
SESSION_COOKIE = "loopml-session"
STATE_COOKIE = "loopml-oauth-state"
STATE_MAX_AGE_S = 600
SESSION_MAX_AGE_S = 8 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def running_as_hub_service() -> bool:
    """Whether the hub started this process as its service."""
    return bool(os.environ.get("JUPYTERHUB_API_TOKEN") and os.environ.get("JUPYTERHUB_API_URL"))


def safe_next(url: str | None, default: str) -> str:
    """``url`` when it is a path on this site, else ``default`` (no scheme, no host, no
    protocol-relative ``//``, no backslash tricks, no control characters)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return default
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in url):
        return default
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return default
    return url


class HubClient:
    """The hub's REST API, called with the service's own token."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._http = httpx.Client(base_url=self.api_url, headers={"Authorization": f"token {token}"},
                                  timeout=timeout)
        self._users: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"JupyterHub's API at {self.api_url} does not answer ({type(exc).__name__}): "
                              "check that the hub runs (`loopml status`)") from None

    def identify(self, token: str) -> dict[str, Any] | None:
        """The identity model of ``token`` (name, kind, groups, scopes), or None when the hub
        does not know it."""
        response = self._request("GET", "/user", headers={"Authorization": f"token {token}"})
        if response.status_code in (401, 403, 404):
            return None
        response.raise_for_status()
        return response.json()

    def user(self, name: str) -> dict[str, Any] | None:
        """The hub's record of user ``name`` (admin, groups), cached for :data:`USER_CACHE_S`."""
        now = time.monotonic()
        with self._lock:
            cached = self._users.get(name)
        if cached and now - cached[0] < USER_CACHE_S:
            return cached[1]
        response = self._request("GET", f"/users/{name}")
        record = None if response.status_code == 404 else response.raise_for_status().json()
        with self._lock:
            self._users[name] = (now, record)
        return record

    def forget(self, name: str) -> None:
        with self._lock:
            self._users.pop(name, None)

    def ensure_group(self, group: str) -> None:
        """Create hub group ``group`` unless it exists."""
        response = self._request("POST", f"/groups/{group}")
        if response.status_code not in (201, 409):
            response.raise_for_status()

    def group_members(self, group: str) -> list[str]:
        response = self._request("GET", f"/groups/{group}")
        if response.status_code == 404:
            return []
        return list(response.raise_for_status().json().get("users") or [])


def workspace_projects(model: dict[str, Any]) -> frozenset[str] | None:
    """The projects a hub token may act in: for a workspace's token, its workspace's project
    only; None (the user's projects) for any other token.

    The hub gives a server's own token (``JUPYTERHUB_API_TOKEN`` = ``LOOPML_TOKEN`` of the
    workspace, see :mod:`loopml.hub_config.spawner`) the scope ``access:servers!server`` of
    the spawner's ``server_token_scopes``, which ``/hub/api/user`` answers expanded as
    ``access:servers!server=<user>/<server>``; a workspace's server is named after its
    project. A token that may access all the user's servers (``access:servers!user=<user>``,
    as a token from the hub's token page has) is the user's own.
    """
    scopes = set(model.get("scopes") or [])
    name = model.get("name", "")
    if scopes & {"access:servers", f"access:servers!user={name}"}:
        return None
    prefix = f"access:servers!server={name}/"
    servers = frozenset(scope[len(prefix):] for scope in scopes if scope.startswith(prefix))
    return servers or None


class HubTokenAuthenticator:
    """Hub tokens (user API tokens, workspace tokens, browser-session OAuth tokens) as users."""

    def __init__(self, hub: HubClient, service_name: str, *, is_member: Callable[[str, str], bool]) -> None:
        """``is_member(user, project)``: whether the user is a member of the project now
        (:meth:`loopml.projects.ProjectService.member_now`), checked on every request of a
        workspace token."""
        self.hub = hub
        self.is_member = is_member
        self.access_scope = f"access:services!service={service_name}"
        self._tokens: dict[str, tuple[float, User | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, token: str) -> User | None:
        """The user ``token`` belongs to, or None. Raises :class:`Forbidden` for a valid token
        that may not access the service, :class:`Unavailable` when the hub does not answer."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._tokens.get(key)
        if cached and now - cached[0] < TOKEN_CACHE_S:
            return self._still_member(cached[1])
        model = self.hub.identify(token)
        user = None
        if model is not None and model.get("kind") == "user":
            scopes = set(model.get("scopes") or [])
            if not scopes & {self.access_scope, "access:services"}:
                raise Forbidden(f"this hub token may not use the platform (it lacks the scope {self.access_scope!r}): "
                                "use a token from the hub's token page or a workspace's JUPYTERHUB_API_TOKEN")
            record = self.hub.user(model["name"]) or {}
            only = workspace_projects(model)
            user = User(name=model["name"], admin=bool(record.get("admin")) and only is None,
                        groups=frozenset(record.get("groups") or model.get("groups") or []), only_projects=only)
        with self._lock:
            self._tokens[key] = (now, user)
            if len(self._tokens) > 10000:
                self._tokens.clear()
        return self._still_member(user)

    def _still_member(self, user: User | None) -> User | None:
        """A workspace token's user, its project dropped once they are no longer a member of
        it (a workspace left running keeps no access to a project its user left)."""
        if user is None or user.only_projects is None:
            return user
        return replace(user, only_projects=frozenset(p for p in user.only_projects if self.is_member(user.name, p)))


class ChainAuthenticator:
    """The first authenticator that knows the token wins (static tokens first: no network)."""

    def __init__(self, *authenticators: Any) -> None:
        self.authenticators = authenticators

    def authenticate(self, token: str) -> User | None:
        for authenticator in self.authenticators:
            user = authenticator.authenticate(token)
            if user is not None:
                return user
        return None


class BrowserSessions:
    """Signed cookies for the OAuth state and the browser session (see the module docstring)."""

    def __init__(self, settings: Settings, secret: str) -> None:
        self.base = settings.base_url
        self.service_name = settings.hub_service_name
        self._signer = URLSafeTimedSerializer(secret, salt="loopml-browser-session")
        self.hub_prefix = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/"
        self.client_id = os.environ.get("JUPYTERHUB_CLIENT_ID", f"service-{settings.hub_service_name}")
        self.callback = os.environ.get("JUPYTERHUB_OAUTH_CALLBACK_URL", f"{self.base}oauth_callback")
        self.api_url = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
        self.api_token = os.environ.get("JUPYTERHUB_API_TOKEN", "")

    # -- cookies ----------------------------------------------------------------------------

    def _set(self, response: Response, name: str, value: dict[str, Any], max_age: int) -> None:
        response.set_cookie(name, self._signer.dumps(value), max_age=max_age, path=self.base, httponly=True,
                            samesite="lax")

    def _read(self, request: Request, name: str, max_age: int) -> dict[str, Any] | None:
        raw = request.cookies.get(name)
        if not raw:
            return None
        try:
            return self._signer.loads(raw, max_age=max_age)
        except BadSignature:
            return None

    def session(self, request: Request) -> dict[str, Any] | None:
        """The browser session (``token``, ``xsrf``), or None."""
        return self._read(request, SESSION_COOKIE, SESSION_MAX_AGE_S)

    def session_token(self, request: Request) -> str | None:
        """The hub token of the browser session, when the request may use it: safe methods,
        or an ``X-XSRFToken`` header matching the session's."""
        session = self.session(request)
        if not session:
            return None
        if request.method not in SAFE_METHODS:
            sent = request.headers.get("x-xsrftoken", "")
            if not hmac.compare_digest(sent.encode(), session["xsrf"].encode()):
                raise Forbidden("the XSRF token is missing or wrong: send the session's token as X-XSRFToken")
        return session["token"]

    def check_form_xsrf(self, request: Request, sent: str | None) -> None:
        """Raise :class:`Forbidden` unless a form's ``_xsrf`` matches the session's."""
        session = self.session(request) or {}
        expected = session.get("xsrf", "")
        if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Forbidden("this form is out of date or did not come from this site (XSRF check failed): "
                            "reload the page and submit again")

    # -- the OAuth flow ---------------------------------------------------------------------

    def login_redirect(self, next_url: str | None) -> RedirectResponse:
        state = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(32)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        query = urlencode({"client_id": self.client_id, "redirect_uri": self.callback, "response_type": "code",
                           "state": state, "code_challenge": challenge, "code_challenge_method": "S256"})
        response = RedirectResponse(f"{self.hub_prefix}api/oauth2/authorize?{query}", status_code=302)
        self._set(response, STATE_COOKIE, {"state": state, "verifier": verifier,
                                           "next": safe_next(next_url, f"{self.base}admin")}, STATE_MAX_AGE_S)
        return response

    def finish_login(self, request: Request, code: str | None, state: str | None) -> Response:
        stored = self._read(request, STATE_COOKIE, STATE_MAX_AGE_S)
        if not stored or not state or not hmac.compare_digest(state.encode(), stored["state"].encode()):
            response = _page(400, "Login failed: OAuth state mismatch",
                             "The login answer does not match a login started from this browser (it expired, was "
                             f"used already or came from elsewhere). <a href=\"{self.base}login\">Log in again</a>.")
            response.delete_cookie(STATE_COOKIE, path=self.base)
            return response
        if not code:
            return _page(400, "Login failed", "The hub sent no authorization code: log in again.")
        try:
            reply = httpx.post(f"{self.api_url}/oauth2/token", timeout=10.0, data={
                "client_id": self.client_id, "client_secret": self.api_token, "grant_type": "authorization_code",
                "code": code, "redirect_uri": self.callback, "code_verifier": stored["verifier"]})
        except httpx.HTTPError:
            return _page(503, "Login failed", "JupyterHub does not answer: try again in a moment.")
        if reply.status_code != 200:
            return _page(400, "Login failed", "The hub refused the authorization code (expired or used): "
                                              f"<a href=\"{self.base}login\">log in again</a>.")
        response = RedirectResponse(stored["next"], status_code=302)
        response.delete_cookie(STATE_COOKIE, path=self.base)
        self._set(response, SESSION_COOKIE, {"token": reply.json()["access_token"], "xsrf": secrets.token_urlsafe(24)},
                  SESSION_MAX_AGE_S)
        return response

    def logout(self) -> RedirectResponse:
        response = RedirectResponse(f"{self.hub_prefix}logout", status_code=302)
        response.delete_cookie(SESSION_COOKIE, path=self.base)
        return response


def _page(status: int, title: str, body_html: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
                        f"<h1>{title}</h1><p>{body_html}</p></body></html>", status_code=status)


browser_router = APIRouter(tags=["browser session"], include_in_schema=False)


def _sessions(request: Request) -> BrowserSessions:
    sessions = services(request).sessions
    if sessions is None:
        raise Forbidden("browser login is available when the platform runs as the hub's service")
    return sessions


@browser_router.get("/login")
def login(request: Request, next: str | None = None):  # noqa: A002 - the OAuth convention
    """Start the hub OAuth login; come back to ``next`` (a path on this site)."""
    return _sessions(request).login_redirect(next)


@browser_router.get("/oauth_callback")
def oauth_callback(request: Request, code: str | None = None, state: str | None = None):
    return _sessions(request).finish_login(request, code, state)


@browser_router.get("/logout")
def logout(request: Request):
    return _sessions(request).logout()
