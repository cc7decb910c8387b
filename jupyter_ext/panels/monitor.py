"""``MonitorPanel``: an endpoint's traffic, latency, errors, drift and quality, open alerts, and the
two moves that close the loop: Requeue training and Promote challenger."""

from __future__ import annotations

import datetime as dt
from collections import deque

import ipywidgets

from loopml.cli.common import fmt_time
from loopml.client import Client
from loopml.errors import NotFound
from loopml.jupyter_ext.panels._base import Panel, close_tree, set_trait, wide_layout
from loopml.jupyter_ext.panels._html import Raw, colored, esc, fmt_num, table
from loopml.jupyter_ext.panels._svg import bar_chart, estimate_chart, line_chart
from loopml.jupyter_ext.panels.job import JobPanel
from loopml.jupyter_ext.panels.pipeline import PipelinePanel
from loopml.monitor import Alert, MonitorReport, parse_window
from loopml.registry import CHALLENGER, Model, short_name
from loopml.serving import Endpoint

QUALITY_SAMPLES = 120  # refreshes of quality history kept by the panel
ESTIMATE_HELP = (
    "Estimated performance needs no labels: a classifier's confidence, calibrated on held-out rows when the "
    "version was logged (CBPE), or a model of a regressor's errors fit on them (DLE). It holds while the link "
    "between inputs and target is the one the model was trained on: it follows covariate shift (inputs move) "
    "but cannot see concept drift (the same inputs now mean another target) - realized metrics from labels do. "
    "The band is the sampling error of the window's rows only.")
# The platform's default PSI threshold (loopml.monitor.stats.DEFAULT_PSI_THRESHOLD), drawn as a
# guide; not imported, as that module pulls scipy and scikit-learn into the kernel.
PSI_GUIDE = 0.1


def _clock(value: dt.datetime) -> str:
    return value.astimezone().strftime("%H:%M")


def _percent(value: float) -> str:
    return f"{value * 100:.2g}%"


def _metrics(model: Model | None, version: int) -> str:
    found = next((v for v in model.versions if v.version == version), None) if model is not None else None
    if found is None or not found.metrics:
        return ""
    return " (" + ", ".join(f"{k} {fmt_num(v, 4)}" for k, v in sorted(found.metrics.items())) + ")"


def summary_html(report: MonitorReport, endpoint: Endpoint, model: Model | None, challenger: int | None) -> str:
    lat = report.latency_ms
    lines = [
        f"<b>{esc(report.endpoint)}</b> serves v{report.version}{esc(_metrics(model, report.version))} · "
        f"last {esc(report.window)}: {report.requests} requests ({report.rate_per_s:.3g}/s), "
        f"{report.errors} errors"
        + (f" ({_percent(report.error_rate)})" if report.error_rate is not None else "")
        + f", {report.refused} refused · latency p50 {esc(fmt_num(lat.get('p50')))} / "
        f"p95 {esc(fmt_num(lat.get('p95')))} / p99 {esc(fmt_num(lat.get('p99')))} ms · "
        f"{report.labelled} labelled",
    ]
    if report.drifted_features:
        lines.append(colored("drifted: " + ", ".join(report.drifted_features), "#c62828", bold=True))
    if report.estimated is not None:
        lines.append(estimate_line(report))
    quality = report.data_quality
    if quality is not None and quality.affected:
        lines.append(colored(f"data contract: {quality.affected} of {quality.requests} requests "
                             f"({_percent(quality.share)}) broke it", "#c62828", bold=True))
    if challenger is not None:
        lines.append(colored(f"challenger v{challenger}{_metrics(model, challenger)} of {endpoint.model}",
                             "#ef6c00", bold=True))
    lines += [Raw(f"<i>{esc(note)}</i>") for note in report.notes]
    return "<br>".join(lines)


def estimate_line(report: MonitorReport) -> Raw:
    """``estimated accuracy 0.62 [0.58-0.66] (held-out 0.81) · realized 0.60 on 400 labelled rows, error +0.02``."""
    est = report.estimated
    held_out = est.reference.get(est.metric)
    text = (f"estimated {est.metric} {fmt_num(est.value, 3)} [{fmt_num(est.low, 3)}–{fmt_num(est.high, 3)}] "
            f"over {est.n} rows" + (f" (held-out {fmt_num(held_out, 3)})" if held_out is not None else ""))
    if est.f1 is not None:
        text += f", F1 of class {est.f1_class} {fmt_num(est.f1, 3)}"
    if est.realized is not None:
        text += f" · realized {fmt_num(est.realized, 3)} on {est.labelled} labelled rows"
        if est.error is not None:
            text += f", estimate off by {est.error:+.3f}"
    return Raw(f'<span title="{esc(ESTIMATE_HELP)}">{esc(text)} <sup>?</sup></span>')


def quality_table(report: MonitorReport) -> str:
    """The data-contract violations of the window, per feature and kind."""
    quality = report.data_quality
    rows = quality.violations if quality is not None else []
    return table(("feature", "kind", "requests", "rows", "share of requests"),
                 ((v["feature"], colored(v["kind"], "#c62828"), v["requests"], v["rows"], _percent(v["share"]))
                  for v in rows), empty="no data-contract violations")


def charts_html(report: MonitorReport, quality: list[tuple[dt.datetime, float | None]], quality_name: str) -> str:
    """Requests, latency p50 (window p95 as a guide), error rate, drift per feature (PSI) and the
    quality samples this panel has seen, as inline SVG."""
    trend = report.trend
    first = _clock(trend.starts[0]) if trend.starts else ""
    last = _clock(report.until)
    span = {"start_label": first, "end_label": last}
    p95 = report.latency_ms.get("p95")
    bars = [(d.get("feature", "?"), d.get("psi"), bool(d.get("drifted"))) for d in report.drift]
    if report.prediction_drift:
        pred = report.prediction_drift
        bars.append(("(prediction)", pred.get("psi"), bool(pred.get("drifted"))))
    charts = [
        line_chart("requests per bucket", [float(n) for n in trend.requests], fmt="{:.0f}".format, **span),
        line_chart("latency p50 (ms)", trend.latency_p50_ms,
                   reference=(p95, f"p95 {p95:.3g} ms") if p95 is not None else None, **span),
        line_chart("error rate", trend.error_rate, fmt=_percent, color="#c62828", **span),
        bar_chart("drift per feature (PSI)", bars, threshold=PSI_GUIDE),
        line_chart(f"{quality_name} (sampled by this panel)", [v for _, v in quality],
                   start_label=_clock(quality[0][0]) if quality else "", end_label=last, color="#2e7d32"),
    ]
    if report.estimated is not None:
        charts.append(estimate_chart(f"{report.estimated.metric}: estimated vs realized", trend.estimated,
                                     trend.estimated_low, trend.estimated_high, trend.realized, **span))
    return f'<div style="display: flex; flex-wrap: wrap;">{"".join(charts)}</div>'


def alerts_table(alerts: list[Alert]) -> str:
    return table(("opened", "kind", "version", "value", "threshold", "action", "job"),
                 ((fmt_time(a.opened_at), colored(a.kind, "#c62828", bold=True), f"v{a.version}",
                   fmt_num(a.value), fmt_num(a.threshold), a.action, a.job_id) for a in alerts),
                 empty="no open alerts")


class MonitorPanel(Panel):
    """Endpoint ``endpoint`` over the last ``window``, refreshed every ``poll_s`` seconds.

    :attr:`summary` (with the estimated performance, whose help text says what it assumes:
    :data:`ESTIMATE_HELP`), :attr:`charts` (requests, latency, error rate per trend bucket; drift
    per feature; accuracy — or RMSE for regressions — as sampled at each refresh; estimated vs
    realized accuracy or MAE per bucket when the version has an estimator), :attr:`alerts_html`
    (open alerts), :attr:`quality_html` (data-contract violations per feature and kind),
    :attr:`requeue_button` ("Requeue training": the serving version's training job runs again;
    its panel shows below as :attr:`job_panel`) and :attr:`promote_button` ("Promote
    challenger": the model's ``challenger`` version becomes champion and the endpoint switches
    to it, as the platform's auto-promotion does; disabled without a challenger).
    :attr:`report`, :attr:`alerts`, :attr:`challenger` hold the last data.
    :class:`~loopml.errors.InvalidInput` from the constructor for a bad ``window``.
    """

    def __init__(self, endpoint: str, client: Client | None = None, project: str | None = None, *,
                 window: str = "1h", poll_s: float | None = 5.0) -> None:
        parse_window(window)
        super().__init__(client, project, poll_s=poll_s)
        self.endpoint_name = endpoint
        self.window = window
        self.report: MonitorReport | None = None
        self.endpoint: Endpoint | None = None
        self.alerts: list[Alert] = []
        self.challenger: int | None = None
        self.job_panel: JobPanel | PipelinePanel | None = None
        self._served_model: str | None = None
        self._quality: deque[tuple[dt.datetime, float | None]] = deque(maxlen=QUALITY_SAMPLES)
        self._quality_name = "accuracy"
        self.summary = ipywidgets.HTML(f"endpoint <code>{esc(endpoint)}</code>: loading…")
        self.charts = ipywidgets.HTML()
        self.alerts_html = ipywidgets.HTML()
        self.quality_html = ipywidgets.HTML()
        self.requeue_button = ipywidgets.Button(description="Requeue training", icon="redo", layout=wide_layout(),
                                                tooltip="Run the serving version's training job again; "
                                                        "its version becomes the challenger", disabled=True)
        self.promote_button = ipywidgets.Button(description="Promote challenger", icon="star", layout=wide_layout(),
                                                button_style="success", disabled=True,
                                                tooltip="Make the challenger champion and serve it here")
        self.result = ipywidgets.HTML()
        self.requeue_button.on_click(lambda _: self._act("Requeue training", self._requeue))
        self.promote_button.on_click(lambda _: self._act("Promote challenger", self._promote))
        self.job_box = ipywidgets.VBox()
        self.children = [self.summary, self.charts, ipywidgets.HTML("<b>open alerts</b>"), self.alerts_html,
                         ipywidgets.HTML("<b>data quality</b>"), self.quality_html,
                         ipywidgets.HBox([self.requeue_button, self.promote_button]), self.result, self.error,
                         self.job_box]
        self._start_polling()

    def _update(self) -> None:
        report = self.client.monitor(self.project, self.endpoint_name, self.window)
        alerts = self.client.alerts(self.project, endpoint=self.endpoint_name, status="open")
        endpoint = self.client.endpoint(self.project, self.endpoint_name)
        try:
            model = self.client.model(self.project, endpoint.model)
        except NotFound:  # the served model was deleted from the registry: monitoring still shows
            model = None
        challenger = model.aliases.get(CHALLENGER) if model is not None else None
        self.report, self.alerts, self.endpoint = report, alerts, endpoint
        self._served_model = short_name(self.project, endpoint.model)
        self.challenger = challenger if challenger not in (None, endpoint.version) else None
        quality = report.quality or {}
        self._quality_name = "rmse" if quality.get("task") == "regression" else "accuracy"
        self._quality.append((report.until, quality.get(self._quality_name)))
        set_trait(self.summary, "value", summary_html(report, endpoint, model, self.challenger))
        set_trait(self.charts, "value", charts_html(report, list(self._quality), self._quality_name))
        set_trait(self.alerts_html, "value", alerts_table(alerts))
        set_trait(self.quality_html, "value", quality_table(report))

    def _sync_buttons(self) -> None:
        set_trait(self.requeue_button, "disabled", self.busy or self.endpoint is None)
        set_trait(self.promote_button, "disabled", self.busy or self.challenger is None)

    # -- actions (in a worker thread) ---------------------------------------------------------

    def _requeue(self) -> None:
        requeued = self.client.requeue_endpoint(self.project, self.endpoint_name)
        poll_s = 1.0 if self.poll_s else None
        if requeued.pipeline_run is not None:  # the version came from a pipeline: it runs again
            what, started = "training pipeline run", requeued.pipeline_run.id
            panel = PipelinePanel(started, self.client, self.project, poll_s=poll_s)
        else:
            what, started = "training job", requeued.job.id
            panel = JobPanel(started, self.client, self.project, poll_s=poll_s)
        if not panel.polling:
            panel.refresh()
        old, self.job_panel = self.job_box.children, panel
        self.job_box.children = [ipywidgets.HTML(f"<b>{what}</b> <code>{esc(started)}</code> "
                                                 f"(alert {esc(requeued.alert.id)}):"), panel]
        for widget in old:
            close_tree(widget)

    def _promote(self) -> None:
        version, model, name = self.challenger, self._served_model, self.endpoint_name
        if version is None or model is None:
            return
        self.client.promote(self.project, model, version)
        deployed = self.client.deploy(self.project, f"{model}/{version}", name)
        self.result.value = (f"v{version} of {esc(model)} is champion; {esc(name)} serves "
                             f"v{deployed.endpoint.version}")
