"""Login through the OIDC provider, the project list, workspaces and hub tokens on the platform."""

from __future__ import annotations

import time

import pytest

from loopml.errors import Forbidden

pytestmark = pytest.mark.integration


def test_a_member_logs_in_and_sees_exactly_their_projects(hub):
    alice = hub.login("alice")
    home = alice.get(f"{hub.hub_url}/hub/home")
    assert 'id="open-demo"' in home.text and 'id="open-fraud"' not in home.text
    assert 'id="admin-panel"' not in home.text
    carol_home = hub.login("carol").get(f"{hub.hub_url}/hub/home")
    assert 'id="open-demo"' in carol_home.text and 'id="open-fraud"' in carol_home.text
    assert 'id="admin-panel"' in carol_home.text


def test_hub_tokens_act_as_their_user_on_the_platform(hub):
    alice = hub.client(hub.api_token("alice"))
    assert [p.name for p in alice.projects()] == ["demo"]
    with pytest.raises(Forbidden, match="not a member of project 'fraud'"):
        alice.project("fraud")
    carol = hub.client(hub.api_token("carol"))
    assert {p.name for p in carol.projects()} >= {"demo", "fraud"}


def test_a_workspace_opens_in_the_project_directory_with_the_platform_in_its_environment(hub):
    bob = hub.login("bob")
    started = time.monotonic()
    bob.get(f"{hub.hub_url}/hub/spawn/bob/fraud")
    while time.monotonic() - started < 60:
        lab = bob.get(f"{hub.hub_url}/user/bob/fraud/lab")
        if lab.status_code == 200 and "JupyterLab" in lab.text:
            break
        time.sleep(0.5)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    refused = hub.login("alice").get(f"{hub.hub_url}/hub/spawn/alice/fraud")
    assert refused.status_code == 403
    assert "alice is not a member of project &#39;fraud&#39;" in refused.text or "not a member of project" in refused.text
