"""``loopml monitor`` and ``loopml feedback``: an endpoint's monitor report, and labels for its requests.

Registered on the root group by :mod:`loopml.cli`. ENDPOINT is ``name`` (in ``-P``'s
project) or ``project/name``; both commands print the server's answer with ``--json``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from loopml.cli.common import LabelsSent, fmt_time
from loopml.cli.util import (
    client_from,
    echo_fields,
    echo_json,
    echo_table,
    json_option,
    project_option,
    resolve_project,
)
from loopml.errors import InvalidInput
from loopml.monitor.models import MonitorReport

BARS = "▁▂▃▄▅▆▇█"
LABEL_COLUMNS = ("request_id", "label")
SHOWN_UNKNOWN = 20


def endpoint_ref(ctx: click.Context, endpoint: str, project: str | None) -> tuple[str, str]:
    """``(project, name)`` of ENDPOINT: ``name`` in ``-P``'s (or the default) project, or ``project/name``."""
    owner, sep, name = endpoint.partition("/")
    if not sep:
        return resolve_project(ctx, project), endpoint
    if not owner or not name or "/" in name:
        raise click.BadParameter(f"{endpoint!r}: use NAME or PROJECT/NAME", ctx=ctx, param_hint="ENDPOINT")
    if project and project != owner:
        raise click.UsageError(f"ENDPOINT {endpoint!r} is in project {owner!r} but -P says {project!r}: give one",
                               ctx=ctx)
    return owner, name


def sparkline(values: Sequence[float | None]) -> str:
    """One bar per value, from 0 to the largest value (``▁`` … ``█``); a gap for a missing value."""
    present = [v for v in values if v is not None]
    if not present:
        return ""
    top = max(max(present), 0) or 1
    steps = len(BARS) - 1
    return "".join(" " if v is None else BARS[max(0, min(steps, round(v / top * steps)))] for v in values)


def _span(seconds: float) -> str:
    """``300`` -> ``5m``: a bucket width in the window's own units."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


def _number(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _drift_row(feature: str, drift: dict[str, Any]) -> tuple[str, ...]:
    return (feature, drift["test"], _number(drift["statistic"]), _number(drift["p_value"], ".3g"),
            _number(drift["psi"]), str(drift["n_live"]), "DRIFT" if drift["drifted"] else "")


def _echo_report(report: MonitorReport) -> None:
    trend = report.trend
    width = (report.until - report.since).total_seconds() / max(len(trend.starts), 1)
    echo_fields([
        ("endpoint", f"{report.project}/{report.endpoint} v{report.version}"),
        ("window", (f"{report.window}  ({fmt_time(report.since)} to {fmt_time(report.until)}; "
                    f"trend in {len(trend.starts)} buckets of {_span(width)})")),
    ])
    click.echo()
    echo_table(("TRAFFIC", "VALUE", "TREND"), [
        ("requests", report.requests, sparkline(trend.requests)),
        ("rate", f"{report.rate_per_s:.3g}/s", ""),
        ("errors (5xx)", report.errors, ""),
        ("refused (4xx)", report.refused, ""),
        ("error rate", "-" if report.error_rate is None else f"{report.error_rate:.1%}", sparkline(trend.error_rate)),
    ])
    click.echo()
    latency = report.latency_ms
    echo_table(("LATENCY", "MS", "TREND"), [
        ("p50", _number(latency.get("p50"), ".1f"), sparkline(trend.latency_p50_ms)),
        ("p95", _number(latency.get("p95"), ".1f"), ""),
        ("p99", _number(latency.get("p99"), ".1f"), ""),
    ])
    if report.drift or report.prediction_drift:
        click.echo()
        rows = [_drift_row(d["feature"], d) for d in report.drift]
        if report.prediction_drift is not None:
            rows.append(_drift_row("(predictions)", report.prediction_drift))
        echo_table(("DRIFT", "TEST", "STATISTIC", "P-VALUE", "PSI", "LIVE ROWS", ""), rows)
    click.echo()
    quality = report.quality or {}
    metrics = [(name, _number(quality.get(name))) for name in ("accuracy", "f1", "mae", "rmse") if name in quality]
    echo_table(("QUALITY", "VALUE"), [("labelled requests", report.labelled),
                                      *([("scored rows", quality["n"])] if "n" in quality else []), *metrics])
    if report.estimated is not None:
        click.echo()
        _echo_estimate(report)
    if report.data_quality is not None and report.data_quality.violations:
        click.echo()
        dq = report.data_quality
        echo_table(("DATA CONTRACT", "KIND", "REQUESTS", "ROWS", "SHARE"),
                   [(v["feature"], v["kind"], v["requests"], v["rows"], f"{v['share']:.1%}") for v in dq.violations])
        click.echo(f"{dq.affected} of {dq.requests} requests ({dq.share:.1%}) broke the data contract")
    click.echo()
    echo_fields([
        ("drifted", ", ".join(report.drifted_features) or "none"),
        ("capture dropped", report.capture_dropped or None),
    ])
    for note in report.notes:
        click.echo(f"note: {note}")
    if not report.labelled:
        click.echo(f"note: no labels yet: `loopml feedback {report.endpoint} labels.csv -P {report.project}` "
                   "sends them")


def _echo_estimate(report: MonitorReport) -> None:
    est, trend = report.estimated, report.trend
    rows = [(f"estimated {est.metric}", _number(est.value), sparkline(trend.estimated)),
            ("95% band", f"{_number(est.low)} to {_number(est.high)}", ""),
            (f"held-out {est.metric}", _number(est.reference.get(est.metric)), f"({est.source})")]
    if est.f1 is not None:
        rows.append((f"estimated F1 (class {est.f1_class})", _number(est.f1), ""))
    if est.realized is not None:
        rows += [(f"realized {est.metric}", _number(est.realized), sparkline(trend.realized)),
                 ("estimate error", _number(est.error, "+.3f"), f"on {est.labelled} labelled rows")]
    echo_table(("ESTIMATED (NO LABELS)", "VALUE", "TREND"), rows)


@click.command("monitor")
@click.argument("endpoint")
@project_option
@click.option("--window", default="1h", show_default=True, metavar="SPAN",
              help="How far back: a number and s, m, h or d (e.g. 15m, 24h, 7d; at most 30d).")
@json_option
@click.pass_context
def monitor(ctx: click.Context, endpoint: str, project: str | None, window: str,
            as_json: bool) -> MonitorReport | None:
    """ENDPOINT's traffic, latency, drift and quality over the last --window, with trends.

    ENDPOINT is NAME or PROJECT/NAME. Drift compares the served version's inputs with its
    reference sample; quality needs labels (`loopml feedback`); the estimate (CBPE for
    classifiers, DLE for regressors) needs none, and holds under covariate shift, not concept drift.
    """
    project, name = endpoint_ref(ctx, endpoint, project)
    report = client_from(ctx).monitor(project, name, window)
    if as_json:
        echo_json(report)
        return None
    _echo_report(report)
    return report


def _label(text: str) -> Any:
    """A label as sent: an int or a finite float when the text reads as one, else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def read_labels(path: Path) -> list[dict[str, Any]]:
    """``[{"request_id", "label"}]`` from a CSV file with the header ``request_id,label``.

    :class:`InvalidInput` with the file (and line) for a missing or unreadable file, another
    header, an empty cell, or no labels at all.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file", field="file") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}", field="file") from None
    items = []
    with handle:
        try:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            if sorted(header) != sorted(LABEL_COLUMNS):
                found = ",".join(header) if header else "nothing"
                raise InvalidInput(f"{path}: the header must be request_id,label (found {found})", field="file")
            reader.fieldnames = header
            for row in reader:
                if None in row or any(row[name] is None for name in LABEL_COLUMNS):
                    raise InvalidInput(f"{path}, line {reader.line_num}: expected 2 cells (request_id,label)",
                                       field="file")
                request_id, label = row["request_id"].strip(), row["label"].strip()
                if not request_id or not label:
                    empty = "request_id" if not request_id else "label"
                    raise InvalidInput(f"{path}, line {reader.line_num}: empty {empty}", field="file")
                items.append({"request_id": request_id, "label": _label(label)})
        except UnicodeDecodeError:
            raise InvalidInput(f"{path} is not a UTF-8 text file: save it as CSV (UTF-8)", field="file") from None
        except csv.Error as exc:
            raise InvalidInput(f"{path}, line {reader.line_num}: not valid CSV ({exc})", field="file") from None
    if not items:
        raise InvalidInput(f"{path}: no labels after the header", field="file")
    return items


@click.command("feedback")
@click.argument("endpoint")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@project_option
@json_option
@click.pass_context
def feedback(ctx: click.Context, endpoint: str, file: Path, project: str | None, as_json: bool) -> LabelsSent | None:
    """Send true labels for ENDPOINT's requests from FILE, a CSV with the header request_id,label.

    Request ids are the x-request-id headers of the endpoint's answers; labels that read as
    numbers are sent as numbers. Resending a file is harmless (labels count as unchanged);
    ids the platform never captured are listed as a warning.
    """
    items = read_labels(file)
    project, name = endpoint_ref(ctx, endpoint, project)
    result = client_from(ctx).feedback(project, name, items)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{name}: {result.accepted} accepted, {result.updated} updated, {result.unchanged} unchanged, "
                   f"{len(result.unknown)} unknown")
    if result.unknown:
        shown = ", ".join(result.unknown[:SHOWN_UNKNOWN])
        more = f" and {len(result.unknown) - SHOWN_UNKNOWN} more" if len(result.unknown) > SHOWN_UNKNOWN else ""
        click.echo(f"warning: {len(result.unknown)} request ids have no captured request of {project}/{name}: "
                   f"{shown}{more}", err=True)
    return None if as_json else LabelsSent(project, name, result)


COMMANDS = (monitor, feedback)
