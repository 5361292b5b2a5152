"""The fleet's sharing policy: pure decisions, no Postgres or Redis."""

from __future__ import annotations

import heapq
import inspect
import random
from typing import Any

import pytest

from planfleet import admission
from planfleet.planner import schedule as sch
from planfleet.workers import sharing
from planfleet.workers.sharing import Candidate, Fleet, PlanState


def c(step: int, plan: int, *, solver: str | None = None, priority: int = 50, rank: int = 0,
      waited: float = 0.0, alone: bool = False) -> Candidate:
    return Candidate(step, plan, f"T{step}", solver, priority, rank, waited, alone)


def ids(chosen: list[Candidate]) -> list[int]:
    return [x.step_id for x in chosen]


def test_a_solver_capacity_holds_across_plans() -> None:
    cands = [c(i, plan=i, solver="angrav") for i in range(1, 6)]
    plans = {i: PlanState(max_parallel=10) for i in range(1, 6)}
    chosen = sharing.choose(cands, plans, Fleet(free=100, caps={"angrav": 3}, busy={"angrav": 1}),
                            aging=600)
    assert len(chosen) == 2  # 3 of capacity, 1 busy already


def test_a_plan_narrows_a_capacity_but_the_fleet_bounds_it() -> None:
    cands = [c(i, plan=1, solver="angrav", rank=i) for i in range(5)]
    narrow = {1: PlanState(max_parallel=10, caps={"angrav": 1})}
    assert ids(sharing.choose(cands, narrow, Fleet(free=9, caps={"angrav": 3}), aging=600)) == [0]
    wide = {1: PlanState(max_parallel=10, caps={"angrav": 9})}
    assert len(sharing.choose(cands, wide, Fleet(free=9, caps={"angrav": 3}), aging=600)) == 3


def test_max_running_and_max_parallel_bound_the_rest() -> None:
    cands = [c(i, plan=1 + i % 2, rank=i) for i in range(10)]
    plans = {1: PlanState(max_parallel=2), 2: PlanState(max_parallel=10, active=1)}
    chosen = sharing.choose(cands, plans, Fleet(free=4), aging=600)
    assert len(chosen) == 4
    assert sum(x.plan_id == 1 for x in chosen) == 2


def test_business_priority_first_then_round_robin_between_equals() -> None:
    cands = [c(1, plan=1, rank=0), c(2, plan=1, rank=1), c(3, plan=1, rank=2),
             c(4, plan=2, rank=0), c(5, plan=2, rank=1),
             c(6, plan=3, rank=5, priority=100)]
    plans = {1: PlanState(max_parallel=9, since_served=10.0),
             2: PlanState(max_parallel=9, since_served=50.0),  # served longer ago: first
             3: PlanState(max_parallel=9)}
    order = ids(sharing.order(cands, plans, aging=600))
    assert order == [6, 4, 1, 5, 2, 3]
    assert ids(sharing.choose(cands, plans, Fleet(free=3), aging=600)) == [6, 4, 1]


def test_aging_lifts_a_waiting_low_priority_step_within_its_bound() -> None:
    idle = c(1, plan=1, priority=0, waited=4 * 600)  # four aging periods: level with critical
    critical = c(2, plan=2, priority=100, waited=0)
    plans = {1: PlanState(max_parallel=1, since_served=100.0),
             2: PlanState(max_parallel=1, since_served=1.0)}
    assert ids(sharing.choose([idle, critical], plans, Fleet(free=1), aging=600)) == [1]
    young = c(1, plan=1, priority=0, waited=4 * 600 - 1)
    assert ids(sharing.choose([young, critical], plans, Fleet(free=1), aging=600)) == [2]
    assert sharing.standing(0, 4 * 600, 600) == 100


def test_a_step_that_runs_alone_waits_for_its_plan_and_holds_it_back() -> None:
    alone = c(1, plan=1, rank=0, alone=True)
    other = c(2, plan=1, rank=1)
    elsewhere = c(3, plan=2)
    busy = {1: PlanState(max_parallel=9, active=1), 2: PlanState(max_parallel=9)}
    assert ids(sharing.choose([alone, other, elsewhere], busy, Fleet(free=9), aging=600)) == [3]
    idle = {1: PlanState(max_parallel=9), 2: PlanState(max_parallel=9)}
    chosen = ids(sharing.choose([alone, other, elsewhere], idle, Fleet(free=9), aging=600))
    assert sorted(chosen) == [1, 3]
    running_alone = {1: PlanState(max_parallel=9, active=1, alone_active=True),
                     2: PlanState(max_parallel=9)}
    assert ids(sharing.choose([other], running_alone, Fleet(free=9), aging=600)) == []


def test_a_step_blocked_by_its_full_solver_lets_others_pass() -> None:
    cands = [c(1, plan=1, solver="angrav", rank=0), c(2, plan=1, solver="jules", rank=1)]
    plans = {1: PlanState(max_parallel=9)}
    chosen = sharing.choose(cands, plans, Fleet(free=9, caps={"angrav": 1}, busy={"angrav": 1}),
                            aging=600)
    assert ids(chosen) == [2]


def test_waiting_reasons_name_the_solver_and_the_plans_holding_it() -> None:
    cand = c(1, plan=5, solver="angrav")
    fleet = Fleet(free=5, caps={"angrav": 3}, busy={"angrav": 3})
    why = sharing.waiting_reason(cand, PlanState(max_parallel=4), fleet, {"angrav": [12, 14]})
    assert why == "waiting for a free angrav slot: 3 of 3 busy, plans 12 and 14"
    assert "max_parallel 2" in sharing.waiting_reason(
        c(1, plan=5), PlanState(max_parallel=2, active=2), Fleet(free=5), {})


def _run_alone(inst: sch.Instance, key: list[int]) -> list[float]:
    """Drive the sharing policy as the build does for a plan running alone in the fleet:
    whenever steps end, choose among the ready ones; the start time of every task."""
    n = inst.n
    indeg = [len(p) for p in inst.pred]
    names = [f"s{i}" for i in range(len(inst.caps))]
    caps = {names[s]: cap for s, cap in enumerate(inst.caps)}
    ready = {i for i in range(n) if indeg[i] == 0}
    running: list[tuple[float, int]] = []
    start = [0.0] * n
    t = 0.0
    while ready or running:
        active = [i for _, i in running]
        by_solver: dict[str, int] = {}
        for i in active:
            if inst.solver[i] >= 0:
                by_solver[names[inst.solver[i]]] = by_solver.get(names[inst.solver[i]], 0) + 1
        plan = PlanState(max_parallel=inst.m, active=len(active), active_by_solver=by_solver,
                         alone_active=any(inst.exclusive[i] for i in active), caps=caps)
        cands = [Candidate(i, 1, f"T{i}", names[inst.solver[i]] if inst.solver[i] >= 0 else None,
                           50, key[i], 0.0, inst.exclusive[i]) for i in ready]
        for x in sharing.choose(cands, {1: plan}, Fleet(free=inst.m), aging=0):
            ready.discard(x.step_id)
            start[x.step_id] = t
            heapq.heappush(running, (t + inst.dur[x.step_id], x.step_id))
        t, i = heapq.heappop(running)
        done = [i]
        while running and running[0][0] <= t:
            done.append(heapq.heappop(running)[1])
        for i in done:
            for j in inst.succ[i]:
                indeg[j] -= 1
                if indeg[j] == 0:
                    ready.add(j)
    return start


def _random_plan(seed: int) -> tuple[sch.Instance, list[int]]:
    """A random plan (dependencies, solvers of small capacity, some tasks that run alone) and
    a random priority order."""
    rng = random.Random(seed)
    n = rng.randint(5, 40)
    succ: list[list[int]] = [[] for _ in range(n)]
    pred: list[list[int]] = [[] for _ in range(n)]
    for j in range(1, n):
        for i in rng.sample(range(j), k=min(j, rng.randint(0, 3))):
            succ[i].append(j)
            pred[j].append(i)
    solvers = rng.randint(0, 2)
    inst = sch.Instance(
        dur=[float(rng.randint(1, 9)) for _ in range(n)], succ=succ, pred=pred,
        m=rng.randint(1, 6), solver=[rng.randint(-1, solvers - 1) for _ in range(n)],
        caps=[rng.randint(1, 3) for _ in range(solvers)],
        exclusive=[rng.random() < 0.1 for _ in range(n)])
    key = list(range(n))
    rng.shuffle(key)
    return inst, key


@pytest.mark.parametrize("seed", range(40))
def test_a_plan_running_alone_starts_its_tasks_as_its_schedule_predicted(seed: int) -> None:
    inst, key = _random_plan(seed)
    predicted = sch.simulate(inst, key)
    assert _run_alone(inst, key) == predicted.start


def test_the_schedule_and_the_build_ask_one_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both consult planfleet.admission.admit: a plan's schedule and its build cannot drift."""
    asked: list[str] = []
    rule = admission.admit

    def spy(*args: Any) -> int:
        asked.append(inspect.stack()[1].function)
        return rule(*args)

    monkeypatch.setattr(admission, "admit", spy)
    inst, key = _random_plan(3)
    assert _run_alone(inst, key) == sch.simulate(inst, key).start
    assert {"simulate", "choose"} <= set(asked)
