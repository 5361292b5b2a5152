"""SVG drawings of a plan, made on the server: its schedule as a Gantt chart and its
dependency graph, each task coloured by the state of its latest step.

Each chart is a pure layout function (numbers in, geometry out, unit-tested) and a renderer
that turns the geometry into SVG, escaping every text taken from the task file.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from planfleet import models
from planfleet.durations import format_minutes

#: Most tasks drawn (a larger plan shows its first tasks and says so).
MAX_ROWS = 400
COLOURS = {
    "planned": "#c8d1dc", "pending": "#c8d1dc", "dispatched": "#f2c14e", "running": "#f2994a",
    "needs_qa": "#bb86fc", "blocked": "#9b51e0", "completed": "#27ae60", "failed": "#eb5757",
    "skipped": "#828282", "cancelled": "#4f4f4f",
}
#: states whose colour needs light text on it
DARK = frozenset({"blocked", "skipped", "cancelled"})
#: plan states in which its steps are still moving (the Gantt chart shows "now")
LIVE = frozenset({"queued", "building", "blocked", "paused"})


def _state(task: str, steps: Mapping[str, models.Step]) -> str:
    step = steps.get(task)
    return step.status.value if step else "planned"


def title_of(doc: dict[str, Any], task: str) -> str:
    """The task's title from the plan document ('' when it has none or it is the id)."""
    title = str(((doc.get("tasks") or {}).get(task) or {}).get("title") or "").strip()
    return "" if title == task else title


def clip(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` characters, an ellipsis marking the cut."""
    if chars <= 0:
        return ""
    return text if len(text) <= chars else text[: max(chars - 1, 0)].rstrip() + "…"


# -- Gantt chart -----------------------------------------------------------------------------

#: the drawing's own width: the page scales it to the container's (CSS width: 100%, with a
#: min-width at which text stays at least 12 px: see style.css)
GANTT_WIDTH = 1200
GANTT_FONT = 14  # user units: >= 12 px from 1030 px of width up
LABEL_W, ROW_H, RIGHT = 380, 28, 24
#: the time axis's height (with a second line for "now" while the plan is live)
TOP, TOP_LIVE = 30, 46
CHAR_W = 7.4  # a 14-unit system-ui character, on average


@dataclasses.dataclass(frozen=True)
class Bar:
    x: float
    w: float


@dataclasses.dataclass(frozen=True)
class GanttRow:
    task: str
    title: str
    y: float
    state: str
    critical: bool
    planned: Bar
    #: when the latest step ran (None: it has not started)
    actual: Bar | None
    start: float
    finish: float


@dataclasses.dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclasses.dataclass(frozen=True)
class GanttLayout:
    width: int
    height: int
    top: float
    rows: list[GanttRow]
    ticks: list[Tick]
    #: the vertical "now" line while the plan is live (None otherwise)
    now_x: float | None
    total: int
    span: float


def nice_step(span: float, most: int = 8) -> float:
    """A round tick interval (minutes) giving at most ``most`` intervals over ``span``."""
    for round_step in (1, 2, 5, 10, 15, 30, 60, 120, 240, 480, 960, 1440, 2880, 7200, 14400):
        if span / round_step <= most:
            return float(round_step)
    step = 14400.0
    while span / step > most:
        step *= 2
    return step


def _minutes(at: dt.datetime, origin: dt.datetime) -> float:
    return (at - origin).total_seconds() / 60


def _actual(step: models.Step | None, origin: dt.datetime | None,
            now: dt.datetime) -> tuple[float, float] | None:
    """When a step ran, in minutes from ``origin``: started to finished (or to now)."""
    if step is None or step.started_at is None or origin is None:
        return None
    end = step.finished_at or now
    return _minutes(step.started_at, origin), max(_minutes(end, origin),
                                                  _minutes(step.started_at, origin))


def gantt_layout(doc: dict[str, Any], steps: Mapping[str, models.Step], *,
                 now: dt.datetime | None = None, live: bool = False,
                 width: int = GANTT_WIDTH) -> GanttLayout:
    """One row per task (by planned start): its planned bar (the schedule's minutes from the
    plan's start) and its actual bar (when its latest step ran, in minutes from the first
    step's start), over one time axis; a "now" line when ``live``."""
    now = now or dt.datetime.now(dt.UTC)
    schedule: dict[str, dict[str, float]] = doc.get("schedule") or {}
    order = sorted(schedule, key=lambda t: (schedule[t]["start"], schedule[t]["finish"], t))
    shown = order[:MAX_ROWS]
    started = [s.started_at for s in steps.values() if s.started_at is not None]
    origin = min(started) if started else (now if live else None)
    actual = {t: _actual(steps.get(t), origin, now) for t in shown}
    span = max([schedule[t]["finish"] for t in order]
               + [a[1] for a in actual.values() if a]
               + ([_minutes(now, origin)] if live and origin else []), default=0.0) or 1.0
    scale = (width - LABEL_W - RIGHT) / span
    critical = set(doc.get("critical_path") or [])
    top = TOP_LIVE if live else TOP
    rows = []
    for i, task in enumerate(shown):
        slot, ran = schedule[task], actual[task]
        rows.append(GanttRow(
            task=task, title=title_of(doc, task), y=top + i * ROW_H, state=_state(task, steps),
            critical=task in critical, start=slot["start"], finish=slot["finish"],
            planned=Bar(LABEL_W + slot["start"] * scale,
                        max(2.0, (slot["finish"] - slot["start"]) * scale)),
            actual=None if ran is None else Bar(LABEL_W + ran[0] * scale,
                                                max(3.0, (ran[1] - ran[0]) * scale))))
    step = nice_step(span)
    ticks = [Tick(LABEL_W + k * step * scale, format_minutes(k * step) or "0s")
             for k in range(int(span // step) + 1)]
    now_x = LABEL_W + _minutes(now, origin) * scale if live and origin else None
    height = top + ROW_H * len(shown) + (ROW_H if len(order) > len(shown) else 8)
    return GanttLayout(width=width, height=height, top=top, rows=rows, ticks=ticks, now_x=now_x,
                       total=len(order), span=span)


def _gantt_row(r: GanttRow) -> list[str]:
    fill = COLOURS.get(r.state, "#ccc")
    chars = int((LABEL_W - 12) / CHAR_W)
    title = clip(r.title, chars - len(r.task) - 1) if r.title else ""
    tip = (f"{r.task}{': ' + r.title if r.title else ''} ({r.state}); planned "
           f"{format_minutes(r.start) or '0s'} to {format_minutes(r.finish) or '0s'}")
    cls = "bar planned critical" if r.critical else "bar planned"
    out = [f'<g class="row" data-task="{escape(r.task)}"><title>{escape(tip)}</title>',
           f'<text x="6" y="{r.y + 19}" class="label"><tspan class="id">'
           f'{escape(clip(r.task, chars))}</tspan>'
           + (f' <tspan class="title">{escape(title)}</tspan>' if title else "") + "</text>",
           f'<rect x="{r.planned.x:.1f}" y="{r.y + 4}" width="{r.planned.w:.1f}" '
           f'height="{ROW_H - 8}" rx="3" fill="{fill}" fill-opacity="0.35" stroke="{fill}" '
           f'class="{cls}" data-task="{escape(r.task)}" data-state="{r.state}"/>']
    if r.actual is not None:
        out.append(f'<rect x="{r.actual.x:.1f}" y="{r.y + 9}" width="{r.actual.w:.1f}" '
                   f'height="{ROW_H - 18}" rx="2" fill="{fill}" class="actual" '
                   f'data-task="{escape(r.task)}" data-state="{r.state}"/>')
    out.append("</g>")
    return out


def gantt(doc: dict[str, Any], steps: Mapping[str, models.Step], *,
          now: dt.datetime | None = None, live: bool = False) -> str:
    """The Gantt chart as SVG: as wide as its container (viewBox, width 100%)."""
    g = gantt_layout(doc, steps, now=now, live=live)
    out = [f'<svg class="gantt" role="img" viewBox="0 0 {g.width} {g.height}" width="100%" '
           f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
           f'<title>Schedule: {g.total} tasks over {format_minutes(g.span)}; pale bars '
           'planned, solid bars actual</title>']
    for i, r in enumerate(g.rows):
        if i % 2:
            out.append(f'<rect x="0" y="{r.y}" width="{g.width}" height="{ROW_H}" '
                       'class="stripe"/>')
    for t in g.ticks:
        out.append(f'<line x1="{t.x:.1f}" y1="{g.top - 6}" x2="{t.x:.1f}" y2="{g.height}" '
                   'class="grid"/>')
        out.append(f'<text x="{t.x:.1f}" y="20" class="axis" text-anchor="middle">'
                   f'{escape(t.label)}</text>')
    for r in g.rows:
        out.extend(_gantt_row(r))
    if g.now_x is not None:
        out.append(f'<line x1="{g.now_x:.1f}" y1="{g.top - 20}" x2="{g.now_x:.1f}" '
                   f'y2="{g.height}" class="now"/>')
        out.append(f'<text x="{g.now_x + 4:.1f}" y="{g.top - 7}" class="now">now</text>')
    if g.total > len(g.rows):
        out.append(f'<text x="6" y="{g.height - 8}" class="axis">… and '
                   f'{g.total - len(g.rows)} more tasks</text>')
    out.append("</svg>")
    return "".join(out)


# -- dependency graph ------------------------------------------------------------------------

#: a slot of the layered graph: a task, or a point an edge passes through in a layer
#: between its ends: (source, target, layer)
Key = str | tuple[str, str, int]
NODE_W, NODE_H, DUMMY_H, GAP_X, GAP_Y, PAD = 210, 40, 8, 70, 14, 12
#: most slots (tasks and the points edges pass through) a graph is drawn with: a deep plan
#: whose edges span many layers is shown from its start, as far as they go
MAX_SLOTS = 3000


@dataclasses.dataclass(frozen=True)
class Node:
    task: str
    layer: int
    x: float
    y: float
    w: float = NODE_W
    h: float = NODE_H


@dataclasses.dataclass(frozen=True)
class Edge:
    source: str
    target: str
    #: source's right side, in and out of each layer it crosses, target's left side
    points: list[tuple[float, float]]


@dataclasses.dataclass(frozen=True)
class DagLayout:
    width: int
    height: int
    nodes: dict[str, Node]
    edges: list[Edge]
    total: int


def longest_path_layers(deps: Mapping[str, Sequence[str]], order: Sequence[str]) -> dict[str, int]:
    """Each task's layer: one more than its deepest dependency (0 without any). ``order`` puts
    every task after its dependencies."""
    layer: dict[str, int] = {}
    for t in order:
        layer[t] = 1 + max((layer[d] for d in deps.get(t, ()) if d in layer), default=-1)
    return layer


def with_dummies(deps: Mapping[str, Sequence[str]], layer: Mapping[str, int]
                 ) -> tuple[dict[Key, int], list[tuple[Key, Key]]]:
    """The graph with a dummy slot in every layer an edge spans: every edge then joins
    neighbouring layers. Returns each slot's layer and the short edges."""
    where: dict[Key, int] = {t: n for t, n in layer.items()}
    edges: list[tuple[Key, Key]] = []
    for t, ds in deps.items():
        if t not in layer:
            continue
        for d in ds:
            if d not in layer:
                continue
            prev: Key = d
            for k in range(layer[d] + 1, layer[t]):
                dummy: Key = (d, t, k)
                where[dummy] = k
                edges.append((prev, dummy))
                prev = dummy
            edges.append((prev, t))
    return where, edges


def crossings(upper: Sequence[Key], lower: Sequence[Key],
              edges: Sequence[tuple[Key, Key]]) -> int:
    """How many pairs of edges between two neighbouring layers cross."""
    up = {k: i for i, k in enumerate(upper)}
    low = {k: i for i, k in enumerate(lower)}
    pairs = sorted((up[a], low[b]) for a, b in edges if a in up and b in low)
    count = 0
    seen: list[int] = []  # targets of edges further left, sorted
    for _, b in pairs:
        count += len(seen) - bisect.bisect_right(seen, b)
        bisect.insort(seen, b)
    return count


def _total_crossings(layers: Sequence[Sequence[Key]], edges: Sequence[tuple[Key, Key]]) -> int:
    return sum(crossings(layers[i], layers[i + 1], edges) for i in range(len(layers) - 1))


def _barycentre_sort(layer: list[Key], neighbours: Mapping[Key, list[Key]],
                     pos: Mapping[Key, int]) -> list[Key]:
    def key(item: tuple[int, Key]) -> tuple[float, int]:
        i, k = item
        near = [pos[n] for n in neighbours.get(k, ()) if n in pos]
        return (sum(near) / len(near) if near else float(i), i)
    return [k for _, k in sorted(enumerate(layer), key=key)]


def order_layers(layers: list[list[Key]], edges: Sequence[tuple[Key, Key]],
                 sweeps: int = 8) -> list[list[Key]]:
    """Orders within layers with fewer crossings: barycentre sweeps down and up, the best
    order seen kept (the given order when no sweep improves on it)."""
    preds: dict[Key, list[Key]] = {}
    succs: dict[Key, list[Key]] = {}
    for a, b in edges:
        succs.setdefault(a, []).append(b)
        preds.setdefault(b, []).append(a)
    best = [list(layer) for layer in layers]
    best_count = _total_crossings(best, edges)
    current = [list(layer) for layer in best]
    for sweep in range(sweeps):
        if best_count == 0:
            break
        down = sweep % 2 == 0
        indices = range(1, len(current)) if down else range(len(current) - 2, -1, -1)
        for i in indices:
            fixed = current[i - 1] if down else current[i + 1]
            pos = {k: j for j, k in enumerate(fixed)}
            current[i] = _barycentre_sort(current[i], preds if down else succs, pos)
        count = _total_crossings(current, edges)
        if count < best_count:
            best, best_count = [list(layer) for layer in current], count
    return best


def pack(desired: Sequence[float], sizes: Sequence[float], gap: float) -> list[float]:
    """Top edges for items kept in order with ``gap`` between them, as close as possible
    (least squares) to the ``desired`` top edges (pool-adjacent-violators)."""
    offsets, acc = [], 0.0
    for s in sizes:
        offsets.append(acc)
        acc += s + gap
    wanted = [d - o for d, o in zip(desired, offsets, strict=True)]
    blocks: list[list[float]] = []  # [mean, weight]
    for w in wanted:
        blocks.append([w, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, n2 = blocks.pop()
            m1, n1 = blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    flat = [m for m, n in blocks for _ in range(int(n))]
    return [f + o for f, o in zip(flat, offsets, strict=True)]


def _place(layers: list[list[Key]], edges: Sequence[tuple[Key, Key]]) -> dict[Key, float]:
    """Each slot's centre (vertical): stacked in order, then pulled towards its neighbours'
    centres a few times, never closer than the gap to the next slot."""
    def size(k: Key) -> float:
        return NODE_H if isinstance(k, str) else DUMMY_H

    centre: dict[Key, float] = {}
    for layer in layers:
        y = 0.0
        for k in layer:
            centre[k] = y + size(k) / 2
            y += size(k) + GAP_Y
    near: dict[Key, list[Key]] = {}
    for a, b in edges:
        near.setdefault(a, []).append(b)
        near.setdefault(b, []).append(a)
    for _ in range(4):
        for layer in [*layers, *reversed(layers)]:
            desired = []
            for k in layer:
                ys = [centre[n] for n in near.get(k, ())]
                desired.append((sum(ys) / len(ys) if ys else centre[k]) - size(k) / 2)
            tops = pack(desired, [size(k) for k in layer], GAP_Y)
            for k, top in zip(layer, tops, strict=True):
                centre[k] = top + size(k) / 2
    top = min((centre[k] - size(k) / 2 for k in centre), default=0.0)
    return {k: c - top + PAD for k, c in centre.items()}


def drawn(layer: Mapping[str, int], deps: Mapping[str, Sequence[str]],
          priority: Mapping[str, int]) -> set[str]:
    """The tasks drawn: layer by layer (by priority within one) while there are at most
    MAX_ROWS of them and MAX_SLOTS slots with the edges' dummies between them."""
    shown: set[str] = set()
    slots = 0
    for t in sorted(layer, key=lambda t: (layer[t], priority.get(t, 0))):
        cost = 1 + sum(layer[t] - layer[d] - 1 for d in deps.get(t, ()) if d in shown)
        if len(shown) >= MAX_ROWS or slots + cost > MAX_SLOTS:
            break
        shown.add(t)
        slots += cost
    return shown


def dag_layout(doc: dict[str, Any]) -> DagLayout:
    """Layers by longest path (left to right), orders by barycentre sweeps, edges through a
    slot of their own in every layer they cross: no edge passes under a task."""
    tasks: dict[str, dict[str, Any]] = doc.get("tasks") or {}
    priority = {t: i for i, t in enumerate(doc.get("priority_order") or tasks)}
    deps = {t: list(v.get("depends_on") or []) for t, v in tasks.items()}
    dependency_order = _dependency_order(doc) or list(tasks)
    layer = longest_path_layers(deps, dependency_order)
    shown = drawn(layer, deps, priority)
    layer = {t: n for t, n in layer.items() if t in shown}
    where, edges = with_dummies({t: deps[t] for t in shown}, layer)

    def first_order(k: Key) -> tuple[int, int, int]:
        if isinstance(k, str):
            return priority.get(k, 0), 0, 0
        return priority.get(k[0], 0), 1, priority.get(k[1], 0)

    layers: list[list[Key]] = [[] for _ in range(max(where.values(), default=-1) + 1)]
    for k in sorted(where, key=first_order):
        layers[where[k]].append(k)
    layers = order_layers(layers, edges)
    centre = _place(layers, edges)

    def left(n: int) -> float:
        return PAD + n * (NODE_W + GAP_X)

    nodes = {t: Node(t, layer[t], left(layer[t]), centre[t] - NODE_H / 2) for t in layer}
    routes = []
    for t in layer:
        for d in deps[t]:
            if d not in layer:
                continue
            points = [(left(layer[d]) + NODE_W, centre[d])]
            for between in range(layer[d] + 1, layer[t]):
                y = centre[(d, t, between)]
                points += [(left(between), y), (left(between) + NODE_W, y)]
            points.append((left(layer[t]), centre[t]))
            routes.append(Edge(d, t, points))
    _spread_ports(routes, nodes)
    width = int(left(len(layers)) - GAP_X + PAD) if layers else 2 * PAD
    height = int(max((c + NODE_H / 2 for c in centre.values()), default=0.0) + PAD
                 + (20 if len(tasks) > len(layer) else 0))
    return DagLayout(width=width, height=height, nodes=nodes, edges=routes, total=len(tasks))


def ports(count: int, top: float, height: float) -> list[float]:
    """Where ``count`` edges meet a side of a task: spread evenly over its middle, so that
    arrowheads do not sit on each other."""
    if count == 1:
        return [top + height / 2]
    inner = min(height - 12, 8.0 * (count - 1))
    return [top + height / 2 - inner / 2 + inner * i / (count - 1) for i in range(count)]


def _spread_ports(edges: list[Edge], nodes: Mapping[str, Node]) -> None:
    """Each task's outgoing edges leave it, and incoming ones reach it, at their own heights,
    in the order of the other end (no two cross at the task)."""
    outgoing: dict[str, list[Edge]] = {}
    incoming: dict[str, list[Edge]] = {}
    for e in edges:
        outgoing.setdefault(e.source, []).append(e)
        incoming.setdefault(e.target, []).append(e)
    for t, out in outgoing.items():
        out.sort(key=lambda e: (e.points[1][1], e.points[-1][1]))
        for e, y in zip(out, ports(len(out), nodes[t].y, nodes[t].h), strict=True):
            e.points[0] = (e.points[0][0], y)
    for t, into in incoming.items():
        into.sort(key=lambda e: (e.points[-2][1], e.points[0][1]))
        for e, y in zip(into, ports(len(into), nodes[t].y, nodes[t].h), strict=True):
            e.points[-1] = (e.points[-1][0], y)


def _edge_path(points: Sequence[tuple[float, float]]) -> str:
    """Curves across the gaps between layers, straight lines through a layer's dummy slot."""
    (x, y), out = points[0], [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for i, (nx, ny) in enumerate(points[1:], start=1):
        if i % 2:  # a gap between layers
            mid = (x + nx) / 2
            out.append(f"C{mid:.1f},{y:.1f} {mid:.1f},{ny:.1f} {nx:.1f},{ny:.1f}")
        else:  # through a layer
            out.append(f"L{nx:.1f},{ny:.1f}")
        x, y = nx, ny
    return " ".join(out)


def _text_class(state: str, kind: str) -> str:
    return f"{kind} on-dark" if state in DARK else kind


def dag(doc: dict[str, Any], steps: Mapping[str, models.Step],
        layout: DagLayout | None = None) -> str:
    """The dependency graph as SVG: arrows from each dependency to its dependent."""
    g = layout or dag_layout(doc)
    out = [f'<svg class="dag" role="img" viewBox="0 0 {g.width} {g.height}" width="{g.width}" '
           f'height="{g.height}" xmlns="http://www.w3.org/2000/svg">',
           f'<title>Dependencies of {g.total} tasks</title>',
           '<defs><marker id="dag-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse" markerUnits="strokeWidth">'
           '<path d="M0,0 L10,5 L0,10 z" class="arrow"/></marker></defs>']
    for e in g.edges:
        out.append(f'<path d="{_edge_path(e.points)}" class="edge" marker-end="url(#dag-arrow)" '
                   f'data-from="{escape(e.source)}" data-to="{escape(e.target)}"/>')
    for t, n in g.nodes.items():
        state = _state(t, steps)
        title = title_of(doc, t)
        chars = int((n.w - 14) / 6.6)
        out.append(
            f'<g class="node" data-task="{escape(t)}" data-state="{state}">'
            f'<title>{escape(t)}{": " + escape(title) if title else ""} ({state})</title>'
            f'<rect x="{n.x:.1f}" y="{n.y:.1f}" width="{n.w}" height="{n.h}" rx="5" '
            f'fill="{COLOURS.get(state, "#ccc")}"/>'
            f'<text x="{n.x + 8:.1f}" y="{n.y + (17 if title else 25):.1f}" '
            f'class="{_text_class(state, "id")}">{escape(clip(t, chars))}</text>'
            + (f'<text x="{n.x + 8:.1f}" y="{n.y + 33:.1f}" class="{_text_class(state, "title")}">'
               f'{escape(clip(title, chars))}</text>' if title else "")
            + "</g>")
    if g.total > len(g.nodes):
        out.append(f'<text x="{PAD}" y="{g.height - 2}" class="axis">… and '
                   f'{g.total - len(g.nodes)} more tasks</text>')
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
