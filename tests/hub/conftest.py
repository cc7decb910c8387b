"""Package fixtures of the hub tests: one real platform started the way users start it,
``loopml up`` with the hub (the bundled dev OIDC provider, JupyterHub with
configurable-http-proxy, the platform as the hub's service, Ray, MLflow), shared by every
test of this package and stopped with ``loopml down``, which must leave no process behind.

Demo users (hub_config/dev_users.json, password "demo"): alice (group loopml-demo), bob
(loopml-demo, loopml-fraud), carol (loopml-admins: a hub and platform admin), mallory (in no
loopml group: may not log in). Projects ``demo`` (seeded by ``up``) and ``fraud`` exist, members
from the groups.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from loopml.client import Client
from loopml.launcher import free_port_block
from tests.hub import browser as web
from tests.hub.login import oidc_login
from tests.integration.platform_fixtures import LOOPML, down_leaving_nothing


@dataclass
class Hub:
    home: Path
    hub_url: str
    platform_url: str  # through the proxy: <hub_url>/services/loopml
    admin_token: str  # the static admin token of `loopml up`
    env: dict[str, str]

    def login(self, user: str, password: str = "demo", **kwargs) -> httpx.Client:
        """An httpx client logged in to the hub as ``user`` (cookies kept)."""
        client = httpx.Client(follow_redirects=True, timeout=60)
        response = oidc_login(self.hub_url, user, password, client=client, **kwargs)
        assert response.status_code == 200, (response.status_code, str(response.url), response.text[:500])
        return client

    def api_token(self, user: str) -> str:
        """A hub API token of ``user``, made through the hub's REST API with the user's session."""
        session = self.login(user)
        xsrf = session.cookies.get("_xsrf", domain="127.0.0.1", path="/hub/") or ""
        response = session.post(f"{self.hub_url}/hub/api/users/{user}/tokens", json={"note": "tests"},
                                headers={"X-XSRFToken": xsrf, "Referer": f"{self.hub_url}/hub/token"})
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def client(self, token: str) -> Client:
        return Client(self.platform_url, token)

    def state(self) -> dict:
        return json.loads((self.home / "run" / "state.json").read_text())


@pytest.fixture(scope="package")
def hub(tmp_path_factory) -> Hub:
    home = tmp_path_factory.mktemp("loopml-hub-home")
    base = free_port_block(16)
    (home / "config.toml").write_text(
        f"port = {base}\nmlflow_port = {base + 1}\nray_dashboard_port = {base + 2}\nray_port = {base + 3}\n"
        f"serve_port = {base + 11}\nhub_port = {base + 12}\nhub_api_port = {base + 13}\n"
        f"proxy_api_port = {base + 14}\nidp_port = {base + 15}\nray_num_cpus = 2\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "RAY_ADDRESS", "JUPYTERHUB_"))}
    env["LOOPML_HOME"] = str(home)
    started = subprocess.run([LOOPML, "up", "--data-dir", str(home)], env=env, capture_output=True, text=True,
                             timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "DEVELOPMENT identity provider" in started.stderr
    config = json.loads((home / "client.json").read_text())
    hub = Hub(home=home, hub_url=f"http://127.0.0.1:{base + 12}", platform_url=config["url"],
              admin_token=config["token"], env=env)
    admin = hub.client(hub.admin_token)
    assert [p.name for p in admin.projects()] == ["demo"]  # seeded for the dev provider's demo users
    admin.create_project("fraud")
    yield hub
    down_leaving_nothing(home, env)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Chromium, shared by the package's browser tests (each opens its own contexts)."""
    with sync_playwright() as playwright:
        chromium = web.launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def open_as(browser, hub) -> Iterator[Callable[[str], Page]]:
    """``open_as(user)``: a page logged in to the hub as ``user`` (on the hub home), in a context of its own."""
    contexts = []

    def open_as(user: str) -> Page:
        context = browser.new_context(viewport=web.VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(web.PAGE_MS)
        web.log_in(page, hub.hub_url, user)
        return page

    yield open_as
    for context in contexts:
        context.close()
