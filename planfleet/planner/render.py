"""A readable plan for a terminal: headline numbers and a text Gantt chart."""

from __future__ import annotations

from planfleet.planner.explain import fmt_minutes
from planfleet.planner.plan import Plan

#: Tasks drawn at most; the rest are counted.
MAX_ROWS = 200


def text(plan: Plan, width: int = 60) -> str:
    lines = [
        f"project {plan.project or '-'} ({plan.format}): {plan.task_count} tasks, "
        f"max_parallel {plan.max_parallel}",
        f"makespan {fmt_minutes(plan.makespan)} (lower bound {fmt_minutes(plan.lower_bound)}, "
        f"total work {fmt_minutes(plan.total_work)})",
        f"critical path ({fmt_minutes(plan.critical_path_length)}): "
        + " -> ".join(plan.critical_path[:30])
        + (" -> …" if len(plan.critical_path) > 30 else ""),
        f"start now ({len(plan.immediate_batch)}): " + ", ".join(plan.immediate_batch[:30])
        + (", …" if len(plan.immediate_batch) > 30 else ""),
        f"batches: {len(plan.batches)}",
        "",
    ]
    span = plan.makespan or 1.0
    rows = sorted(plan.schedule.items(), key=lambda kv: (kv[1].start, kv[0]))
    name_w = min(24, max((len(k) for k, _ in rows[:MAX_ROWS]), default=4))
    critical = set(plan.critical_path)
    for task_id, slot in rows[:MAX_ROWS]:
        a = int(round(slot.start / span * width))
        b = max(a + 1, int(round(slot.finish / span * width)))
        bar = " " * a + ("#" if task_id in critical else "=") * (b - a)
        lines.append(
            f"{task_id[:name_w]:<{name_w}} |{bar:<{width}}| "
            f"{fmt_minutes(slot.start)}-{fmt_minutes(slot.finish)}"
        )
    if len(rows) > MAX_ROWS:
        lines.append(f"… and {len(rows) - MAX_ROWS} more tasks")
    lines.append("")
    lines.append("# critical path   = other tasks")
    return "\n".join(lines)
