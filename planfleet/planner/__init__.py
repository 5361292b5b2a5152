"""The planner: a pure library (no I/O) from task-list bytes to a dependency-aware plan."""

from __future__ import annotations

from planfleet.planner.errors import PlanningError, Problem
from planfleet.planner.formats import load, parse
from planfleet.planner.limits import Limits
from planfleet.planner.plan import Plan, Remaining, plan, replan
from planfleet.planner.tasks import SolverSpec, TaskList, TaskSpec

__all__ = [
    "Limits",
    "Plan",
    "PlanningError",
    "Problem",
    "Remaining",
    "SolverSpec",
    "TaskList",
    "TaskSpec",
    "load",
    "load_checked",
    "parse",
    "plan",
    "plan_bytes",
    "replan",
]


def load_checked(content: bytes, filename: str = "tasks", *,
                 limits: Limits | None = None) -> TaskList:
    """Parse a task-list file; PlanningError lists every problem, field and graph together
    (and, with ``limits``, every way the file asks for more than the fleet allows)."""
    from planfleet.planner import formats, graph
    from planfleet.planner import limits as fleet_limits

    task_list, problems = formats.parse(content, filename)
    if task_list is not None and limits is not None:
        problems = problems + fleet_limits.check(task_list, limits)
    if task_list is None or problems:
        if task_list is not None and task_list.tasks:
            try:
                graph.validate(task_list)
            except PlanningError as exc:
                problems = problems + exc.problems
        raise PlanningError(problems, list(task_list.warnings) if task_list is not None else [])
    return task_list


def plan_bytes(content: bytes, filename: str = "tasks", **options: object) -> Plan:
    """Parse and plan a task-list file's bytes (see :func:`plan` for the options)."""
    return plan(load_checked(content, filename), **options)  # type: ignore[arg-type]
