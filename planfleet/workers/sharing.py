"""Fair, priority-aware sharing of the fleet's slots: which ready steps start now.

A pure function of plain data (no I/O), called under the fleet's dispatch lock with every
ready step of every building plan. The policy:

1. **Business priority first**, with aging: a step's standing is its task's priority plus one
   level (25) for every ``aging`` seconds it has waited ready. An idle (0) task therefore
   stands level with a critical (100) one after at most ``4 × aging`` seconds of waiting, and
   from then on takes its turn among them: no ready step waits for ever while slots free up.
2. **Each plan's own order** (its priority order: critical path first) inside a plan.
3. **Round-robin between plans of equal standing**: the plan served longest ago offers its
   first step, then the next plan, and so on. Only steps that could start when the round
   begins take part (a step whose solver, or whose plan, is at its limit does not take its
   plan's turn), so a round over only those steps chooses as one over every ready step.

Offered a slot, a candidate is judged by :func:`planfleet.admission.admit`, the rule the
planner's schedule simulation follows too (so a plan running alone starts its tasks when its
schedule predicted): its plan's ``max_parallel`` and ``parallel: false`` (a step that runs alone
starts only when nothing else of its plan runs, and holds the rest of its plan back until then),
and its solver, full when its fleet-wide capacity or its plan's own (narrower) one is all busy
(a step blocked only by a full solver lets others pass). The fleet's free slots
(``max_running``, and the local runner's slots) end the round.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from planfleet import admission

#: Priority points one aging period is worth (one level: normal 50 -> high 75).
AGING_POINTS = 25


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A ready step: pending, its dependencies done, its backoff over."""

    step_id: int
    plan_id: int
    task_id: str
    solver: str | None
    #: the task's business priority (critical 100 ... idle 0)
    priority: int
    #: its position in its plan's priority order
    rank: int
    #: seconds it has waited ready
    waited: float
    #: parallel: false
    alone: bool = False


@dataclasses.dataclass(frozen=True)
class PlanState:
    """What a plan runs now and may run."""

    max_parallel: int
    #: seconds since a step of it last took a slot (larger: served longer ago)
    since_served: float = float("inf")
    active: int = 0
    active_by_solver: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: a parallel:false step of it runs
    alone_active: bool = False
    #: the task file's own capacities (never above the fleet's)
    caps: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Fleet:
    #: slots free under max_running (and the local runner's slots)
    free: int
    #: fleet-wide capacity of each declared solver
    caps: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: steps each solver runs now, fleet-wide
    busy: Mapping[str, int] = dataclasses.field(default_factory=dict)


def standing(priority: int, waited: float, aging: float) -> int:
    """A ready step's business priority raised by aging."""
    if aging <= 0:
        return priority
    return priority + AGING_POINTS * int(max(waited, 0.0) // aging)


def order(candidates: Sequence[Candidate], plans: Mapping[int, PlanState],
          aging: float) -> list[Candidate]:
    """Candidates in the order they are offered slots: by standing, then round-robin over
    plans (served longest ago first), each plan offering its steps in its own order."""
    tiers: dict[int, dict[int, list[Candidate]]] = {}
    for c in candidates:
        tiers.setdefault(standing(c.priority, c.waited, aging), {}).setdefault(
            c.plan_id, []).append(c)
    out: list[Candidate] = []
    for level in sorted(tiers, reverse=True):
        per_plan = tiers[level]
        queue = sorted(per_plan, key=lambda p: (-plans[p].since_served, p))
        lists = [sorted(per_plan[p], key=lambda c: (c.rank, c.task_id)) for p in queue]
        depth = max(len(x) for x in lists)
        for i in range(depth):
            out.extend(x[i] for x in lists if i < len(x))
    return out


def solver_full(solver: str | None, fleet_caps: Mapping[str, int], busy: Mapping[str, int],
                plan_caps: Mapping[str, int], plan_busy: Mapping[str, int]) -> bool:
    """Every slot of the step's solver is busy: its fleet-wide capacity, or its plan's own."""
    if solver is None:
        return False
    return ((solver in fleet_caps and busy.get(solver, 0) >= fleet_caps[solver])
            or (solver in plan_caps and plan_busy.get(solver, 0) >= plan_caps[solver]))


def could_start(c: Candidate, plan: PlanState, fleet: Fleet) -> bool:
    """Whether a slot could take the step as the round begins: its plan below its limits and
    its solver not all busy (a step that runs alone takes part whatever its solver: it holds
    the rest of its plan back even while it waits). The dispatch round's query
    (``dispatch_candidates``) reads only these."""
    if plan.alone_active or plan.active >= plan.max_parallel:
        return False
    return c.alone or not solver_full(c.solver, fleet.caps, fleet.busy, plan.caps,
                                      plan.active_by_solver)


def choose(candidates: Sequence[Candidate], plans: Mapping[int, PlanState], fleet: Fleet,
           *, aging: float) -> list[Candidate]:
    """The candidates that start now, in the order they were chosen."""
    candidates = [c for c in candidates if could_start(c, plans[c.plan_id], fleet)]
    free = fleet.free
    busy = dict(fleet.busy)
    active = {p: s.active for p, s in plans.items()}
    by_solver = {p: dict(s.active_by_solver) for p, s in plans.items()}
    closed = {p for p, s in plans.items() if s.alone_active}  # a plan that starts nothing more
    chosen: list[Candidate] = []
    for c in order(candidates, plans, aging):
        if free <= 0:
            break
        p = c.plan_id
        plan = plans[p]
        s = c.solver
        full = solver_full(s, fleet.caps, busy, plan.caps, by_solver[p])
        verdict = admission.admit(c.alone, active[p], plan.max_parallel, full, p in closed)
        if verdict == admission.HOLD:
            closed.add(p)
            continue
        if verdict == admission.PASS:
            continue
        if verdict == admission.ALONE:
            closed.add(p)
        if s is not None:
            busy[s] = busy.get(s, 0) + 1
            by_solver[p][s] = by_solver[p].get(s, 0) + 1
        active[p] += 1
        free -= 1
        chosen.append(c)
    return chosen


def waiting_reason(c: Candidate, plan: PlanState, fleet: Fleet,
                   holders: Mapping[str, Sequence[int]]) -> str:
    """Why a ready step has not started, in words (``holders``: plans running each solver)."""
    s = c.solver
    if s is not None and s in fleet.caps and fleet.busy.get(s, 0) >= fleet.caps[s]:
        names = [str(p) for p in sorted(holders.get(s, ()))]
        who = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)
        plural = "plans" if len(names) > 1 else "plan"
        return (f"waiting for a free {s} slot: {fleet.busy.get(s, 0)} of {fleet.caps[s]} busy"
                + (f", {plural} {who}" if who else ""))
    if s is not None and s in plan.caps and plan.active_by_solver.get(s, 0) >= plan.caps[s]:
        return f"waiting for a free {s} slot of this plan: {plan.caps[s]} busy"
    if plan.alone_active:
        return "waiting for a task that runs alone"
    if plan.active >= plan.max_parallel:
        return f"waiting for a slot of this plan: {plan.active} of max_parallel {plan.max_parallel}"
    if fleet.free <= 0:
        return "waiting for a fleet slot: max_running reached"
    return "waiting for its turn"
