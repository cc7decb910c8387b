"""OAuth edge cases of the two logins, walked one redirect at a time as a browser would:

- the hub's login, through the OIDC provider (``/hub/oauth_login`` -> the provider's form ->
  ``/hub/oauth_callback``);
- the platform service's own login, through the hub (``<platform>/login`` -> the hub's
  authorize page -> ``<platform>/oauth_callback``).

Every hop is checked to stay on this machine (the hub and the provider), so a redirect to
``evil.example`` fails where it happens. The last test reads every log of the platform for
the secrets the earlier ones handled.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from tests.hub.login import FORM_ACTION, oidc_login

pytestmark = pytest.mark.integration

HUB_LOGIN_COOKIE = "jupyterhub-hub-login"
HUB_STATE_COOKIE = "oauthenticator-state"
SESSION_COOKIE = "loopml-session"
STATE_COOKIE = "loopml-oauth-state"


@pytest.fixture(scope="module")
def handled_secrets() -> list[str]:
    """Tokens and cookie values the tests of this module handled, for the log check at the end."""
    return []


def browser() -> httpx.Client:
    return httpx.Client(follow_redirects=False, timeout=60)


def follow(client: httpx.Client, response: httpx.Response, *, until: str | None = None) -> list[httpx.Response]:
    """``response`` and every redirect after it, requested one at a time; each target must be on
    this machine. Stops before requesting a target whose path is ``until``."""
    hops = [response]
    while response.is_redirect:
        assert len(hops) < 20, f"a redirect loop: {[str(hop.url) for hop in hops]}"
        target = redirect_target(response)
        assert target.host == "127.0.0.1", f"redirected off site to {target} (from {response.url})"
        if until and target.path == until:
            break
        response = client.get(target)
        hops.append(response)
    return hops


def redirect_target(response: httpx.Response) -> httpx.URL:
    return response.url.join(response.headers["location"])


def set_cookies(hops: list[httpx.Response]) -> dict[str, tuple[str, set[str]]]:
    """Name -> (value, lower-cased attributes) of the cookies the hops set (the last setting
    with a value wins; deletions are skipped)."""
    found = {}
    for hop in hops:
        for header in hop.headers.get_list("set-cookie"):
            first, *attributes = (part.strip() for part in header.split(";"))
            name, _, value = first.partition("=")
            if value.strip('"'):
                found[name] = (value, {a.lower() for a in attributes})
    return found


def hub_login_until_callback(hub, user: str, password: str = "demo", next_url: str | None = None):
    """A fresh browser walked from the hub's login through the provider's form, stopped before
    it requests the hub's callback. Returns (browser, hops); the last hop's ``Location`` is the
    callback URL unless the provider refused the form."""
    client = browser()
    hops = follow(client, client.get(f"{hub.hub_url}/hub/oauth_login",
                                     params={"next": next_url} if next_url else {}))
    form = hops[-1]
    action = FORM_ACTION.search(form.text)
    assert action, f"no sign-in form at {form.url}: {form.text[:300]}"
    hops += follow(client, client.post(form.url.join(action.group(1)), data={"login": user, "password": password}),
                   until="/hub/oauth_callback")
    return client, hops


def logged_in_to_hub(hub, user: str) -> httpx.Client:
    client = hub.login(user)
    client.follow_redirects = False
    return client


def platform_path(hub) -> str:
    return urlsplit(hub.platform_url).path.rstrip("/") + "/"


def on_hub(hub, url: httpx.URL) -> bool:
    hub_url = urlsplit(hub.hub_url)
    return (url.host, url.port) == (hub_url.hostname, hub_url.port)


# -- the hub's login ------------------------------------------------------------------------

def test_the_hub_refuses_a_callback_with_a_wrong_state(hub):
    client, hops = hub_login_until_callback(hub, "bob")
    forged = redirect_target(hops[-1]).copy_set_param("state", "wrong")
    response = client.get(forged)
    assert response.status_code == 400
    assert HUB_LOGIN_COOKIE not in set_cookies([response])


def test_the_hub_refuses_a_replayed_callback(hub):
    client, hops = hub_login_until_callback(hub, "bob")
    callback, state_cookie = redirect_target(hops[-1]), client.cookies.get(HUB_STATE_COOKIE)
    first = client.get(callback)
    assert first.status_code == 302 and HUB_LOGIN_COOKIE in set_cookies([first])
    again = client.get(callback)  # the state cookie was spent by the first use
    assert again.status_code == 400 and HUB_LOGIN_COOKIE not in set_cookies([again])
    thief = browser()  # someone who copied the URL and the state cookie: the provider answers each code once
    thief.cookies.set(HUB_STATE_COOKIE, state_cookie, domain="127.0.0.1", path="/")
    replayed = thief.get(callback)
    # oauthenticator answers 500 here (it does not turn the provider's invalid_grant into a 400)
    assert replayed.status_code >= 400 and HUB_LOGIN_COOKIE not in set_cookies([replayed])


@pytest.mark.parametrize("evil", ["https://evil.example/", "//evil.example/"])
def test_the_hub_login_stays_on_the_hub_whatever_next_says(hub, evil):
    client, hops = hub_login_until_callback(hub, "bob", next_url=evil)
    hops = follow(client, client.get(redirect_target(hops[-1])))
    assert hops[-1].status_code == 200 and on_hub(hub, hops[-1].url), hops[-1].url


def test_a_user_in_no_allowed_group_cannot_log_in(hub):
    client = httpx.Client(follow_redirects=True, timeout=60)
    refused = oidc_login(hub.hub_url, "mallory", client=client)
    assert refused.status_code == 403 and re.search(r"not (currently )?authorized", refused.text)
    assert client.cookies.get(HUB_LOGIN_COOKIE) is None
    assert all(HUB_LOGIN_COOKIE not in set_cookies([hop]) for hop in [*refused.history, refused])
    home = client.get(f"{hub.hub_url}/hub/home", follow_redirects=False)
    assert home.status_code == 302 and "login" in home.headers["location"]


def test_the_provider_refuses_a_wrong_password(hub):
    client, hops = hub_login_until_callback(hub, "bob", password="not-the-password")
    refused = hops[-1]
    assert refused.status_code == 401 and not refused.is_redirect
    assert "wrong password" in refused.text and FORM_ACTION.search(refused.text)  # the form, again
    assert client.cookies.get(HUB_LOGIN_COOKIE) is None


# -- the platform service's login -----------------------------------------------------------

def test_the_service_callback_refuses_a_wrong_state(hub):
    client = browser()
    started = client.get(f"{hub.platform_url}/login")
    assert started.status_code == 302 and client.cookies.get(STATE_COOKIE)
    response = client.get(f"{hub.platform_url}/oauth_callback", params={"code": "x", "state": "wrong"})
    assert response.status_code == 400 and SESSION_COOKIE not in set_cookies([response])


def test_the_service_callback_refuses_a_browser_without_a_state_cookie(hub):
    response = browser().get(f"{hub.platform_url}/oauth_callback", params={"code": "x", "state": "wrong"})
    assert response.status_code == 400 and SESSION_COOKIE not in set_cookies([response])


def test_a_completed_service_callback_cannot_be_replayed(hub, handled_secrets):
    client = logged_in_to_hub(hub, "bob")
    hops = follow(client, client.get(f"{hub.platform_url}/login"), until=f"{platform_path(hub)}oauth_callback")
    callback, state_cookie = redirect_target(hops[-1]), client.cookies.get(STATE_COOKIE)
    done = client.get(callback)
    assert done.status_code == 302 and SESSION_COOKIE in set_cookies([done])
    handled_secrets.append(set_cookies([done])[SESSION_COOKIE][0])
    again = client.get(callback)  # the state cookie was spent by the first use
    assert again.status_code == 400 and SESSION_COOKIE not in set_cookies([again])
    thief = browser()  # with the state cookie copied too: the hub answers each code once
    thief.cookies.set(STATE_COOKIE, state_cookie, domain="127.0.0.1", path=platform_path(hub))
    replayed = thief.get(callback)
    assert replayed.status_code == 400 and SESSION_COOKIE not in set_cookies([replayed])
    assert "refused the authorization code" in replayed.text  # the state matched: the code was refused


@pytest.mark.parametrize("evil", ["//evil.example/x", "https://evil.example", "/\\evil.example"])
def test_the_service_login_lands_on_a_path_of_the_site_whatever_next_says(hub, evil):
    client = logged_in_to_hub(hub, "carol")  # an admin: the default landing page is the admin panel
    hops = follow(client, client.get(f"{hub.platform_url}/login", params={"next": evil}))
    callback = next(hop for hop in hops if hop.url.path == f"{platform_path(hub)}oauth_callback")
    assert callback.status_code == 302 and callback.headers["location"].startswith(platform_path(hub))
    assert on_hub(hub, hops[-1].url) and hops[-1].url.path.startswith(platform_path(hub)), hops[-1].url


def test_login_cookies_are_httponly(hub, handled_secrets):
    client, hops = hub_login_until_callback(hub, "bob")
    hops += follow(client, client.get(redirect_target(hops[-1])))
    hub_cookies = set_cookies(hops)
    for name in (HUB_STATE_COOKIE, HUB_LOGIN_COOKIE):
        assert "httponly" in hub_cookies[name][1], (name, hub_cookies[name])

    service_hops = follow(client, client.get(f"{hub.platform_url}/login",
                                             params={"next": f"{platform_path(hub)}api/v1/projects"}))
    assert service_hops[-1].status_code == 200 and service_hops[-1].json()  # bob's projects, by session
    service_cookies = set_cookies(service_hops)
    for name in (STATE_COOKIE, SESSION_COOKIE):
        value, attributes = service_cookies[name]
        assert {"httponly", "samesite=lax", f"path={platform_path(hub)}"} <= attributes, (name, attributes)
        handled_secrets.append(value)
    _, session = URLSafeTimedSerializer("unknown").loads_unsafe(service_cookies[SESSION_COOKIE][0])
    handled_secrets.append(session["token"])  # the hub token the session holds


# -- last: what the logs hold ---------------------------------------------------------------

def test_no_secret_reaches_a_log(hub, handled_secrets):
    """After every login above, and after a fresh token is used, refused and mistyped: no log
    under ``<home>/logs`` holds the admin token, a hub token, the provider's client secret (or
    any other stored secret) or a session cookie."""
    token = hub.api_token("alice")
    api = f"{hub.platform_url}/api/v1"
    for url in (f"{api}/projects", f"{api}/projects/fraud", f"{api}/projects/demo/jobs/nonexistent"):
        httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    httpx.post(f"{api}/internal/capture", json={"records": []}, headers={"Authorization": f"Bearer {token}"},
               timeout=60)
    mistyped = token[:-4] + "abcd"
    assert httpx.get(f"{api}/projects", headers={"Authorization": f"Bearer {mistyped}"}, timeout=60).status_code == 401
    httpx.get(f"{api}/projects", headers={"Authorization": f"Bearer {hub.admin_token}"}, timeout=60)
    session = logged_in_to_hub(hub, "alice")  # a browser session of this test's own, used and refused
    follow(session, session.get(f"{hub.platform_url}/login", params={"next": f"{platform_path(hub)}api/v1/projects"}))
    session.post(f"{api}/projects/demo/jobs", json={})  # no XSRF token: 403
    session_cookie = session.cookies.get(SESSION_COOKIE)
    assert session_cookie

    stored = json.loads((hub.home / "secrets.json").read_text())
    assert stored.get("idp_client_secret")
    secrets = {"admin token": hub.admin_token, "alice's hub token": token, "mistyped token": mistyped,
               "alice's session cookie": session_cookie,
               **{f"secrets.json {key}": value for key, value in stored.items() if isinstance(value, str)},
               **{f"handled secret {i}": value for i, value in enumerate(handled_secrets)}}
    logs = [path for path in (hub.home / "logs").rglob("*") if path.is_file()]
    assert logs, f"no logs under {hub.home / 'logs'}"
    leaks = [f"{what} in {path.name}" for path in logs for what, secret in secrets.items()
             if len(secret) >= 8 and secret.encode() in path.read_bytes()]
    assert not leaks, leaks
