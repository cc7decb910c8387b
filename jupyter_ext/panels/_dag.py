"""A pipeline run's DAG as one inline SVG: steps in columns by depth, left to right, colored by status.

:func:`depths` and :func:`layout` place the steps; :func:`dag_svg` draws them. Pure functions
of the run's steps, every text escaped; no plotting library.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from loopml.executor import JobStatus, PipelineChild, PipelineStep, StepStatus
from loopml.jupyter_ext.panels._html import STATUS_COLORS

NODE_W, NODE_H = 168, 56
COL_GAP, ROW_GAP, PAD = 56, 16, 12
EDGE, TEXT, MUTED = "#9e9e9e", "#212121", "#616161"
ID_CHARS = 22  # what fits in a node in bold 12px; the whole id is in the node's tooltip

STEP_COLORS = {
    StepStatus.QUEUED: STATUS_COLORS[JobStatus.QUEUED],
    StepStatus.RUNNING: STATUS_COLORS[JobStatus.RUNNING],
    StepStatus.SUCCEEDED: STATUS_COLORS[JobStatus.SUCCEEDED],
    StepStatus.FAILED: STATUS_COLORS[JobStatus.FAILED],
    StepStatus.CANCELLED: STATUS_COLORS[JobStatus.CANCELLED],
    StepStatus.SKIPPED: "#9e9e9e",
    StepStatus.CACHED: "#00838f",
}
"""A step's color: a job's status colors, grey for SKIPPED, teal for CACHED (done, not run)."""

DONE = frozenset({StepStatus.SUCCEEDED, StepStatus.CACHED})
ENDED = frozenset({*DONE, StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED})


def depths(steps: Sequence[PipelineStep]) -> dict[str, int]:
    """Each step's column: 0 without upstream steps, else one more than its deepest upstream step.

    An ``after`` naming no step of the run is left out; a cycle (the platform refuses them)
    is cut where it closes, so every step gets a depth."""
    upstream = {step.id: [a for a in step.after if a != step.id] for step in steps}
    found: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(step_id: str) -> int:
        if step_id in found:
            return found[step_id]
        visiting.add(step_id)
        before = [depth(a) for a in upstream[step_id] if a in upstream and a not in visiting]
        visiting.discard(step_id)
        found[step_id] = 1 + max(before) if before else 0
        return found[step_id]

    for step in steps:
        depth(step.id)
    return found


def layout(steps: Sequence[PipelineStep]) -> dict[str, tuple[int, int]]:
    """Each step's ``(column, row)``: its depth, then its place among that column's steps in the
    pipeline file's order."""
    placed: dict[str, tuple[int, int]] = {}
    rows: dict[int, int] = {}
    for step_id, column in depths(steps).items():
        placed[step_id] = (column, rows.get(column, 0))
        rows[column] = rows.get(column, 0) + 1
    return {step.id: placed[step.id] for step in steps}


def picked_child(step: PipelineStep) -> PipelineChild | None:
    """The child whose outputs a finished foreach/search step took (its job is the step's), else ``None``."""
    if step.status not in DONE or step.job_id is None:
        return None
    return next((child for child in step.children if child.job_id == step.job_id), None)


def children_text(step: PipelineStep) -> str:
    """``"3 children · picked #1"``, ``"3 children, 1 done"``; empty without children."""
    if not step.children:
        return ""
    count = len(step.children)
    noun = "child" if count == 1 else "children"
    picked = picked_child(step)
    if picked is not None:
        return f"{count} {noun} · picked #{picked.index}"
    done = sum(child.status in ENDED for child in step.children)
    return f"{count} {noun}, {done} done"


def _text(x: float, y: float, text: str, *, color: str = TEXT, bold: bool = False, size: int = 11,
          anchor: str = "start") -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{color}" font-size="{size}"{weight}>'
            f"{html.escape(text)}</text>")


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _tooltip(step: PipelineStep) -> str:
    lines = [f"{step.id} ({step.kind}): {step.status.value}"]
    if step.message:
        lines.append(step.message)
    if step.job_id:
        lines.append(f"job {step.job_id}")
    return "\n".join(lines)


def _node(step: PipelineStep, x: float, y: float) -> str:
    color = STEP_COLORS.get(step.status, MUTED)
    dash = ' stroke-dasharray="4,3"' if step.status is StepStatus.SKIPPED else ""
    width = 2.5 if step.status is StepStatus.RUNNING else 1.5
    parts = [f'<g class="loopml-step" data-step="{html.escape(step.id, quote=True)}" '
             f'data-status="{step.status.value}"><title>{html.escape(_tooltip(step))}</title>',
             # opaque under the tint: an arrow that jumps a column passes behind the nodes in between
             f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="#ffffff"/>',
             f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{color}" '
             f'fill-opacity="0.12" stroke="{color}" stroke-width="{width}"{dash}/>',
             _text(x + 8, y + 17, _short(step.id, ID_CHARS), bold=True, size=12),
             _text(x + 8, y + 33, step.status.value, color=color, bold=True),
             _text(x + NODE_W - 8, y + 33, step.kind, color=MUTED, anchor="end")]
    extra = children_text(step)
    if extra:
        parts.append(_text(x + 8, y + 49, extra, color=MUTED, size=10))
    parts.append("</g>")
    return "".join(parts)


def _edge(x1: float, y1: float, x2: float, y2: float) -> str:
    bend = (x2 - x1) / 2
    tip = x2 - 1
    return (f'<path d="M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {tip - bend:.1f},{y2:.1f} {tip - 6:.1f},{y2:.1f}" '
            f'fill="none" stroke="{EDGE}" stroke-width="1.5"/>'
            f'<polygon points="{tip:.1f},{y2:.1f} {tip - 7:.1f},{y2 - 4:.1f} {tip - 7:.1f},{y2 + 4:.1f}" '
            f'fill="{EDGE}"/>')


def dag_svg(steps: Sequence[PipelineStep]) -> str:
    """The steps as boxes (id, status, kind, children) in columns by depth, with an arrow from
    each upstream step to the step that waits for it; each column centred on the tallest."""
    if not steps:
        return '<i style="color: #757575;">no steps</i>'
    places = layout(steps)
    columns = 1 + max(column for column, _ in places.values())
    per_column = [sum(1 for c, _ in places.values() if c == column) for column in range(columns)]
    tallest = max(per_column)

    def column_height(n: int) -> int:
        return n * NODE_H + (n - 1) * ROW_GAP

    width = 2 * PAD + columns * NODE_W + (columns - 1) * COL_GAP
    height = 2 * PAD + column_height(tallest)
    corner = {}
    for step_id, (column, row) in places.items():
        top = PAD + (column_height(tallest) - column_height(per_column[column])) / 2
        corner[step_id] = (PAD + column * (NODE_W + COL_GAP), top + row * (NODE_H + ROW_GAP))
    edges = [_edge(corner[a][0] + NODE_W, corner[a][1] + NODE_H / 2, corner[s.id][0], corner[s.id][1] + NODE_H / 2)
             for s in steps for a in dict.fromkeys(s.after) if a in corner and a != s.id]
    nodes = [_node(step, *corner[step.id]) for step in steps]
    return (f'<svg class="loopml-dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" style="font-family: sans-serif; background: #fafafa; '
            f'border: 1px solid #eeeeee;">{"".join(edges)}{"".join(nodes)}</svg>')
