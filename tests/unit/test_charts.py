"""The plan's charts: the layered dependency graph's layout and the Gantt chart's geometry."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

from planfleet import models
from planfleet.api import charts

T0 = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


def doc(deps: dict[str, list[str]], *, titles: dict[str, str] | None = None,
        estimate: float = 10) -> dict[str, Any]:
    """A plan document as the planner writes it (the fields the charts read)."""
    layer: dict[str, int] = {}
    for t in deps:  # given in dependency order
        layer[t] = 1 + max((layer[d] for d in deps[t]), default=-1)
    waves = [[t for t in deps if layer[t] == n] for n in range(max(layer.values()) + 1)]
    schedule = {t: {"start": layer[t] * estimate, "finish": (layer[t] + 1) * estimate,
                    "slack": 0.0} for t in deps}
    return {"tasks": {t: {"title": (titles or {}).get(t, ""), "depends_on": ds}
                      for t, ds in deps.items()},
            "batches": waves, "priority_order": list(deps), "schedule": schedule,
            "critical_path": []}


def step(task: str, status: str, started: float | None = None,
         finished: float | None = None) -> models.Step:
    def at(minutes: float | None) -> dt.datetime | None:
        return None if minutes is None else T0 + dt.timedelta(minutes=minutes)
    return models.Step(id=1, plan_id=1, task_id=task, status=models.StepStatus(status),
                       attempt=1, tries=1, windmill_job_id=None, script="f/x", solver=None,
                       args={}, result=None, error=None, not_before=None,
                       started_at=at(started), finished_at=at(finished))


# -- layered graph ---------------------------------------------------------------------------

def test_layers_are_longest_paths() -> None:
    deps = {"A": [], "B": ["A"], "C": ["B"], "D": ["A", "C"]}
    assert charts.longest_path_layers(deps, list(deps)) == {"A": 0, "B": 1, "C": 2, "D": 3}


def test_a_long_edge_gets_a_dummy_slot_in_each_layer_it_crosses() -> None:
    deps = {"A": [], "B": ["A"], "C": ["B"], "D": ["A", "C"]}
    where, edges = charts.with_dummies(deps, charts.longest_path_layers(deps, list(deps)))
    assert where[("A", "D", 1)] == 1 and where[("A", "D", 2)] == 2
    assert ("A", ("A", "D", 1)) in edges and (("A", "D", 2), "D") in edges
    assert all(abs(where[b] - where[a]) == 1 for a, b in edges)


def test_crossings_count_pairs_of_edges_that_cross() -> None:
    assert charts.crossings(["a", "b"], ["x", "y"], [("a", "x"), ("b", "y")]) == 0
    assert charts.crossings(["a", "b"], ["x", "y"], [("a", "y"), ("b", "x")]) == 1
    assert charts.crossings(["a", "b", "c"], ["x", "y", "z"],
                            [("a", "z"), ("b", "y"), ("c", "x")]) == 3


def test_barycentre_sweeps_undo_crossings() -> None:
    # Given two chains drawn crossed: a1 -> b2, a2 -> b1 with b1 above b2
    layers: list[list[charts.Key]] = [["a1", "a2"], ["b1", "b2"]]
    edges: list[tuple[charts.Key, charts.Key]] = [("a1", "b2"), ("a2", "b1")]
    ordered = charts.order_layers(layers, edges)
    assert charts.crossings(ordered[0], ordered[1], edges) == 0


def test_sweeps_never_make_it_worse() -> None:
    deps = {"A": [], "B": [], "C": [], "D": ["C", "A"], "E": ["B", "A"], "F": ["C"],
            "G": ["D", "F"], "H": ["E", "B"]}
    layer = charts.longest_path_layers(deps, list(deps))
    where, edges = charts.with_dummies(deps, layer)
    layers: list[list[charts.Key]] = [[] for _ in range(max(where.values()) + 1)]
    for k in where:
        layers[where[k]].append(k)
    before = sum(charts.crossings(layers[i], layers[i + 1], edges) for i in range(len(layers) - 1))
    after_layers = charts.order_layers(layers, edges)
    after = sum(charts.crossings(after_layers[i], after_layers[i + 1], edges)
                for i in range(len(after_layers) - 1))
    assert after <= before
    assert [sorted(map(str, a)) for a in after_layers] == [sorted(map(str, b)) for b in layers]


def test_pack_keeps_order_and_gaps_as_close_as_it_can() -> None:
    assert charts.pack([0, 100], [10, 10], 5) == [0, 100]
    # two items wanting the same place share the difference
    assert charts.pack([50, 50], [10, 10], 4) == [43, 57]
    tops = charts.pack([30, 0, 10, 80], [10, 8, 10, 10], 5)
    assert all(b - a >= s + 5 - 1e-9 for a, b, s in zip(tops[:-1], tops[1:], [10, 8, 10], strict=True))


def _segment_boxes(points: list[tuple[float, float]]) -> list[tuple[float, float, float, float]]:
    """The bounding box of each piece of an edge (a curve lies in its control points' box)."""
    return [(min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1]))
            for a, b in itertools.pairwise(points)]


def _overlaps(box: tuple[float, float, float, float], n: charts.Node) -> bool:
    x1, y1, x2, y2 = box
    return x1 < n.x + n.w - 0.5 and x2 > n.x + 0.5 and y1 < n.y + n.h and y2 > n.y


def test_no_edge_passes_under_a_task() -> None:
    # Given a graph with edges that skip layers, past tasks in between
    deps = {"A": [], "B": ["A"], "C": ["B"], "D": ["C"], "E": ["A"], "F": ["A", "D"],
            "G": ["B", "F"], "H": ["E"], "I": ["A", "H", "C"]}
    layout = charts.dag_layout(doc(deps))
    assert len(layout.edges) == sum(len(d) for d in deps.values())
    for e in layout.edges:
        for box in _segment_boxes(e.points):
            for n in layout.nodes.values():
                if n.task in (e.source, e.target):
                    continue
                assert not _overlaps(box, n), (e.source, e.target, n.task)
        # it leaves its source's right side and ends on its target's left side
        src, dst = layout.nodes[e.source], layout.nodes[e.target]
        assert e.points[0][0] == src.x + src.w and src.y < e.points[0][1] < src.y + src.h
        assert e.points[-1][0] == dst.x and dst.y < e.points[-1][1] < dst.y + dst.h


def test_edges_meeting_a_task_arrive_at_their_own_heights() -> None:
    layout = charts.dag_layout(doc({"A": [], "B": [], "C": [], "D": ["A", "B", "C"]}))
    ends = sorted(e.points[-1][1] for e in layout.edges)
    assert len(set(ends)) == 3 and ends == sorted(
        e.points[-1][1] for e in sorted(layout.edges, key=lambda e: e.points[0][1]))
    assert charts.ports(1, 0, 40) == [20]
    assert charts.ports(3, 0, 40) == [12, 20, 28]


def test_tasks_of_a_layer_never_overlap_and_fit_the_drawing() -> None:
    deps = {f"T{i}": ([] if i < 6 else [f"T{i - 6}", f"T{(i * 7) % 6}"]) for i in range(18)}
    layout = charts.dag_layout(doc(deps))
    for a, b in itertools.combinations(layout.nodes.values(), 2):
        if a.layer == b.layer:
            assert a.y + a.h <= b.y or b.y + b.h <= a.y, (a.task, b.task)
    for n in layout.nodes.values():
        assert 0 <= n.x and n.x + n.w <= layout.width
        assert 0 <= n.y and n.y + n.h <= layout.height


def test_a_deep_graph_is_drawn_from_its_start_within_the_slot_budget() -> None:
    # every task depends on the one before and on the first: edges over every layer
    deps = {f"T{i}": ([] if i == 0 else [f"T{i - 1}", "T0"]) for i in range(200)}
    layout = charts.dag_layout(doc(deps))
    assert 0 < len(layout.nodes) < 200 and layout.total == 200
    shown = sorted(layout.nodes, key=lambda t: int(t[1:]))
    assert shown == [f"T{i}" for i in range(len(shown))]
    slots = len(shown) + sum(max(0, int(t[1:]) - 1) for t in shown)
    assert slots <= charts.MAX_SLOTS
    assert "… and" in charts.dag(doc(deps), {}, layout)


def test_the_graph_svg_has_arrowheads_titles_and_escapes_them() -> None:
    d = doc({"A": [], "B": ["A"]}, titles={"A": "Set up <db>", "B": 'say "hi" & go'})
    svg = charts.dag(d, {"A": step("A", "completed", 0, 1)})
    assert '<marker id="dag-arrow"' in svg and 'marker-end="url(#dag-arrow)"' in svg
    assert "Set up &lt;db&gt;" in svg and "say &quot;hi&quot; &amp; go" in svg
    assert "<db>" not in svg
    assert re.search(r'<g class="node" data-task="A" data-state="completed">', svg)


def test_a_long_title_is_cut_with_an_ellipsis() -> None:
    assert charts.clip("abcdef", 4) == "abc…" and charts.clip("abc", 4) == "abc"


# -- Gantt chart -----------------------------------------------------------------------------

def test_gantt_is_as_wide_as_its_container_and_its_text_readable() -> None:
    svg = charts.gantt(doc({"A": [], "B": ["A"]}), {})
    assert 'width="100%"' in svg and f'viewBox="0 0 {charts.GANTT_WIDTH} ' in svg
    # at the chart's min-width (style.css) a label is still 12 px or more
    assert charts.GANTT_FONT * 1030 / charts.GANTT_WIDTH >= 12


def test_gantt_rows_follow_the_schedule_with_planned_bars() -> None:
    layout = charts.gantt_layout(doc({"A": [], "B": ["A"], "C": ["A"]}), {})
    assert [r.task for r in layout.rows] == ["A", "B", "C"]
    a, b, _ = layout.rows
    assert a.planned.x == charts.LABEL_W
    assert b.planned.x == a.planned.x + a.planned.w  # B starts where A ends
    assert b.planned.x + b.planned.w == charts.GANTT_WIDTH - charts.RIGHT
    assert all(r.actual is None for r in layout.rows) and layout.now_x is None


def test_gantt_actual_bars_start_at_the_first_step_and_now_is_drawn_while_live() -> None:
    d = doc({"A": [], "B": ["A"]}, estimate=10)
    steps = {"A": step("A", "completed", 0, 15), "B": step("B", "running", 15)}
    now = T0 + dt.timedelta(minutes=30)
    layout = charts.gantt_layout(d, steps, now=now, live=True)
    a, b = layout.rows
    assert layout.span == 30  # the actual run outlasts the plan's 20 minutes
    scale = (charts.GANTT_WIDTH - charts.LABEL_W - charts.RIGHT) / 30
    assert a.actual == charts.Bar(charts.LABEL_W, 15 * scale)
    assert b.actual is not None and b.actual.x == charts.LABEL_W + 15 * scale
    assert b.actual.w == 15 * scale  # running: until now
    assert layout.now_x == charts.LABEL_W + 30 * scale
    # once the plan is over, no now line
    assert charts.gantt_layout(d, steps, now=now, live=False).now_x is None


def test_gantt_ticks_are_round_and_labels_carry_titles() -> None:
    assert charts.nice_step(95) == 15 and charts.nice_step(7) == 1
    assert charts.nice_step(60 * 24 * 30) >= 60 * 24 * 30 / 8
    d = doc({"A": []}, titles={"A": "<b>Migrate</b>"}, estimate=60)
    layout = charts.gantt_layout(d, {})
    assert [t.label for t in layout.ticks][:2] == ["0s", "10m"]
    svg = charts.gantt(d, {})
    assert "&lt;b&gt;Migrate&lt;/b&gt;" in svg and "<b>" not in svg
    assert 'class="bar planned"' in svg


def test_a_huge_plan_shows_its_first_rows_and_says_how_many_more() -> None:
    deps = {f"T{i}": [] for i in range(charts.MAX_ROWS + 5)}
    layout = charts.gantt_layout(doc(deps), {})
    assert len(layout.rows) == charts.MAX_ROWS and layout.total == charts.MAX_ROWS + 5
    assert "… and 5 more tasks" in charts.gantt(doc(deps), {})
