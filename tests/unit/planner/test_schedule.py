"""The schedule: feasible under every constraint, within Graham's bound, never worse than
plain critical-path list scheduling, business priority first."""

from __future__ import annotations

import random

import pytest

from planfleet.planner import generators as gen
from planfleet.planner import graph, plan, replan, search
from planfleet.planner import schedule as sch
from planfleet.planner.plan import _instance
from planfleet.planner.tasks import SolverSpec, TaskList, TaskSpec


def instance_of(tl: TaskList, m: int) -> tuple[sch.Instance, graph.Graph]:
    g = graph.validate(tl)
    caps = {n: s.capacity for n, s in tl.solvers.items() if s.capacity}
    inst, _ = _instance(tl, g, m, caps)
    return inst, g


@pytest.mark.parametrize("shape", sorted(gen.SHAPES))
@pytest.mark.parametrize("m", [1, 2, 4, 16])
def test_plans_are_feasible_and_within_grahams_bound(shape: str, m: int) -> None:
    for seed in range(3):
        tl = gen.random_task_list(80, seed, shape)
        p = plan(tl, max_parallel=m, budget=0.05)
        inst, g = instance_of(tl, m)
        s = sch.Schedule(
            start=[p.schedule[t].start for t in g.ids],
            finish=[p.schedule[t].finish for t in g.ids],
            makespan=p.makespan,
        )
        assert sch.check(inst, s) == []
        work = sum(inst.dur)
        assert p.makespan <= work / m + (1 - 1 / m) * p.critical_path_length + 1e-6
        assert p.makespan >= p.lower_bound - 1e-6
        assert p.makespan <= p.search["baseline_makespan"] + 1e-9
        assert sorted(p.priority_order) == sorted(g.ids)
        assert all(len(b) <= m for b in p.batches)


def test_solver_capacity_and_parallel_false_are_honoured() -> None:
    rng = random.Random(7)
    for seed in range(10):
        tl = gen.random_task_list(60, seed, "layered")
        tasks = tuple(
            t.model_copy(update={
                "solver": (rng.choice(["a", "b", "c"]),) if rng.random() < 0.7 else (),
                "parallel": rng.random() > 0.08,
            })
            for t in tl.tasks
        )
        tl = tl.model_copy(update={
            "tasks": tasks,
            "solvers": {"a": SolverSpec(capacity=1), "b": SolverSpec(capacity=2),
                        "c": SolverSpec()},
        })
        p = plan(tl, max_parallel=4, budget=0.05)
        inst, g = instance_of(tl, 4)
        s = sch.Schedule([p.schedule[t].start for t in g.ids],
                         [p.schedule[t].finish for t in g.ids], p.makespan)
        assert sch.check(inst, s) == [], seed
        assert p.makespan >= p.lower_bound - 1e-6
        # waves honour the same rules
        for wave in p.batches:
            assert sum(1 for t in wave if p.tasks[t].solver[:1] == ["a"]) <= 1
            assert sum(1 for t in wave if p.tasks[t].solver[:1] == ["b"]) <= 2
            if any(not p.tasks[t].parallel for t in wave):
                assert len(wave) == 1


def test_checker_catches_a_broken_schedule() -> None:
    tl = gen.random_task_list(10, 1, "chains")
    inst, _ = instance_of(tl, 2)
    s = sch.simulate(inst, list(range(10)))
    assert sch.check(inst, s) == []
    broken = sch.Schedule([0.0] * 10, [inst.dur[i] for i in range(10)], max(inst.dur))
    assert sch.check(inst, broken)


def test_business_priority_goes_first_and_is_inherited() -> None:
    tl = TaskList(format="t", tasks=(
        TaskSpec(id="long", estimate=100),
        TaskSpec(id="low", estimate=10, priority=25),
        TaskSpec(id="prereq", estimate=5, priority=25),
        TaskSpec(id="urgent", estimate=5, priority=100, depends_on=("prereq",)),
    ))
    p = plan(tl, max_parallel=1, budget=0.05)
    # makespan would favour "long" first (it is the critical path); business priority wins
    assert p.priority_order[:2] == ["prereq", "urgent"]
    assert p.schedule["prereq"].start == 0 and p.schedule["urgent"].start == 5
    assert "raised from 25 to 100" in p.explanation["prereq"]
    assert p.tasks["prereq"].effective_priority == 100


def test_search_beats_plain_b_level_on_average() -> None:
    gains = []
    for seed in range(12):
        tl = gen.random_task_list(120, seed, "random")
        for m in (2, 4, 8):
            p = plan(tl, max_parallel=m, budget=0.08)
            gains.append(p.search["baseline_makespan"] - p.makespan)
    assert min(gains) >= 0
    assert sum(gains) > 0


def test_lower_bound_is_reached_when_work_dominates() -> None:
    tl = TaskList(format="t", tasks=tuple(TaskSpec(id=f"T{i}", estimate=10) for i in range(8)))
    p = plan(tl, max_parallel=4)
    assert p.makespan == p.lower_bound == 20
    assert p.immediate_batch == p.priority_order[:4]
    assert [len(b) for b in p.batches] == [4, 4]
    assert p.search["evaluations"] == 1  # stopped at the bound


def test_explanations_name_waits_and_slack() -> None:
    tl = TaskList(
        format="t",
        solvers={"angrav": SolverSpec(capacity=1)},
        tasks=(
            TaskSpec(id="A", estimate=30),
            TaskSpec(id="B", estimate=60, depends_on=("A",), solver=("angrav",)),
            TaskSpec(id="C", estimate=10, depends_on=("A",), solver=("angrav",)),
            TaskSpec(id="D", estimate=5),
        ),
    )
    p = plan(tl, max_parallel=2)
    assert p.explanation["A"].startswith("No dependencies; starts at once")
    assert "on the critical path, with slack 10m" in p.explanation["A"]
    assert "Waits for A, which finishes at 30m" in p.explanation["B"]
    assert "waits 1h for solver angrav (capacity 1, all busy)" in p.explanation["C"]
    assert "slack" in p.explanation["D"]


def test_replan_starts_what_is_ready_in_priority_order() -> None:
    tl = TaskList(format="t", tasks=(
        TaskSpec(id="A", estimate=30),
        TaskSpec(id="B", estimate=30, depends_on=("A",)),
        TaskSpec(id="C", estimate=60, depends_on=("A",)),
        TaskSpec(id="D", estimate=10, depends_on=("B", "C")),
        TaskSpec(id="E", estimate=5),
    ))
    p = plan(tl, max_parallel=2)
    r = replan(p, completed={"A"}, running={"E": 0.0}, now=30.0)
    # one slot is free (E runs until... it finished at 5 in truth but is reported running)
    assert r.start_now == ["C"]
    r = replan(p, completed={"A", "E"}, running={}, now=31.0)
    assert r.start_now == ["C", "B"] and r.makespan == 31 + 60 + 10
    r = replan(p, completed=set(p.priority_order), running={}, now=99.0)
    assert r.start_now == [] and r.makespan == 99.0


def test_inherited_priority_and_bounds_helpers() -> None:
    tl = gen.task_list([1.0, 2.0, 3.0], [(0, 1), (1, 2)])
    inst, g = instance_of(tl, 2)
    assert search.inherited_priority(inst, g.topo, [0, 10, 5]) == [10, 10, 5]
    bl, tlv = sch.levels(inst, g.topo)
    assert bl == [6.0, 5.0, 3.0] and tlv == [0.0, 1.0, 3.0]
    assert search.lower_bound(inst, bl) == 6.0
