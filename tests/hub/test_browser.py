"""End to end in a real browser (headless Chromium through Playwright): log in through the dev
provider's form, open a project's workspace from the hub home, run a notebook cell whose
kernel calls the platform with the workspace's own token; the admin panel for an admin and
its refusal for a member.

Every step leaves a screenshot in ``test-artifacts/browser/`` (git-ignored) at the repo root.
Waits are generous but bounded: on a busy 2-core machine JupyterLab's first load takes 10-20 s.
"""

from __future__ import annotations

import pytest

from tests.hub.browser import (
    CELL_MS,
    kernel_status_item,
    new_notebook,
    open_workspace,
    run_cell,
    shot,
    type_into_cell,
    wait_or_fail,
)

pytestmark = pytest.mark.integration

CELL = ('from loopml.client import Client; import os; '
        'print("PROJECTS", [p.name for p in Client().projects()], os.environ["LOOPML_PROJECT"])')


def test_a_member_opens_a_workspace_and_a_notebook_cell_calls_the_platform_as_the_workspace(hub, open_as):
    page = open_as("alice")
    projects = page.locator("table#projects")
    projects.wait_for()
    shot(page, "1-projects")
    assert page.locator("table#projects .project-name").all_inner_texts() == ["demo"], \
        "alice (member of demo only) should see exactly project demo on the hub home"

    open_workspace(page, hub.hub_url, "alice", "demo", step="2")
    notebook = new_notebook(page, step="2-lab")
    type_into_cell(page, notebook, 0, CELL)
    run_cell(page, notebook, 0, step="2-lab")

    printed_or_failed = notebook.locator(".jp-OutputArea-output", has_text="PROJECTS").or_(
        notebook.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")).first
    wait_or_fail(page, printed_or_failed, CELL_MS, "2-lab-no-output",
                 lambda: f"the cell printed nothing within {CELL_MS // 1000} s: its prompt is "
                         f"{notebook.locator('.jp-InputPrompt').first.inner_text()!r}, the kernel "
                         f"{kernel_status_item(page).all_inner_texts()}")
    shot(page, "2-lab-cell-output")
    printed = "\n".join(notebook.locator(".jp-Cell .jp-OutputArea-output").all_inner_texts())
    assert "PROJECTS ['demo'] demo" in printed, f"the kernel's call to the platform printed:\n{printed}"


def test_the_admin_panel_lists_every_project_to_an_admin(hub, open_as):
    every_project = sorted(p.name for p in hub.client(hub.admin_token).projects())
    assert {"demo", "fraud"} <= set(every_project)
    page = open_as("carol")
    admin_url = f"{hub.hub_url}/services/loopml/admin"
    response = page.goto(admin_url)
    shot(page, "3-admin-panel")
    assert response is not None and response.status == 200, \
        f"admin panel for carol: HTTP {response and response.status} at {page.url}: {page.inner_text('body')[:300]}"
    page.locator("table#projects").wait_for()
    missing = [name for name in every_project if page.locator(f"table#projects tr[data-project='{name}']").count() != 1]
    assert not missing, f"projects without exactly one row in the admin panel: {missing}"


def test_the_admin_panel_refuses_a_member(hub, open_as):
    page = open_as("alice")
    response = page.goto(f"{hub.hub_url}/services/loopml/admin")
    shot(page, "4-admin-403")
    assert response is not None and response.status == 403, \
        f"admin panel for alice (not an admin): HTTP {response and response.status} at {page.url}"
