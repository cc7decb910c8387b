"""Log in to the hub through the OIDC provider's form, by script (httpx), as a browser would."""

from __future__ import annotations

import re

import httpx

FORM_ACTION = re.compile(r'action="(/interaction/[\w-]+/login)"')


def oidc_login(hub_url: str, user: str, password: str = "demo", *, next_url: str | None = None,
               client: httpx.Client | None = None) -> httpx.Response:
    """Start at the hub's OAuth login, fill the provider's sign-in form, follow every redirect
    back to the hub. Returns the last response (the hub's page, or its refusal); the
    client keeps the cookies."""
    client = client or httpx.Client(follow_redirects=True, timeout=30)
    params = {"next": next_url} if next_url else {}
    form_page = client.get(f"{hub_url}/hub/oauth_login", params=params)
    form_page.raise_for_status()
    action = FORM_ACTION.search(form_page.text)
    assert action, f"no sign-in form at {form_page.url}: {form_page.text[:300]}"
    idp = f"{form_page.url.scheme}://{form_page.url.host}:{form_page.url.port}"
    return client.post(f"{idp}{action.group(1)}", data={"login": user, "password": password})
