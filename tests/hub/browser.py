"""What the browser tests of the hub share: headless Chromium (the system's, no Playwright
browser download), signing in through the dev provider's form, opening a project's
workspace and a new notebook in JupyterLab, typing and running cells, screenshots.

Every helper that waits does so within a bound and, when the bound passes, leaves a
screenshot ``<step>-<what>.png`` in :data:`ARTIFACTS` and fails the test with what the page
showed. Waits are generous: on a busy 2-core machine JupyterLab's first load takes 10-20 s.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, Playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"  # git-ignored
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}

PAGE_MS = 30_000  # a hub or provider page
SPAWN_MS = 120_000  # Open → /user/<user>/<project>/lab (the hub's spawn_pending page waits for the server)
LAB_MS = 90_000  # JupyterLab's first load (its status bar shows)
CELL_MS = 90_000  # kernel start + `import loopml` + one platform call


def launch(playwright: Playwright) -> Browser:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot ``<name>.png`` in :data:`ARTIFACTS`; its path."""
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def shot_of(target: Locator, name: str) -> Path:
    """A screenshot of one element (scrolled into view) as ``<name>.png`` in :data:`ARTIFACTS`; its path."""
    path = ARTIFACTS / f"{name}.png"
    target.screenshot(path=str(path))
    return path


def fail(page: Page, name: str, message: str) -> None:
    """Screenshot ``name``, then fail the test with ``message``."""
    shot(page, name)
    pytest.fail(message)


def wait_or_fail(page: Page, target: Locator, timeout_ms: int, name: str, explain: Callable[[], str]) -> None:
    """Wait until ``target`` is visible; else screenshot ``name`` and fail with ``explain()``
    (called only then, so it may read the page as it is at the failure)."""
    try:
        target.wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        fail(page, name, explain())


def console_errors(page: Page) -> list[str]:
    """A list that collects the page's console errors and uncaught exceptions from now on."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    return errors


def log_in(page: Page, hub_url: str, user: str, password: str = "demo") -> None:
    """Open the hub, follow its "Sign in with …" button to the provider, fill the form, and land
    on the hub home."""
    page.goto(f"{hub_url}/hub/home")
    if not page.locator("#login").is_visible():
        page.locator("a[href*='oauth_login']").first.click()
    try:
        page.locator("#login").wait_for()
    except PlaywrightTimeout:
        fail(page, f"login-{user}-no-form", f"no sign-in form of the provider at {page.url}: {page.content()[:500]}")
    page.fill("#login", user)
    page.fill("#password", password)
    page.click("#sign-in")
    try:
        page.wait_for_url(re.compile(r".*/hub/home.*"))
    except PlaywrightTimeout:
        fail(page, f"login-{user}-failed", f"{user} did not land on the hub home after signing in; at {page.url}: "
                                           f"{page.inner_text('body')[:500]}")


def open_workspace(page: Page, hub_url: str, user: str, project: str, step: str) -> None:
    """From the hub home, open ``project``'s workspace and wait until JupyterLab has loaded."""
    if "/hub/home" not in page.url:
        page.goto(f"{hub_url}/hub/home")
    page.click(f"a#open-{project}")
    try:
        page.wait_for_url(re.compile(rf".*/user/{user}/{project}/lab.*"), timeout=SPAWN_MS)
    except PlaywrightTimeout:
        fail(page, f"{step}-spawn-failed", f"the {project} workspace did not open within {SPAWN_MS // 1000} s; "
                                           f"at {page.url}: {page.inner_text('body')[:500]}")
    try:
        page.locator("#jp-main-statusbar").wait_for(timeout=LAB_MS)
    except PlaywrightTimeout:
        fail(page, f"{step}-lab-not-loaded", f"JupyterLab did not load within {LAB_MS // 1000} s at {page.url}")


def new_notebook(page: Page, step: str) -> Locator:
    """Create a notebook from the launcher, wait for its kernel to be idle; the notebook's panel."""
    notebook_card = page.locator(".jp-LauncherCard[data-category='Notebook']").first
    try:
        notebook_card.wait_for(timeout=10_000)
    except PlaywrightTimeout:  # a workspace opened before restores its own layout, maybe without a launcher
        page.locator("[data-command='launcher:create']").first.click()
        notebook_card.wait_for()
    notebook_card.click()
    notebook = page.locator(".jp-NotebookPanel:visible")
    cell_editor(notebook, 0).wait_for(timeout=LAB_MS)
    wait_kernel_idle(page, step)
    return notebook


def wait_kernel_idle(page: Page, step: str, timeout_ms: int = CELL_MS) -> None:
    """Wait for the status bar's "<kernel> | Idle".

    The toolbar's execution indicator says "idle" before any kernel is connected; the status
    bar's text comes from the session. A cell run before that is dropped silently."""
    kernel_status = kernel_status_item(page)
    try:
        kernel_status.filter(has_text=re.compile(r"\|\s*Idle")).wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        fail(page, f"{step}-no-kernel",
             f"the notebook's kernel is not idle after {timeout_ms // 1000} s: {kernel_status.all_inner_texts()}")


def kernel_status_item(page: Page) -> Locator:
    """The status bar's "<kernel> | <state>"."""
    return page.locator("#jp-main-statusbar .jp-StatusBar-TextItem[title^='Change kernel']")


def cell(notebook: Locator, index: int) -> Locator:
    return notebook.locator(".jp-Cell").nth(index)


def cell_editor(notebook: Locator, index: int) -> Locator:
    return cell(notebook, index).locator(".cm-content")


def cell_outputs(notebook: Locator, index: int) -> Locator:
    """The output area of cell ``index`` (every output of it)."""
    return cell(notebook, index).locator(".jp-OutputArea")


def type_into_cell(page: Page, notebook: Locator, index: int, text: str) -> None:
    """Put ``text`` (lines joined by ``\\n``) into the empty cell ``index``.

    ``insert_text``, not ``type``: typing keys would trigger CodeMirror's bracket closing,
    auto-indent and the completer."""
    editor = cell_editor(notebook, index)
    editor.click()
    page.keyboard.insert_text(text)
    assert editor.inner_text().strip() == text, f"cell {index} does not hold what was typed: {editor.inner_text()!r}"


def run_cell(page: Page, notebook: Locator, index: int, step: str, tries: int = 3) -> None:
    """Shift+Enter in cell ``index``, until its prompt shows it queued or run.

    Under load JupyterLab may drop a run (the prompt stays ``[ ]``, nothing is sent to the
    kernel); running the cell again is then safe, since it never ran."""
    prompt = cell(notebook, index).locator(".jp-InputPrompt")
    for _ in range(tries):
        cell_editor(notebook, index).click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function("el => el.innerText.trim() !== '[ ]:'", arg=prompt.element_handle(),
                                   timeout=10_000)
            return
        except PlaywrightTimeout:
            continue
    fail(page, f"{step}-not-run",
         f"cell {index} did not run after {tries} tries of Shift+Enter: its prompt is {prompt.inner_text()!r}")
