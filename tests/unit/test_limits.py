"""The fleet's limits on what a task file may ask (pure)."""

from __future__ import annotations


def test_a_capacity_above_the_fleets_is_planned_with_a_warning() -> None:
    from planfleet.planner.limits import capacity_warnings
    from planfleet.planner.tasks import SolverSpec

    solvers = {"angrav": SolverSpec(capacity=10), "jules": SolverSpec(capacity=2),
               "free": SolverSpec(capacity=50)}
    (w,) = capacity_warnings(solvers, {"angrav": 3, "jules": 2})
    assert (w.code, w.field) == ("capacity_above_fleet", "solvers.angrav.capacity")
    assert "capacity 10 for solver angrav is above the fleet's 3" in w.message
