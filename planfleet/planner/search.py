"""Choosing the priority order: business priority first, then the order with the shortest
simulated makespan that a bounded search finds.

1. Business priority is inherited backwards: a task is as urgent as the most urgent task that
   waits for it, so a critical task's prerequisites are not left behind lower work.
2. Within equal business priority, start from critical-path list scheduling (b-level, ties to
   the task with more successors: CP/MISF) and a few other classic rules.
3. Improve with forward-backward passes (schedule the reversed graph in order of latest finish,
   then forward again in order of the backward start times: "justification") and random
   perturbations of the b-level, within a time budget that grows with the size of the graph.
   The search stops early when it reaches the lower bound.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Sequence

from planfleet.planner import schedule as sch


@dataclasses.dataclass(frozen=True)
class Result:
    key: list[int]
    schedule: sch.Schedule
    method: str
    evaluations: int
    seconds: float
    #: makespan of plain b-level list scheduling, for comparison
    baseline: float
    blevel: list[float]
    lower_bound: float
    effective_priority: list[int]


#: Evaluations without improvement after which the search stops: STALL_MIN + STALL_PER_TASK*n.
STALL_MIN = 200
STALL_PER_TASK = 2


def inherited_priority(inst: sch.Instance, topo: Sequence[int], own: Sequence[int]) -> list[int]:
    """Each task's priority raised to that of the most urgent task depending on it."""
    eff = list(own)
    for i in reversed(topo):
        for j in inst.succ[i]:
            if eff[j] > eff[i]:
                eff[i] = eff[j]
    return eff


def lower_bound(inst: sch.Instance, blevel: Sequence[float]) -> float:
    """max(critical path, total work / max_parallel, per-solver work / capacity, and the
    parallel:false work plus the longest other task); rounded up when estimates are whole."""
    cp = max(blevel, default=0.0)
    work = sum(inst.dur)
    bound = max(cp, work / inst.m)
    per: dict[int, float] = {}
    for i, s in enumerate(inst.solver):
        if s >= 0:
            per[s] = per.get(s, 0.0) + inst.dur[i]
    for s, w in per.items():
        bound = max(bound, w / inst.caps[s])
    excl = sum(d for d, x in zip(inst.dur, inst.exclusive, strict=True) if x)
    if excl:
        rest = sum(d for d, x in zip(inst.dur, inst.exclusive, strict=True) if not x)
        bound = max(bound, excl + rest / inst.m)
    if all(float(d).is_integer() for d in inst.dur):
        bound = float(math.ceil(bound - 1e-9))
    return bound


def default_budget(n: int) -> float:
    """Seconds of search for n tasks: grows with small graphs (where it pays most), shrinks
    again for big ones, whose single simulation already takes a good share of a second."""
    return min(0.45, 0.05 + 0.0004 * n, 3000 / max(n, 1))


def optimise(
    inst: sch.Instance,
    topo: Sequence[int],
    business: Sequence[int],
    *,
    budget: float | None = None,
    max_evaluations: int | None = None,
    seed: int = 0,
) -> Result:
    """The best priority order found within ``budget`` seconds (and ``max_evaluations``)."""
    t0 = time.perf_counter()
    n = inst.n
    budget = default_budget(n) if budget is None else budget
    limit = max_evaluations if max_evaluations is not None else 1 << 30
    eff = inherited_priority(inst, topo, business)
    primary = [-p for p in eff]
    blevel, tlevel = sch.levels(inst, topo)
    bound = lower_bound(inst, blevel)
    nsucc = [len(s) for s in inst.succ]
    rng = random.Random(seed)
    evaluations = 0
    best_key: list[int] = []
    best: sch.Schedule | None = None
    best_method = ""
    sim_cost = 0.0
    improved_at = 0
    # give up after this many evaluations without a better makespan
    stall = STALL_MIN + STALL_PER_TASK * n

    def evaluate(key: list[int], method: str) -> sch.Schedule:
        nonlocal evaluations, best, best_key, best_method, sim_cost, improved_at
        started = time.perf_counter()
        s = sch.simulate(inst, key)
        sim_cost = max(sim_cost, time.perf_counter() - started)
        evaluations += 1
        if best is None or s.makespan < best.makespan - 1e-9:
            best, best_key, best_method = s, key, method
            improved_at = evaluations
        return s

    def time_left() -> bool:
        if best is not None and best.makespan <= bound + 1e-9:
            return False
        if evaluations >= limit or evaluations - improved_at > stall:
            return False
        return time.perf_counter() - t0 + sim_cost < budget

    # CP/MISF: b-level, ties to the task with more successors
    evaluate(sch.keys_from(primary, [-(blevel[i] * (n + 1) + nsucc[i]) for i in range(n)]),
             "b-level/most-successors")
    assert best is not None
    baseline_key = sch.keys_from(primary, [-b for b in blevel])
    baseline = sch.simulate(inst, baseline_key).makespan if time_left() else best.makespan
    if baseline < best.makespan - 1e-9:
        best, best_key, best_method = sch.simulate(inst, baseline_key), baseline_key, "b-level"
    rules = [
        ("b-level+t-level", [-(blevel[i] + tlevel[i]) * (n + 1) - blevel[i] for i in range(n)]),
        ("b-level/longest", [-(blevel[i] * (n + 1) + inst.dur[i]) for i in range(n)]),
    ]
    for name, secondary in rules:
        if not time_left():
            break
        evaluate(sch.keys_from(primary, secondary), name)

    rev = inst.reversed()

    def justify(s: sch.Schedule, label: str) -> None:
        """Forward-backward improvement until it stops improving."""
        current = s
        while time_left():
            back = sch.simulate(rev, sch.keys_from([0] * n, [-f for f in current.finish]))
            if not time_left():
                return
            # reflect the backward schedule: a task's forward start is makespan - its finish
            fwd_start = [back.makespan - f for f in back.finish]
            nxt = evaluate(sch.keys_from(primary, fwd_start), label)
            if nxt.makespan >= current.makespan - 1e-9:
                return
            current = nxt

    justify(best, "forward-backward")
    spread = 0.02
    while time_left():
        noise = [blevel[i] * (1 + rng.uniform(-spread, spread)) for i in range(n)]
        key = sch.keys_from(primary, [-(noise[i] * (n + 1) + nsucc[i]) for i in range(n)])
        s = evaluate(key, "perturbed b-level")
        justify(s, "perturbed+forward-backward")
        spread = 0.3 if spread >= 0.3 else spread * 1.5
    assert best is not None
    return Result(
        key=best_key,
        schedule=best,
        method=best_method,
        evaluations=evaluations,
        seconds=time.perf_counter() - t0,
        baseline=baseline,
        blevel=blevel,
        lower_bound=bound,
        effective_priority=eff,
    )
