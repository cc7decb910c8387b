"""HTML fragments the panels render: every piece of platform text goes through :func:`esc`.

Platform data (job names, log lines, metric names, alert details) is user-controlled, so no
value reaches a widget's HTML unescaped; :class:`Raw` marks fragments built here from
escaped parts.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from loopml.executor import JobStatus

ERROR_COLOR = "#c62828"
MISSING = "—"

STATUS_COLORS = {
    JobStatus.QUEUED: "#616161",
    JobStatus.RUNNING: "#1565c0",
    JobStatus.SUCCEEDED: "#2e7d32",
    JobStatus.FAILED: ERROR_COLOR,
    JobStatus.CANCELLED: "#ef6c00",
}

# One <style> per table rather than a style attribute per cell: a 50-row table stays small on the wire.
TABLE_CSS = ("<style>table.loopml-table {border-collapse: collapse; font-size: 12px;} "
             "table.loopml-table td, table.loopml-table th {padding: 2px 8px; border-bottom: 1px solid #e0e0e0; "
             "text-align: left; vertical-align: top;}</style>")


class Raw(str):
    """HTML built here from escaped parts: :func:`esc` leaves it as is."""


def esc(value: Any) -> str:
    """``value`` as HTML text: :class:`Raw` unchanged, ``None`` as a dash, anything else escaped."""
    if isinstance(value, Raw):
        return value
    if value is None:
        return MISSING
    return html.escape(str(value))


def fmt_num(value: float | None, digits: int = 3) -> str | None:
    return None if value is None else f"{value:.{digits}g}"


def colored(text: Any, color: str, *, bold: bool = False) -> Raw:
    weight = " font-weight: bold;" if bold else ""
    return Raw(f'<span style="color: {color};{weight}">{esc(text)}</span>')


def status_badge(status: JobStatus) -> Raw:
    return colored(status.value, STATUS_COLORS.get(status, "#000"), bold=True)


def link(url: str, text: Any) -> Raw:
    return Raw(f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener">{esc(text)}</a>')


def error_line(message: str) -> str:
    """The red line of a panel's ``.error``."""
    return f'<div style="color: {ERROR_COLOR}; white-space: pre-wrap;">{esc(message)}</div>'


def table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, empty: str = "nothing yet") -> str:
    """An HTML table; every cell escaped unless :class:`Raw`. ``empty`` replaces a table without rows."""
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<i style="color: #757575;">{esc(empty)}</i>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f'{TABLE_CSS}<table class="loopml-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
