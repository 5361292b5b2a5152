"""The fleet's limits on a task file: what one file may ask of the fleet (pure, no I/O).

A task file is untrusted input. The fleet caps how many of its tasks may run at once and how
long one step may run, and names the scripts a file may run (see :mod:`planfleet.script_paths`).
A file that asks for more is refused with the field named and the limit quoted; nothing is
clamped silently. A solver's capacity is the exception: it is the fleet's, shared by every plan
(``planfleet solvers``), and may change while a plan runs; a file's own capacity only narrows
it, so one above it is planned with a warning on the input (:func:`capacity_warnings`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from planfleet import defaults, script_paths
from planfleet.planner.errors import Problem
from planfleet.planner.tasks import TaskList


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the fleet allows one task file (None: no limit of that kind)."""

    #: most tasks of one plan running at once (PLANFLEET_MAX_PARALLEL_LIMIT)
    max_parallel: int | None = None
    #: longest step timeout a task may ask for, seconds (PLANFLEET_STEP_TIMEOUT_LIMIT)
    timeout: float | None = None
    #: globs of the scripts a file may run (PLANFLEET_ALLOWED_SCRIPTS)
    allowed_scripts: Sequence[str] | None = None
    #: the script of a task that names none (its solver's, else this one)
    default_script: str = defaults.DEFAULT_SCRIPT


def check(task_list: TaskList, limits: Limits) -> list[Problem]:
    """Every way ``task_list`` asks for more than ``limits`` allow."""
    problems: list[Problem] = []
    if (limits.max_parallel is not None and task_list.max_parallel is not None
            and task_list.max_parallel > limits.max_parallel):
        problems.append(Problem(
            "over_limit", f"max_parallel {task_list.max_parallel} is over the fleet's limit of "
            f"{limits.max_parallel} (PLANFLEET_MAX_PARALLEL_LIMIT)", field="max_parallel"))
    for task in task_list.tasks:
        if (limits.timeout is not None and task.timeout is not None
                and task.timeout > limits.timeout):
            problems.append(Problem(
                "over_limit", f"timeout of {task.timeout:g} s is over the fleet's limit of "
                f"{limits.timeout:g} s (PLANFLEET_STEP_TIMEOUT_LIMIT)", task=task.id,
                field="timeout", line=task.line))
    if limits.allowed_scripts is not None:
        problems += _scripts(task_list, limits.allowed_scripts, limits.default_script)
    return problems


def _scripts(task_list: TaskList, patterns: Sequence[str], default: str) -> list[Problem]:
    problems: list[Problem] = []

    def refuse(path: str, field: str, task: str | None = None, line: int | None = None) -> None:
        problems.append(Problem(
            "script_not_allowed", f"script {path!r} is not allowed on this fleet (allowed: "
            f"{', '.join(patterns[:10]) or 'none'}{', …' if len(patterns) > 10 else ''}; "
            "PLANFLEET_ALLOWED_SCRIPTS)", task=task, field=field, line=line))

    for name, spec in task_list.solvers.items():
        for key in ("script", "qa"):
            path = getattr(spec, key)
            if path is not None and not script_paths.allowed(path, patterns):
                refuse(path, field=f"solvers.{name}.{key}")
    if task_list.qa is not None and not script_paths.allowed(task_list.qa, patterns):
        refuse(task_list.qa, field="qa")
    default_used = False
    for task in task_list.tasks:
        if task.script is not None:
            if not script_paths.allowed(task.script, patterns):
                refuse(task.script, task=task.id, field="script", line=task.line)
            continue
        solver = task_list.solvers.get(task.solver[0]) if task.solver else None
        if solver is None or solver.script is None:
            default_used = True
    if default_used and not script_paths.allowed(default, patterns):
        refuse(default, field="script")
    return problems


def capacity_warnings(solvers: Mapping[str, Any], fleet: Mapping[str, int]) -> list[Problem]:
    """A file's capacity for a solver above the fleet's: the fleet's holds (a file narrows a
    capacity, never raises it), and the input says so."""
    out = []
    for name, spec in sorted(solvers.items()):
        mine = getattr(spec, "capacity", None)
        if mine is not None and name in fleet and mine > fleet[name]:
            out.append(Problem(
                "capacity_above_fleet", f"capacity {mine} for solver {name} is above the "
                f"fleet's {fleet[name]} (planfleet solvers): the fleet's holds",
                field=f"solvers.{name}.capacity"))
    return out
