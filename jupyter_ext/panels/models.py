"""``ModelsPanel``: the project's registered models, or one model's versions side by side, with Deploy and Promote."""

from __future__ import annotations

import ipywidgets

from loopml.cli.common import fmt_time
from loopml.cli.models import pipeline_of
from loopml.client import Client
from loopml.errors import InvalidInput
from loopml.jupyter_ext.panels._base import Panel, set_trait
from loopml.jupyter_ext.panels._html import Raw, colored, esc, fmt_num, link, table
from loopml.registry import CHALLENGER, CHAMPION, Model, ModelSummary, ModelVersion

MAX_SIDE_BY_SIDE = 8  # versions compared at once, newest first
ALIAS_COLORS = {CHAMPION: "#2e7d32", CHALLENGER: "#ef6c00"}
ALL = ""


def aliases_html(aliases: list[str] | dict[str, int]) -> Raw:
    """``champion challenger other``: champion and challenger first and colored, the rest by name."""
    names = sorted(aliases, key=lambda a: (a not in ALIAS_COLORS, a != CHAMPION, a))
    return Raw(" ".join(colored(a, ALIAS_COLORS.get(a, "#424242"), bold=a in ALIAS_COLORS) for a in names))


def versions_table(model: Model) -> str:
    """The newest :data:`MAX_SIDE_BY_SIDE` versions as columns; rows: aliases, status, created,
    every metric and param any of them has, and the job that trained each."""
    versions = model.versions[:MAX_SIDE_BY_SIDE]
    metrics = sorted({k for v in versions for k in v.metrics})
    params = sorted({k for v in versions for k in v.params})
    rows: list[list] = [
        ["aliases", *(aliases_html(v.aliases) for v in versions)],
        ["status", *(v.status for v in versions)],
        ["created", *(fmt_time(v.created_at) for v in versions)],
        *([f"metric {m}", *(fmt_num(v.metrics.get(m), 4) for v in versions)] for m in metrics),
        *([f"param {p}", *(v.params.get(p) for v in versions)] for p in params),
        ["job", *(v.lineage.job_id for v in versions)],
        *([["pipeline", *(pipeline_of(v) for v in versions)]] if any(v.lineage.pipeline_run_id for v in versions)
          else []),
        ["served by", *(", ".join(v.lineage.endpoints) or None for v in versions)],
    ]
    return table(["", *(f"v{v.version}" for v in versions)], rows, empty="no versions")


def models_table(models: list[ModelSummary]) -> str:
    return table(("model", "latest", "aliases", "updated"),
                 ((m.name, m.latest_version, aliases_html(m.aliases), fmt_time(m.updated_at)) for m in models),
                 empty="no registered models")


def _version_options(versions: list[ModelVersion]) -> list[tuple[str, int]]:
    return [(f"v{v.version}" + (f" ({', '.join(v.aliases)})" if v.aliases else ""), v.version) for v in versions]


class ModelsPanel(Panel):
    """All models of the project (``name=None``; pick one in :attr:`picker`), or model ``name``'s
    versions side by side in :attr:`table`, refreshed every ``poll_s`` seconds.

    With a model shown: Deploy (:attr:`endpoint_name` text, :attr:`deploy_version` dropdown,
    :attr:`deploy_button`; the answer, with the endpoint's key when just created, in
    :attr:`deploy_result`) and Promote (:attr:`promote_version`, :attr:`promote_button`: the
    version becomes ``champion``). :attr:`models` holds the summaries, :attr:`model` the shown
    model (``None`` when listing).
    """

    def __init__(self, name: str | None = None, client: Client | None = None, project: str | None = None, *,
                 poll_s: float | None = 10.0) -> None:
        super().__init__(client, project, poll_s=poll_s)
        self.name = name
        self.models: list[ModelSummary] = []
        self.model: Model | None = None
        self._syncing = False
        self.picker = ipywidgets.Dropdown(description="model", options=[("all models", ALL)], value=ALL)
        if name:
            self.picker.options = [("all models", ALL), (name, name)]
            self.picker.value = name
        self.picker.observe(self._picked, "value")
        self.table = ipywidgets.HTML("loading…")
        self.endpoint_name = ipywidgets.Text(description="endpoint", placeholder="endpoint name")
        self.deploy_version = ipywidgets.Dropdown(description="version", options=[])
        self.deploy_button = ipywidgets.Button(description="Deploy", icon="rocket", button_style="primary",
                                               tooltip="Serve the version at the endpoint (created or switched)")
        self.deploy_result = ipywidgets.HTML()
        self.promote_version = ipywidgets.Dropdown(description="champion", options=[])
        self.promote_button = ipywidgets.Button(description="Promote", icon="star",
                                                tooltip="Make the version the champion")
        self.deploy_button.on_click(lambda _: self._act("Deploy", self._deploy))
        self.promote_button.on_click(lambda _: self._act("Promote", self._promote))
        self.controls = ipywidgets.VBox([
            ipywidgets.HBox([self.endpoint_name, self.deploy_version, self.deploy_button]),
            self.deploy_result,
            ipywidgets.HBox([self.promote_version, self.promote_button]),
        ])
        self.children = [self.picker, self.table, self.controls, self.error]
        self._sync_buttons()
        self._start_polling()

    def _picked(self, change) -> None:
        if self._syncing:
            return
        self.name = change["new"] or None
        self.model = None
        self.deploy_version.options = self.promote_version.options = ()
        set_trait(self.table, "value", "loading…")
        self._sync_buttons()
        self._refresh_soon()

    def _update(self) -> None:
        name = self.name
        models = self.client.models(self.project)
        model = self.client.model(self.project, name) if name else None
        if name != self.name:  # the picker moved while fetching: the next refresh shows the new choice
            return
        self.models, self.model = models, model
        self._syncing = True
        try:
            options = [("all models", ALL), *((m.name, m.name) for m in models)]
            if name and name not in {m.name for m in models}:
                options.append((name, name))
            set_trait(self.picker, "options", options)
            if model is not None:
                options = _version_options(model.versions)
                self._fill(self.deploy_version, options, model.aliases.get(CHAMPION) or model.latest_version)
                self._fill(self.promote_version, options, model.aliases.get(CHALLENGER) or model.latest_version)
        finally:
            self._syncing = False
        set_trait(self.table, "value", versions_table(model) if model is not None else models_table(models))

    @staticmethod
    def _fill(dropdown: ipywidgets.Dropdown, options: list[tuple[str, int]], default: int | None) -> None:
        """New ``options``, keeping the user's pick; ``default`` is picked when the list was empty."""
        first = not dropdown.options
        set_trait(dropdown, "options", options)
        if first and default is not None:
            dropdown.value = default

    def _sync_buttons(self) -> None:
        shown = self.model is not None
        set_trait(self.controls.layout, "display", None if self.name else "none")
        set_trait(self.deploy_button, "disabled", self.busy or not shown)
        set_trait(self.promote_button, "disabled", self.busy or not shown)

    # -- actions (in a worker thread) ---------------------------------------------------------

    def _deploy(self) -> None:
        name, version, endpoint = self.name, self.deploy_version.value, self.endpoint_name.value.strip()
        if not endpoint or version is None:
            raise InvalidInput("give an endpoint name and pick a version", field="endpoint")
        deployed = self.client.deploy(self.project, f"{name}/{version}", endpoint)
        served = deployed.endpoint
        text = f"{esc(served.name)} serves {esc(served.model)} v{served.version} at " + link(served.url, served.url)
        if deployed.key:
            text += (f"<br>key (shown once, keep it now): <code>{esc(deployed.key)}</code>")
        self.deploy_result.value = text

    def _promote(self) -> None:
        version = self.promote_version.value
        if version is None:
            raise InvalidInput("pick a version to promote", field="version")
        self.model = self.client.promote(self.project, self.name, version)
