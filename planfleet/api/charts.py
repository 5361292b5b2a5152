"""SVG drawings of a plan, made on the server: its schedule as a Gantt chart and its
dependency graph, each task coloured by the state of its latest step."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from planfleet import models
from planfleet.durations import format_minutes

#: Most tasks drawn (a larger plan shows its first tasks by start time and says so).
MAX_ROWS = 400
COLOURS = {
    "planned": "#c8d1dc", "pending": "#c8d1dc", "dispatched": "#f2c14e", "running": "#f2994a",
    "needs_qa": "#bb86fc", "blocked": "#9b51e0", "completed": "#27ae60", "failed": "#eb5757",
    "skipped": "#828282", "cancelled": "#4f4f4f",
}


def _state(task: str, steps: Mapping[str, models.Step]) -> str:
    step = steps.get(task)
    return step.status.value if step else "planned"


def gantt(doc: dict[str, Any], steps: Mapping[str, models.Step], width: int = 960) -> str:
    """Bars at each task's simulated start and finish (minutes), one row per task."""
    schedule: dict[str, dict[str, float]] = doc.get("schedule") or {}
    order = sorted(schedule, key=lambda t: (schedule[t]["start"], schedule[t]["finish"], t))
    shown = order[:MAX_ROWS]
    label_w, row_h, top = 170, 20, 24
    span = max((schedule[t]["finish"] for t in order), default=0.0) or 1.0
    scale = (width - label_w - 30) / span
    height = top + row_h * len(shown) + 10
    critical = set(doc.get("critical_path") or [])
    out = [f'<svg class="gantt" role="img" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
           f'<title>Schedule: {len(order)} tasks over {format_minutes(span)}</title>']
    for k in range(6):  # a time axis
        x = label_w + span * k / 5 * scale
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 6}" '
                   'class="grid"/>')
        out.append(f'<text x="{x:.1f}" y="{top - 10}" class="axis">{format_minutes(span * k / 5)}</text>')
    for i, task in enumerate(shown):
        slot = schedule[task]
        y = top + i * row_h
        state = _state(task, steps)
        x = label_w + slot["start"] * scale
        w = max(2.0, (slot["finish"] - slot["start"]) * scale)
        cls = "bar critical" if task in critical else "bar"
        out.append(f'<text x="4" y="{y + 14}" class="label">{escape(task[:24])}</text>')
        out.append(
            f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" rx="3" '
            f'fill="{COLOURS.get(state, "#ccc")}" class="{cls}" data-task="{escape(task)}" '
            f'data-state="{state}"><title>{escape(task)}: {state}, '
            f'{format_minutes(slot["start"])}-{format_minutes(slot["finish"])}</title></rect>')
    if len(order) > len(shown):
        out.append(f'<text x="4" y="{height - 2}" class="axis">… and {len(order) - len(shown)} '
                   'more tasks</text>')
    out.append("</svg>")
    return "".join(out)


def dag(doc: dict[str, Any], steps: Mapping[str, models.Step]) -> str:
    """Tasks in columns by depth (longest chain of dependencies before them), edges from each
    dependency to its dependent."""
    tasks: dict[str, dict[str, Any]] = doc.get("tasks") or {}
    order = list(doc.get("priority_order") or tasks)
    depth: dict[str, int] = {}
    for t in _dependency_order(doc):
        depth[t] = 1 + max((depth[d] for d in tasks[t]["depends_on"] if d in depth), default=-1)
    shown = set(sorted(tasks, key=lambda t: (depth.get(t, 0), order.index(t)
                                             if t in order else 0))[:MAX_ROWS])
    columns: dict[int, list[str]] = {}
    for t in order:
        if t in shown:
            columns.setdefault(depth.get(t, 0), []).append(t)
    node_w, node_h, gap_x, gap_y = 130, 22, 50, 10
    pos = {t: (10 + c * (node_w + gap_x), 10 + r * (node_h + gap_y))
           for c, col in columns.items() for r, t in enumerate(col)}
    width = 20 + (max(columns, default=0) + 1) * (node_w + gap_x)
    height = 20 + max((len(c) for c in columns.values()), default=1) * (node_h + gap_y)
    out = [f'<svg class="dag" role="img" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
           f'<title>Dependencies of {len(tasks)} tasks</title>']
    for t in pos:
        x2, y2 = pos[t]
        for d in tasks[t]["depends_on"]:
            if d in pos:
                x1, y1 = pos[d]
                out.append(f'<path d="M{x1 + node_w},{y1 + node_h / 2} C{x1 + node_w + 25},'
                           f'{y1 + node_h / 2} {x2 - 25},{y2 + node_h / 2} {x2},'
                           f'{y2 + node_h / 2}" class="edge"/>')
    for t, (x, y) in pos.items():
        state = _state(t, steps)
        out.append(f'<g class="node" data-task="{escape(t)}" data-state="{state}">'
                   f'<rect x="{x}" y="{y}" width="{node_w}" height="{node_h}" rx="4" '
                   f'fill="{COLOURS.get(state, "#ccc")}"><title>{escape(t)}: '
                   f'{escape(str(tasks[t].get("title", "")))} ({state})</title></rect>'
                   f'<text x="{x + 6}" y="{y + 15}">{escape(t[:18])}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _dependency_order(doc: dict[str, Any]) -> list[str]:
    """The plan's tasks, each after its dependencies: its waves, one after the other."""
    return [t for wave in doc.get("batches") or [] for t in wave]


def waiting_on_people(doc: dict[str, Any], steps: Mapping[str, models.Step]) -> dict[str, str]:
    """For each task not started yet: the blocked task (waiting for a person) it waits for,
    directly or through other tasks."""
    tasks: dict[str, dict[str, Any]] = doc.get("tasks") or {}
    blocked = {t for t, s in steps.items() if s.status is models.StepStatus.BLOCKED}
    out: dict[str, str] = {}
    for t in _dependency_order(doc):
        step = steps.get(t)
        if step is not None and step.status is not models.StepStatus.PENDING:
            continue
        for d in tasks[t]["depends_on"]:
            if d in blocked:
                out[t] = d
                break
            if d in out:
                out[t] = out[d]
                break
    return out
