"""End to end in a real browser (headless Chromium through Playwright): log in through the dev
provider's form, open a project's workspace from the hub home, run a notebook cell whose
kernel calls the platform with the workspace's own token; the admin panel for an admin and
its refusal for a member.

Every step leaves a screenshot in ``test-artifacts/browser/`` (git-ignored) at the repo root.
Waits are generous but bounded: on a busy 2-core machine JupyterLab's first load takes 10-20 s.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PAGE_MS = 30_000  # a hub or provider page
SPAWN_MS = 120_000  # Open → /user/<user>/<project>/lab (the hub's spawn_pending page waits for the server)
LAB_MS = 90_000  # JupyterLab's first load (its status bar shows)
CELL_MS = 90_000  # kernel start + `import loopml` + one platform call

CELL = ('from loopml.client import Client; import os; '
        'print("PROJECTS", [p.name for p in Client().projects()], os.environ["LOOPML_PROJECT"])')


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_as(browser, hub) -> Iterator:
    """``open_as(user)``: a page logged in to the hub as ``user``, in a context of its own."""
    contexts = []

    def open_as(user: str) -> Page:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(PAGE_MS)
        log_in(page, hub.hub_url, user)
        return page

    yield open_as
    for context in contexts:
        context.close()


def log_in(page: Page, hub_url: str, user: str, password: str = "demo") -> None:
    """Open the hub, follow its "Sign in with …" button to the provider, fill the form, and land
    on the hub home."""
    page.goto(f"{hub_url}/hub/home")
    if not page.locator("#login").is_visible():
        page.locator("a[href*='oauth_login']").first.click()
    try:
        page.locator("#login").wait_for()
    except PlaywrightTimeout:
        shot(page, f"login-{user}-no-form")
        pytest.fail(f"no sign-in form of the provider at {page.url}: {page.content()[:500]}")
    page.fill("#login", user)
    page.fill("#password", password)
    page.click("#sign-in")
    try:
        page.wait_for_url(re.compile(r".*/hub/home.*"))
    except PlaywrightTimeout:
        shot(page, f"login-{user}-failed")
        pytest.fail(f"{user} did not land on the hub home after signing in; at {page.url}: "
                    f"{page.inner_text('body')[:500]}")


def run_first_cell(page: Page, notebook: Locator, tries: int = 3) -> None:
    """Shift+Enter in the notebook's first cell, until its prompt shows it queued or run.

    Under load JupyterLab may still drop the first run (the prompt stays ``[ ]``, nothing is
    sent to the kernel); running the cell again is then safe, since it never ran."""
    prompt = notebook.locator(".jp-InputPrompt").first
    for _ in range(tries):
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function("el => el.innerText.trim() !== '[ ]:'", arg=prompt.element_handle(),
                                   timeout=10_000)
            return
        except PlaywrightTimeout:
            notebook.locator(".jp-Cell .cm-content").first.click()
    shot(page, "2-lab-not-run")
    pytest.fail(f"the cell did not run after {tries} tries of Shift+Enter: its prompt is {prompt.inner_text()!r}")


def shot(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_a_member_opens_a_workspace_and_a_notebook_cell_calls_the_platform_as_the_workspace(hub, open_as):
    page = open_as("alice")
    projects = page.locator("table#projects")
    projects.wait_for()
    shot(page, "1-projects")
    assert page.locator("table#projects .project-name").all_inner_texts() == ["demo"], \
        "alice (member of demo only) should see exactly project demo on the hub home"

    page.click("a#open-demo")
    try:
        page.wait_for_url(re.compile(r".*/user/alice/demo/lab.*"), timeout=SPAWN_MS)
    except PlaywrightTimeout:
        shot(page, "2-spawn-failed")
        pytest.fail(f"the demo workspace did not open within {SPAWN_MS // 1000} s; at {page.url}: "
                    f"{page.inner_text('body')[:500]}")
    try:
        page.locator("#jp-main-statusbar").wait_for(timeout=LAB_MS)
    except PlaywrightTimeout:
        shot(page, "2-lab-not-loaded")
        pytest.fail(f"JupyterLab did not load within {LAB_MS // 1000} s at {page.url}")
    notebook_card = page.locator(".jp-LauncherCard[data-category='Notebook']").first
    try:
        notebook_card.wait_for(timeout=10_000)
    except PlaywrightTimeout:  # a workspace opened before restores its own layout, maybe without a launcher
        page.locator("[data-command='launcher:create']").first.click()
        notebook_card.wait_for()
    notebook_card.click()

    notebook = page.locator(".jp-NotebookPanel:visible")
    editor = notebook.locator(".jp-Cell .cm-content").first
    editor.wait_for(timeout=LAB_MS)
    # The toolbar's execution indicator says "idle" before any kernel is connected; the status
    # bar's "<kernel> | Idle" comes from the session. A run before that is dropped silently.
    kernel_status = page.locator("#jp-main-statusbar .jp-StatusBar-TextItem[title^='Change kernel']")
    try:
        kernel_status.filter(has_text=re.compile(r"\|\s*Idle")).wait_for(timeout=CELL_MS)
    except PlaywrightTimeout:
        shot(page, "2-lab-no-kernel")
        pytest.fail(f"the notebook's kernel is not idle after {CELL_MS // 1000} s: {kernel_status.all_inner_texts()}")
    editor.click()
    # insert_text, not type: typing would trigger CodeMirror's bracket closing and completer
    page.keyboard.insert_text(CELL)
    assert editor.inner_text().strip() == CELL, "the cell does not hold what was typed"
    run_first_cell(page, notebook)

    try:
        notebook.locator(".jp-OutputArea-output", has_text="PROJECTS").or_(
            notebook.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
        ).first.wait_for(timeout=CELL_MS)
    except PlaywrightTimeout:
        shot(page, "2-lab-no-output")
        pytest.fail(f"the cell printed nothing within {CELL_MS // 1000} s: its prompt is "
                    f"{notebook.locator('.jp-InputPrompt').first.inner_text()!r}, the kernel "
                    f"{kernel_status.all_inner_texts()}")
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
