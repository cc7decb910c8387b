"""Who may see the admin panel, and how its pages are rendered.

Reading a page takes the browser session of a hub admin (or, for scripts and tests, an
admin's ``Authorization: Bearer`` token); acting takes the session and its XSRF token,
never a bearer token alone. Without a session a page sends the browser to
``<base>login?next=<the page>``; a signed-in user who is not a hub admin gets a 403 page;
a headless platform (no hub, so no browser login) answers every page with a 403 page.

Pages are Jinja2 templates (autoescaped) under ``templates/``, sent with ``no-store`` (they
show who may do what) and anti-framing headers (their buttons act: no clickjacking).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from loopml.auth import User, bearer_token
from loopml.errors import Forbidden, LoopMLError, http_status
from loopml.services import services

PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "frame-ancestors 'none'"}


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


templates = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True,
                        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
templates.filters["when"] = _when


@dataclass(frozen=True)
class Viewer:
    """A hub admin on the panel; ``xsrf`` is "" when reading with a bearer token (no forms work)."""

    user: User
    xsrf: str


def panel_url(request: Request, path: str = "") -> str:
    """``<base>admin`` followed by ``path``."""
    return f"{services(request).settings.base_url}admin{path}"


def hub_home(request: Request) -> str:
    sessions = services(request).sessions
    return f"{sessions.hub_prefix}home" if sessions is not None else "/hub/home"


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """``template`` with the pages' common context (base, links, the viewer's XSRF…) and ``context``."""
    settings = services(request).settings
    common = {"base": settings.base_url, "api": settings.api_prefix, "panel": panel_url(request),
              "hub_home": hub_home(request), "viewer": None, "done": "", "error": ""}
    html = templates.get_template(template).render({**common, **context})
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def refusal(request: Request, status: int, title: str, message: str, *, login: bool = False) -> HTMLResponse:
    """A page that says why the panel is refused and where to go instead."""
    login_url = f"{services(request).settings.base_url}login?{urlencode({'next': panel_url(request)})}"
    return render(request, "refused.html", status=status, title=title, message=message,
                  login_url=login_url if login else "")


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)


def _login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"{services(request).settings.base_url}login?{urlencode({'next': here})}",
                                status_code=302)
    response.headers.update(PAGE_HEADERS)
    return response


def _headless(request: Request) -> HTMLResponse:
    return refusal(request, 403, "The admin panel needs JupyterHub",
                   "This platform runs headless (without the hub), so there is no browser login. Administer it "
                   "with the loopml CLI or the REST API, or start it with the hub (`loopml up`).")


def _not_admin(request: Request, user: User) -> HTMLResponse:
    return refusal(request, 403, "For hub admins only",
                   f"The admin panel is for hub admins, and {user.name} is not one. Ask an admin for what you need.")


def _authenticate(request: Request, token: str) -> User | HTMLResponse | None:
    try:
        return services(request).authenticator.authenticate(token)
    except LoopMLError as exc:
        return refusal(request, http_status(exc), "Cannot check who you are", exc.message)


def viewer_of_page(request: Request) -> Viewer | Response:
    """The admin reading a page, or the response that sends anyone else away (blocking:
    it may ask the hub who the token belongs to)."""
    sessions = services(request).sessions
    if sessions is None:
        return _headless(request)
    bearer = bearer_token(request)
    session = None if bearer else sessions.session(request)
    token = bearer or (session or {}).get("token")
    if not token:
        return _login(request)
    user = _authenticate(request, token)
    if isinstance(user, Response):
        return user
    if user is None:
        if bearer:
            return refusal(request, 401, "Not logged in", "This token is not valid.", login=True)
        return _login(request)  # the session's hub token expired or was revoked
    if not user.admin:
        return _not_admin(request, user)
    return Viewer(user=user, xsrf=(session or {}).get("xsrf", ""))


def viewer_of_action(request: Request, sent_xsrf: str | None) -> Viewer | Response:
    """The admin submitting a form, or the refusal: it takes the browser session and its
    XSRF token (checked first: a forged form costs no call to the hub)."""
    sessions = services(request).sessions
    if sessions is None:
        return _headless(request)
    session = sessions.session(request)
    if not session:
        return refusal(request, 403, "Log in first", "The panel's forms need a browser session: open the panel, "
                                                     "log in and submit again.", login=True)
    try:
        sessions.check_form_xsrf(request, sent_xsrf)
    except Forbidden as exc:
        return refusal(request, 403, "Refused", exc.message)
    user = _authenticate(request, session["token"])
    if isinstance(user, Response):
        return user
    if user is None:
        return refusal(request, 403, "Log in again", "Your session has expired.", login=True)
    if not user.admin:
        return _not_admin(request, user)
    return Viewer(user=user, xsrf=session["xsrf"])
