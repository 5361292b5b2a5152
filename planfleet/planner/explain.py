"""Per-task explanations in words: why a task starts when it does, what it waits for, its
slack."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from planfleet import durations
from planfleet.planner import schedule as sch
from planfleet.planner.graph import Graph

_EPS = 1e-9


def fmt_minutes(value: float) -> str:
    """Minutes shown as every duration is (:func:`planfleet.durations.format_minutes`)."""
    return durations.format_minutes(value)


class _Occupancy:
    """How many tasks (of one solver, or all) run at a moment, by binary search."""

    def __init__(self, s: sch.Schedule, members: Sequence[int]) -> None:
        busy = [j for j in members if s.finish[j] > s.start[j]]
        self.starts = sorted(s.start[j] for j in busy)
        self.finishes = sorted(s.finish[j] for j in busy)

    def at(self, t: float) -> int:
        return bisect.bisect_right(self.starts, t + _EPS) - bisect.bisect_right(
            self.finishes, t + _EPS
        )


def explain(
    g: Graph,
    inst: sch.Instance,
    s: sch.Schedule,
    blevel: Sequence[float],
    eff: Sequence[int],
    critical: set[int],
    solver_names: Sequence[str],
) -> dict[str, str]:
    """One sentence per task id."""
    ids = g.ids
    everyone = _Occupancy(s, range(g.n))
    per_solver = {
        k: _Occupancy(s, [j for j in range(g.n) if inst.solver[j] == k])
        for k in range(len(inst.caps))
    }
    alone = [(s.start[j], s.finish[j], j) for j in range(g.n) if inst.exclusive[j]]
    out: dict[str, str] = {}
    for i, t in enumerate(g.tasks):
        parts: list[str] = []
        preds = g.pred[i]
        ready = max((s.finish[p] for p in preds), default=0.0)
        if not preds:
            parts.append("No dependencies")
        else:
            last = max(preds, key=lambda p: (s.finish[p], -p))
            others = len(preds) - 1
            more = f" (and {others} other{'s' if others > 1 else ''} done earlier)" if others else ""
            parts.append(
                f"Waits for {ids[last]}, which finishes at {fmt_minutes(s.finish[last])}{more}"
            )
        wait = s.start[i] - ready
        if wait > _EPS:
            if inst.exclusive[i]:
                why = "because it runs alone (parallel: false) and other tasks were still running"
            else:
                holder = next((j for a, b, j in alone if a <= ready + _EPS < b and j != i), None)
                sv = inst.solver[i]
                if holder is not None:
                    why = f"while {ids[holder]} runs alone (parallel: false)"
                elif sv >= 0 and per_solver[sv].at(ready) >= inst.caps[sv]:
                    why = f"for solver {solver_names[sv]} (capacity {inst.caps[sv]}, all busy)"
                elif everyone.at(ready) >= inst.m:
                    why = f"for a free slot (max_parallel {inst.m}, all taken)"
                else:
                    why = "behind higher-priority work (dispatch order)"
            parts.append(f"ready at {fmt_minutes(ready)} but waits {fmt_minutes(wait)} {why}")
        parts.append(
            "starts at once" if s.start[i] <= _EPS else f"starts at {fmt_minutes(s.start[i])}"
        )
        slack = max(0.0, s.makespan - blevel[i] - s.start[i])
        if i in critical and slack <= _EPS:
            parts.append("on the critical path: any delay delays the whole plan")
        elif i in critical:
            parts.append(
                f"on the critical path, with slack {fmt_minutes(slack)} because capacity "
                "stretches the plan beyond the path"
            )
        elif slack <= _EPS:
            parts.append("no slack: any delay delays the whole plan")
        else:
            parts.append(
                f"slack {fmt_minutes(slack)}: it may start that much later without delaying "
                "the plan"
            )
        if eff[i] > t.priority:
            parts.append(
                f"priority raised from {t.priority} to {eff[i]} because more urgent work "
                "depends on it"
            )
        elif t.priority != 50:
            parts.append(f"priority {t.priority}")
        out[t.id] = "; ".join(parts) + "."
    return out
