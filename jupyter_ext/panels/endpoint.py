"""``EndpointPanel``: the versions an endpoint serves, its traffic split and history, with Rollback."""

from __future__ import annotations

import ipywidgets

from loopml.cli.common import fmt_time
from loopml.client import Client
from loopml.jupyter_ext.panels._base import Panel, set_trait, wide_layout
from loopml.jupyter_ext.panels._html import esc, link, table
from loopml.serving import Endpoint

HISTORY_ROWS = 20
STABLE_COLOR, CANARY_COLOR = "#1565c0", "#ef6c00"


def traffic_html(endpoint: Endpoint) -> str:
    """A bar split between the live version and the canary (if any), with the shares written out."""
    canary = endpoint.canary_percent if endpoint.canary_version is not None else None
    parts = [(f"v{endpoint.version}", 100.0 - (canary or 0.0), STABLE_COLOR)]
    if canary is not None:
        parts.append((f"v{endpoint.canary_version} canary", canary, CANARY_COLOR))
    bar = "".join(
        f'<div style="width: {share:.4g}%; background: {color}; color: white; padding: 2px 4px; '
        f'white-space: nowrap; overflow: hidden;">{esc(label)} {share:.4g}%</div>'
        for label, share, color in parts if share > 0)
    return f'<div style="display: flex; width: 420px; font-size: 12px; border-radius: 3px;">{bar}</div>'


def summary_html(endpoint: Endpoint) -> str:
    scaling = (f"autoscale {endpoint.autoscale.min}–{endpoint.autoscale.max} replicas" if endpoint.autoscale
               else f"{endpoint.replicas} replica{'s' if endpoint.replicas != 1 else ''}")
    served = f"{endpoint.model} v{endpoint.version}" + (f" (@{endpoint.alias})" if endpoint.alias else "")
    if endpoint.canary_version is not None:
        served += f", canary v{endpoint.canary_version} at {endpoint.canary_percent:g}%"
    return (f"<b>{esc(endpoint.name)}</b> <code>{esc(endpoint.status)}</code> serves {esc(served)}<br>"
            f"{link(endpoint.url, endpoint.url)} · {esc(scaling)} · {'public' if endpoint.public else 'key required'}"
            f" · updated {esc(fmt_time(endpoint.updated_at))}")


def history_table(endpoint: Endpoint) -> str:
    entries = sorted(endpoint.history, key=lambda e: e.at, reverse=True)[:HISTORY_ROWS]
    return table(("at", "user", "action", "version", "kind"),
                 ((fmt_time(e.at), e.user, e.action, e.version, e.kind) for e in entries), empty="no history")


class EndpointPanel(Panel):
    """Endpoint ``name``: :attr:`summary` (versions served, status, URL, scaling), :attr:`traffic`
    (the split between the live version and the canary), :attr:`history` (newest first),
    :attr:`rollback_button` (drop the canary, or go back to the previous live version) and
    :attr:`promote_canary_button` (the canary takes all traffic; disabled without one),
    refreshed every ``poll_s`` seconds. :attr:`endpoint` is the last
    :class:`~loopml.serving.models.Endpoint` fetched.
    """

    def __init__(self, name: str, client: Client | None = None, project: str | None = None, *,
                 poll_s: float | None = 5.0) -> None:
        super().__init__(client, project, poll_s=poll_s)
        self.name = name
        self.endpoint: Endpoint | None = None
        self.summary = ipywidgets.HTML(f"endpoint <code>{esc(name)}</code>: loading…")
        self.traffic = ipywidgets.HTML()
        self.history = ipywidgets.HTML()
        self.rollback_button = ipywidgets.Button(description="Rollback", icon="undo", button_style="warning",
                                                 tooltip="Drop the canary, or go back to the previous version",
                                                 disabled=True)
        self.promote_canary_button = ipywidgets.Button(description="Promote canary", icon="check", layout=wide_layout(),
                                                       tooltip="The canary version takes all traffic", disabled=True)
        self.rollback_button.on_click(lambda _: self._act("Rollback", self._rollback))
        self.promote_canary_button.on_click(lambda _: self._act("Promote canary", self._promote_canary))
        self.children = [self.summary, self.traffic,
                         ipywidgets.HBox([self.rollback_button, self.promote_canary_button]),
                         self.error, ipywidgets.HTML("<b>history</b>"), self.history]
        self._start_polling()

    def _update(self) -> None:
        self._show(self.client.endpoint(self.project, self.name))

    def _show(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        set_trait(self.summary, "value", summary_html(endpoint))
        set_trait(self.traffic, "value", traffic_html(endpoint))
        set_trait(self.history, "value", history_table(endpoint))

    def _sync_buttons(self) -> None:
        endpoint = self.endpoint
        set_trait(self.rollback_button, "disabled", self.busy or endpoint is None)
        set_trait(self.promote_canary_button, "disabled",
                  self.busy or endpoint is None or endpoint.canary_version is None)

    # -- actions (in a worker thread) ---------------------------------------------------------

    def _rollback(self) -> None:
        self.endpoint = self.client.rollback_endpoint(self.project, self.name)

    def _promote_canary(self) -> None:
        self.endpoint = self.client.promote_endpoint(self.project, self.name)

