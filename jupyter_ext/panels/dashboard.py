"""``dashboard()``: where the project stands in the loop (a row of stages), over its panels in
tabs — Jobs, Models, Endpoints, Monitor."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets

from loopml.client import Client
from loopml.jupyter_ext import context
from loopml.jupyter_ext.panels._base import Panel, set_trait
from loopml.jupyter_ext.panels._html import esc
from loopml.jupyter_ext.panels.endpoint import EndpointPanel
from loopml.jupyter_ext.panels.jobs import JobsPanel
from loopml.jupyter_ext.panels.loop import LoopPanel
from loopml.jupyter_ext.panels.models import ModelsPanel
from loopml.jupyter_ext.panels.monitor import MonitorPanel

TABS = ("Jobs", "Models", "Endpoints", "Monitor")


class EndpointPicker(Panel):
    """A dropdown of the project's endpoints (refreshed every ``poll_s`` seconds) over the panel
    ``make(name)`` builds for the chosen one (:attr:`panel`); choosing another closes the previous."""

    def __init__(self, make: Callable[[str], Panel], client: Client | None = None, project: str | None = None, *,
                 poll_s: float | None = 10.0) -> None:
        super().__init__(client, project, poll_s=poll_s)
        self.make = make
        self.panel: Panel | None = None
        self.shown: str | None = None  # the endpoint self.panel shows
        self.names: list[str] = []
        self._syncing = False
        self.picker = ipywidgets.Dropdown(description="endpoint", options=())
        self.picker.observe(self._picked, "value")
        self.slot = ipywidgets.VBox()
        self.empty = ipywidgets.HTML(f"<i>no endpoints in project {esc(self.project)}</i>",
                                     layout=ipywidgets.Layout(display="none"))
        self.children = [self.picker, self.empty, self.error, self.slot]
        self._start_polling()

    def _update(self) -> None:
        self.names = sorted(e.name for e in self.client.endpoints(self.project))
        self._syncing = True
        try:
            set_trait(self.picker, "options", self.names)
            if self.picker.value is None and self.names:  # nothing picked yet: the first endpoint
                self.picker.value = self.names[0]
        finally:
            self._syncing = False
        self._show(self.picker.value)
        set_trait(self.empty.layout, "display", None if not self.names else "none")

    def _picked(self, change) -> None:
        if not self._syncing:
            self._show(change["new"])

    def _show(self, name: str | None) -> None:
        with self._lock:  # a pick (main thread) and a refresh (poller) may both get here
            if self._closed or name == self.shown:
                return
            previous, self.panel, self.shown = self.panel, (self.make(name) if name else None), name
            self.slot.children = (self.panel,) if self.panel is not None else ()
        if previous is not None:
            previous.close()


class Dashboard(ipywidgets.VBox):
    """What :func:`dashboard` shows: :attr:`loop` (the row of stages) over :attr:`tabs` (the
    panels); :meth:`close` closes every panel."""

    def __init__(self, loop: LoopPanel, panels: list[Panel]) -> None:
        tabs = ipywidgets.Tab(children=panels, titles=TABS)
        super().__init__(children=[loop, tabs])
        self.loop, self.tabs, self.panels = loop, tabs, panels

    def close(self) -> None:
        for panel in (self.loop, *self.panels):
            panel.close()
        self.tabs.close()
        super().close()


def dashboard(project: str | None = None, client: Client | None = None) -> Dashboard:
    """Where ``project`` stands in the loop (:class:`LoopPanel`: each stage, the object that
    reached it and when) over every panel of it in tabs: Jobs (:class:`JobsPanel`), Models
    (:class:`ModelsPanel`), Endpoints and Monitor (an endpoint dropdown over its
    :class:`EndpointPanel` / :class:`MonitorPanel`). ``client``/``project`` default as for the
    panels; all panels share one client. Closing the dashboard closes its panels. Raises only
    what the defaults raise."""
    client = context.workspace_client() if client is None else client
    project = project or context.default_project(client)
    return Dashboard(LoopPanel(client, project), [
        JobsPanel(client, project),
        ModelsPanel(None, client, project),
        EndpointPicker(lambda name: EndpointPanel(name, client, project), client, project),
        EndpointPicker(lambda name: MonitorPanel(name, client, project), client, project),
    ])
