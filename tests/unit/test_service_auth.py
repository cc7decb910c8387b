"""The platform's browser login as the hub's OAuth client, without a hub: ``safe_next``, the
state cookie and its checks, PKCE, the session cookie and its XSRF token.

The hub's token endpoint is the one fake (the outer edge): it checks the code and the PKCE
verifier as the hub does, and answers each code once.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer

from loopml.auth import User, current_user
from loopml.server import service_auth
from loopml.server.app import _install_error_handlers
from loopml.server.service_auth import (
    SESSION_COOKIE,
    STATE_COOKIE,
    BrowserSessions,
    browser_router,
    safe_next,
)
from loopml.services import Services
from loopml.settings import Settings

BASE = "/services/loopml/"
DEFAULT = f"{BASE}admin"


@pytest.mark.parametrize("url, expected", [
    pytest.param("/services/loopml/admin", "/services/loopml/admin", id="a path of the service"),
    pytest.param("/hub/home?x=1#top", "/hub/home?x=1#top", id="query and fragment kept"),
    pytest.param("/a//b", "/a//b", id="double slash inside the path"),
    pytest.param("/?next=//evil.example", "/?next=//evil.example", id="off-site url only in the query"),
    pytest.param("/", "/", id="root"),
    pytest.param(None, DEFAULT, id="none"),
    pytest.param("", DEFAULT, id="empty"),
    pytest.param("//evil.example/x", DEFAULT, id="protocol-relative"),
    pytest.param("https://evil.example/", DEFAULT, id="absolute https"),
    pytest.param("HTTPS://evil.example", DEFAULT, id="absolute, upper-case scheme"),
    pytest.param("http:evil.example", DEFAULT, id="scheme without slashes"),
    pytest.param("/\\evil.example", DEFAULT, id="slash backslash (browsers read //)"),
    pytest.param("\\\\evil.example", DEFAULT, id="double backslash"),
    pytest.param("\\evil.example", DEFAULT, id="backslash"),
    pytest.param("javascript:alert(1)", DEFAULT, id="javascript"),
    pytest.param(" /x", DEFAULT, id="leading space"),
    pytest.param("evil.example/x", DEFAULT, id="relative, no slash"),
    # Browsers drop tabs and newlines inside URLs, so "/\t/evil" would become "//evil".
    pytest.param("/\t/evil.example", DEFAULT, id="tab"),
    pytest.param("/\n/evil.example", DEFAULT, id="newline"),
    pytest.param("/x\r\nSet-Cookie: a=b", DEFAULT, id="CRLF header injection"),
    pytest.param("/\x00/evil.example", DEFAULT, id="NUL"),
    pytest.param("/\x1f/evil.example", DEFAULT, id="unit separator"),
])
def test_safe_next_keeps_only_paths_of_this_site(url, expected):
    assert safe_next(url, DEFAULT) == expected


class FakeHubTokenEndpoint:
    """``POST <hub api>/oauth2/token``: each issued code once, with its PKCE challenge."""

    def __init__(self) -> None:
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (S256 challenge, access token)
        self.client_secret_seen: list[str] = []

    def issue(self, challenge: str, access_token: str) -> str:
        code = f"code-{len(self.codes)}"
        self.codes[code] = (challenge, access_token)
        return code

    def __call__(self, url: str, *, data: dict[str, str], timeout: float) -> httpx.Response:
        assert url.endswith("/oauth2/token")
        self.client_secret_seen.append(data["client_secret"])
        issued = self.codes.pop(data["code"], None)
        verifier = data.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if issued is None or issued[0] != challenge:
            return httpx.Response(400, json={"error": "invalid_grant"})
        return httpx.Response(200, json={"access_token": issued[1], "token_type": "Bearer"})


class Tokens:
    """The hub's view of the access tokens the fake issued."""

    users = {"tok-bob": User(name="bob", groups=frozenset({"loopml-fraud"}))}

    def authenticate(self, token: str) -> User | None:
        return self.users.get(token)


@pytest.fixture
def hub_token_endpoint(monkeypatch) -> FakeHubTokenEndpoint:
    fake = FakeHubTokenEndpoint()
    monkeypatch.setattr(service_auth.httpx, "post", fake)
    return fake


@pytest.fixture
def browser(monkeypatch, tmp_path) -> TestClient:
    """A browser (cookies kept, redirects not followed) on an app with the platform's login
    routes under ``BASE`` and one route that says who is calling."""
    for name in ("JUPYTERHUB_BASE_URL", "JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_OAUTH_CALLBACK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://hub.invalid/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-secret")
    app = FastAPI()
    _install_error_handlers(app)
    settings = Settings(data_dir=tmp_path, base_url=BASE, hub=True)
    app.state.services = Services(settings, sessions=BrowserSessions(settings, "cookie-secret"))
    app.state.services.authenticator = Tokens()
    app.include_router(browser_router, prefix=BASE.rstrip("/"))

    @app.api_route(f"{BASE}whoami", methods=["GET", "POST"])
    def whoami(user: User = Depends(current_user)):
        return {"name": user.name}

    return TestClient(app, follow_redirects=False)


def set_cookie(response: httpx.Response, name: str) -> tuple[str, set[str]]:
    """The value and the lower-cased attributes of ``name``'s ``Set-Cookie`` header."""
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        if first.partition("=")[0] == name:
            return first.partition("=")[2], {a.lower() for a in attributes}
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


def start_login(browser: TestClient, next_url: str | None = None) -> dict[str, str]:
    """``GET <base>login``: the query of the hub authorize URL it redirects to."""
    response = browser.get(f"{BASE}login", params={"next": next_url} if next_url else {})
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.path == "/hub/api/oauth2/authorize"
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def log_in(browser: TestClient, hub_token_endpoint: FakeHubTokenEndpoint, next_url: str | None = None):
    query = start_login(browser, next_url)
    code = hub_token_endpoint.issue(query["code_challenge"], "tok-bob")
    return browser.get(f"{BASE}oauth_callback", params={"code": code, "state": query["state"]})


def test_login_sends_the_browser_to_the_hub_with_a_fresh_state_in_an_httponly_cookie(browser):
    query = start_login(browser)
    assert query["client_id"] == "service-loopml" and query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == f"{BASE}oauth_callback"
    _, attributes = set_cookie(browser.get(f"{BASE}login"), STATE_COOKIE)
    assert {"httponly", f"path={BASE}", "samesite=lax"} <= attributes
    assert start_login(browser)["state"] != query["state"]


@pytest.mark.parametrize("next_url, lands_on", [
    pytest.param("/services/loopml/api/v1/projects", "/services/loopml/api/v1/projects", id="on site"),
    pytest.param("//evil.example/x", DEFAULT, id="protocol-relative"),
    pytest.param("https://evil.example", DEFAULT, id="absolute"),
    pytest.param("/\\evil.example", DEFAULT, id="backslash"),
])
def test_a_completed_login_lands_on_a_path_of_this_site(browser, hub_token_endpoint, next_url, lands_on):
    done = log_in(browser, hub_token_endpoint, next_url)
    assert done.status_code == 302 and done.headers["location"] == lands_on
    _, attributes = set_cookie(done, SESSION_COOKIE)
    assert {"httponly", f"path={BASE}", "samesite=lax"} <= attributes
    assert browser.get(f"{BASE}whoami").json() == {"name": "bob"}


def test_the_callback_refuses_a_state_that_is_not_this_browsers(browser, hub_token_endpoint):
    query = start_login(browser)
    code = hub_token_endpoint.issue(query["code_challenge"], "tok-bob")
    wrong = browser.get(f"{BASE}oauth_callback", params={"code": code, "state": "wrong"})
    assert wrong.status_code == 400 and "state mismatch" in wrong.text
    assert SESSION_COOKIE not in wrong.cookies
    # the mismatch spends the login: the right state no longer works either
    late = browser.get(f"{BASE}oauth_callback", params={"code": code, "state": query["state"]})
    assert late.status_code == 400
    assert hub_token_endpoint.client_secret_seen == []  # never asked the hub


def test_the_callback_refuses_a_browser_without_a_state_cookie(browser):
    response = browser.get(f"{BASE}oauth_callback", params={"code": "x", "state": "anything"})
    assert response.status_code == 400 and SESSION_COOKIE not in response.cookies


def test_the_callback_refuses_a_state_cookie_signed_by_someone_else(browser, tmp_path):
    forger = BrowserSessions(Settings(data_dir=tmp_path, base_url=BASE, hub=True), "another-secret")
    forged = forger.login_redirect(None)
    state = parse_qs(urlsplit(forged.headers["location"]).query)["state"][0]
    value, _ = set_cookie(httpx.Response(302, headers=forged.headers.items()), STATE_COOKIE)
    browser.cookies.set(STATE_COOKIE, value, path=BASE)
    response = browser.get(f"{BASE}oauth_callback", params={"code": "x", "state": state})
    assert response.status_code == 400 and "state mismatch" in response.text


def test_a_replayed_callback_is_refused_with_or_without_its_state_cookie(browser, hub_token_endpoint):
    query = start_login(browser)
    state_cookie = browser.cookies.get(STATE_COOKIE)
    code = hub_token_endpoint.issue(query["code_challenge"], "tok-bob")
    callback = {"code": code, "state": query["state"]}
    assert browser.get(f"{BASE}oauth_callback", params=callback).status_code == 302
    assert browser.get(f"{BASE}oauth_callback", params=callback).status_code == 400  # state cookie spent
    browser.cookies.clear()
    browser.cookies.set(STATE_COOKIE, state_cookie, path=BASE)
    replay = browser.get(f"{BASE}oauth_callback", params=callback)
    assert replay.status_code == 400 and SESSION_COOKIE not in replay.cookies
    assert "refused the authorization code" in replay.text  # the state matched; the hub answers each code once


def test_the_code_is_useless_without_the_browsers_pkce_verifier(browser, hub_token_endpoint):
    query = start_login(browser)
    code = hub_token_endpoint.issue("the challenge of another login", "tok-bob")
    response = browser.get(f"{BASE}oauth_callback", params={"code": code, "state": query["state"]})
    assert response.status_code == 400 and SESSION_COOKIE not in response.cookies


def test_a_session_needs_its_xsrf_token_for_unsafe_methods(browser, hub_token_endpoint):
    log_in(browser, hub_token_endpoint)
    assert browser.get(f"{BASE}whoami").json() == {"name": "bob"}
    refused = browser.post(f"{BASE}whoami")
    assert refused.status_code == 403 and "XSRF" in refused.json()["message"]
    assert browser.post(f"{BASE}whoami", headers={"X-XSRFToken": "guess"}).status_code == 403
    # the page the session opens gets the token from the server; here it is read off the cookie
    _, session = URLSafeTimedSerializer("unknown").loads_unsafe(browser.cookies.get(SESSION_COOKIE))
    allowed = browser.post(f"{BASE}whoami", headers={"X-XSRFToken": session["xsrf"]})
    assert allowed.status_code == 200 and allowed.json() == {"name": "bob"}


def test_a_session_cookie_signed_by_someone_else_is_no_session(browser, hub_token_endpoint):
    log_in(browser, hub_token_endpoint)
    value = browser.cookies.get(SESSION_COOKIE)
    payload, _, signature = value.rpartition(".")
    browser.cookies.set(SESSION_COOKIE, f"{payload}.{'A' * len(signature)}", path=BASE)
    response = browser.get(f"{BASE}whoami")
    assert response.status_code == 401 and "message" in response.json()
