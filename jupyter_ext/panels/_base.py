"""What every panel shares: client and project, the red error line, polling, button actions, closing.

A panel subclass builds its widgets, implements :meth:`Panel._update` (fetch, then set the
widgets) and calls :meth:`Panel._start_polling` at the end of its constructor. Everything
here is safe to call from the poller thread, an action thread and the kernel's main thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets

from loopml.client import Client
from loopml.errors import LoopMLError
from loopml.jupyter_ext import context, poller
from loopml.jupyter_ext.panels._html import error_line

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    """One line for the panel: a platform error's own message, else the exception's type and text."""
    if isinstance(exc, LoopMLError):
        return exc.message
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def set_trait(widget: ipywidgets.Widget, name: str, value: Any) -> None:
    """Set a widget trait only when the value differs: no validation, message or re-render otherwise.
    A list is compared and set as a tuple (as ipywidgets keeps ``options``)."""
    if isinstance(value, list):
        value = tuple(value)
    if getattr(widget, name) != value:
        setattr(widget, name, value)


def close_tree(widget: ipywidgets.Widget) -> None:
    """Close ``widget`` and, for boxes, every widget under it (a panel closes its own way)."""
    if isinstance(widget, ipywidgets.Box) and not isinstance(widget, Panel):
        for child in widget.children:
            close_tree(child)
    widget.close()


class Panel(ipywidgets.VBox):
    """Base of the panels.

    ``client=None`` uses :func:`~loopml.jupyter_ext.context.workspace_client` (shared by the
    kernel's panels); ``project=None`` uses
    :func:`~loopml.jupyter_ext.context.default_project` — either may raise a
    :class:`~loopml.errors.LoopMLError` from the constructor, the only place a panel raises.
    ``poll_s`` is the poller interval; ``None`` (or 0) means no background polling: call
    :meth:`refresh` yourself.
    """

    def __init__(self, client: Client | None, project: str | None, *, poll_s: float | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.client = context.workspace_client() if client is None else client
        self.project = project or context.default_project(self.client)
        self.poll_s = poll_s or None
        self.error = ipywidgets.HTML()
        self._refresh_error: str | None = None
        self._action_error: str | None = None
        self._busy = 0
        self._closed = False
        self._refresh_lock = threading.Lock()  # one refresh at a time; held while fetching
        self._lock = threading.Lock()  # _busy and _closed; never held while fetching, so a click never waits
        self._actions: list[threading.Thread] = []

    # -- polling ----------------------------------------------------------------------------

    @property
    def polling(self) -> bool:
        """Whether the poller refreshes this panel."""
        return poller.is_registered(self)

    def _start_polling(self, first_in: float = 0.0) -> None:
        if self.poll_s and not self._closed:
            poller.register(self, self.poll_s, first_in=first_in)

    def stop_polling(self) -> None:
        """Stop background refreshes; the panel stays as it is (:meth:`refresh` still works)."""
        poller.unregister(self)

    def refresh(self) -> None:
        """Fetch once and update the widgets. Never raises: a failure shows in :attr:`error`
        (in red) until a later refresh succeeds. A closed panel does nothing."""
        with self._refresh_lock:
            if self._closed:
                return
            try:
                self._update()
            except Exception as exc:  # the panel is where errors show; nothing may escape to the poller
                if not isinstance(exc, LoopMLError):
                    log.debug("refresh of %s failed", type(self).__name__, exc_info=True)
                self._refresh_error = describe(exc)
            else:
                self._refresh_error = None
            self._sync_buttons()
            self._show_errors()

    def _update(self) -> None:
        """Fetch from the platform and set the widgets; raise on failure."""
        raise NotImplementedError

    # -- errors -----------------------------------------------------------------------------

    def _show_errors(self) -> None:
        lines = [line for line in (self._action_error, self._refresh_error) if line]
        value = "".join(error_line(line) for line in lines)
        if self.error.value != value:
            self.error.value = value

    # -- actions ----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a button action is running."""
        return self._busy > 0

    def _act(self, what: str, action: Callable[[], None]) -> threading.Thread:
        """Run ``action`` in a short-lived daemon thread, so a click never blocks the kernel.

        While it runs :attr:`busy` is true (subclasses disable their buttons by it); its
        failure shows in :attr:`error` as ``"<what> failed: ..."`` until the next action
        succeeds; then the panel refreshes.
        """

        def run() -> None:
            try:
                action()
            except Exception as exc:
                if not isinstance(exc, LoopMLError):
                    log.debug("%s failed", what, exc_info=True)
                self._action_error = f"{what} failed: {describe(exc)}"
            else:
                self._action_error = None
            finally:
                with self._lock:
                    self._busy -= 1
            self.refresh()

        with self._lock:
            self._busy += 1
        self._sync_buttons()
        worker = threading.Thread(target=run, name=f"loopml-{what.lower().replace(' ', '-')}", daemon=True)
        self._actions = [t for t in self._actions if t.is_alive()] + [worker]
        worker.start()
        return worker

    def _refresh_soon(self) -> threading.Thread:
        """Refresh in a short-lived thread (after a choice in the panel changed what it shows)."""
        worker = threading.Thread(target=self.refresh, name="loopml-refresh", daemon=True)
        self._actions = [t for t in self._actions if t.is_alive()] + [worker]
        worker.start()
        return worker

    def _sync_buttons(self) -> None:
        """Enable or disable the buttons from the last data and :attr:`busy`; subclasses with buttons override."""

    def wait_actions(self, timeout: float | None = None) -> bool:
        """Wait for the button actions started so far (and their refresh); ``False`` if one still runs."""
        for worker in list(self._actions):
            worker.join(timeout)
        return not any(worker.is_alive() for worker in self._actions)

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop polling and close every widget of the panel (sub-panels included); the client
        stays open (it may be shared). Idempotent; an action still running finishes unseen."""
        if not hasattr(self, "_lock"):  # the constructor raised: only the bare widget exists
            super().close()
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
        poller.unregister(self)
        for child in self.children:
            close_tree(child)
        self.error.close()
        super().close()


def wide_layout() -> ipywidgets.Layout:
    """A button layout as wide as its label (the default width cuts long labels off)."""
    return ipywidgets.Layout(width="auto")
