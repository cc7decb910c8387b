"""Small inline SVG charts for the monitor panel: no plotting library, every text escaped.

Each function returns one ``<svg>`` element as a string, sized for a row of charts.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

WIDTH, HEIGHT = 260, 110
TOP, BOTTOM, LEFT, RIGHT = 22, 18, 8, 8
AXIS, TEXT, LINE, BAD, GUIDE = "#bdbdbd", "#424242", "#1565c0", "#c62828", "#9e9e9e"


def _svg(body: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" style="font: 10px sans-serif; margin: 0 8px 8px 0; '
            f'background: #fafafa; border: 1px solid #eeeeee;">{body}</svg>')


def _text(x: float, y: float, text: str, *, anchor: str = "start", color: str = TEXT, bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{color}"{weight}>'
            f"{html.escape(text)}</text>")


def line_chart(title: str, values: Sequence[float | None], *, fmt: Callable[[float], str] = "{:.3g}".format,
               start_label: str = "", end_label: str = "", reference: tuple[float, str] | None = None,
               color: str = LINE) -> str:
    """``values`` (oldest first; ``None`` leaves a gap) as a line from 0 up, titled, with the
    last value top right. ``reference`` ``(value, label)`` adds a dashed horizontal guide."""
    known = [v for v in values if v is not None]
    parts = [_text(LEFT, 13, title, bold=True)]
    if not known:
        parts.append(_text(WIDTH / 2, HEIGHT / 2 + 4, "no data", anchor="middle", color=GUIDE))
        return _svg("".join(parts))
    top = max([*known, reference[0] if reference else 0.0]) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (len(values) - 1) if len(values) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="{AXIS}"/>')
    if reference is not None:
        ry = y(reference[0])
        parts.append(f'<line x1="{LEFT}" y1="{ry:.1f}" x2="{LEFT + plot_w}" y2="{ry:.1f}" stroke="{GUIDE}" '
                     f'stroke-dasharray="3,3"/>')
        parts.append(_text(LEFT + plot_w, ry - 2, reference[1], anchor="end", color=GUIDE))
    run: list[str] = []
    for i, v in enumerate([*values, None]):
        if v is not None:
            run.append(f"{x(i):.1f},{y(v):.1f}")
            continue
        if len(run) > 1:
            parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        elif run:
            cx, cy = run[0].split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
        run = []
    parts.append(_text(WIDTH - RIGHT, 13, f"{fmt(known[-1])}", anchor="end", color=color, bold=True))
    parts.append(_text(LEFT, TOP + 8, f"max {fmt(max(known))}", color=GUIDE))
    parts.append(_text(LEFT, HEIGHT - 5, start_label, color=GUIDE))
    parts.append(_text(WIDTH - RIGHT, HEIGHT - 5, end_label, anchor="end", color=GUIDE))
    return _svg("".join(parts))


def bar_chart(title: str, bars: Sequence[tuple[str, float | None, bool]], *, threshold: float | None = None,
              fmt: Callable[[float], str] = "{:.3g}".format) -> str:
    """Horizontal bars ``(label, value, flagged)``, flagged ones red; ``threshold`` draws a dashed guide."""
    row = 16
    height = TOP + max(len(bars), 1) * row + 6
    parts = [_text(LEFT, 13, title, bold=True)]
    if not bars:
        parts.append(_text(WIDTH / 2, TOP + 10, "no data", anchor="middle", color=GUIDE))
        return _svg("".join(parts), height=height)
    label_w, value_w = 100, 40
    plot_w = WIDTH - LEFT - RIGHT - label_w - value_w
    top = max([v for _, v, _ in bars if v is not None] + [threshold or 0.0]) or 1.0
    for i, (label, value, flagged) in enumerate(bars):
        y0 = TOP + i * row
        short = label if len(label) <= 16 else label[:15] + "…"
        parts.append(_text(LEFT, y0 + 11, short, color=BAD if flagged else TEXT))
        if value is None:
            parts.append(_text(LEFT + label_w, y0 + 11, "n/a", color=GUIDE))
            continue
        w = max(plot_w * value / top, 1.0)
        parts.append(f'<rect x="{LEFT + label_w}" y="{y0 + 3}" width="{w:.1f}" height="{row - 6}" '
                     f'fill="{BAD if flagged else LINE}"><title>{html.escape(label)}: {fmt(value)}</title></rect>')
        parts.append(_text(WIDTH - RIGHT, y0 + 11, fmt(value), anchor="end", color=BAD if flagged else TEXT))
    if threshold is not None:
        tx = LEFT + label_w + plot_w * threshold / top
        parts.append(f'<line x1="{tx:.1f}" y1="{TOP}" x2="{tx:.1f}" y2="{height - 4}" stroke="{GUIDE}" '
                     f'stroke-dasharray="3,3"/>')
    return _svg("".join(parts), height=height)


def estimate_chart(title: str, estimated: Sequence[float | None], low: Sequence[float | None],
                   high: Sequence[float | None], realized: Sequence[float | None], *,
                   fmt: Callable[[float], str] = "{:.3g}".format, start_label: str = "", end_label: str = "") -> str:
    """Estimated values (solid, with their band shaded) and realized ones (dashed, green) per
    bucket on one scale, oldest first; ``None`` leaves a gap."""
    known = [v for series in (estimated, high, realized) for v in series if v is not None]
    parts = [_text(LEFT, 13, title, bold=True)]
    if not known:
        parts.append(_text(WIDTH / 2, HEIGHT / 2 + 4, "no data", anchor="middle", color=GUIDE))
        return _svg("".join(parts))
    top = max(known) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = max(len(estimated), len(realized), 1)

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="{AXIS}"/>')
    for i, (lo, hi) in enumerate(zip(low, high, strict=False)):
        if lo is not None and hi is not None:
            parts.append(f'<line x1="{x(i):.1f}" y1="{y(hi):.1f}" x2="{x(i):.1f}" y2="{y(lo):.1f}" '
                         f'stroke="{LINE}" stroke-opacity="0.35" stroke-width="6"/>')
    for series, color, dash in ((estimated, LINE, ""), (realized, "#2e7d32", ' stroke-dasharray="4,2"')):
        points = [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(series) if v is not None]
        if len(points) > 1:
            parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" '
                         f'stroke-width="1.5"{dash}/>')
        for point in points:
            cx, cy = point.split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
    last = next((v for v in reversed(estimated) if v is not None), None)
    if last is not None:
        parts.append(_text(WIDTH - RIGHT, 13, fmt(last), anchor="end", color=LINE, bold=True))
    parts.append(_text(LEFT, TOP + 8, "— estimated  - - realized", color=GUIDE))
    parts.append(_text(LEFT, HEIGHT - 5, start_label, color=GUIDE))
    parts.append(_text(WIDTH - RIGHT, HEIGHT - 5, end_label, anchor="end", color=GUIDE))
    return _svg("".join(parts))
