"""The fleet scheduler end to end: plans share the build workers and the solvers' capacity."""

from __future__ import annotations

import datetime as dt

import psycopg

from planfleet import models
from tests.conftest import wait_for
from tests.integration.conftest import Fleet


def _max_overlap(spans: list[tuple[dt.datetime, dt.datetime]]) -> int:
    """The most intervals open at one instant (an end before a start at the same instant)."""
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans],
                    key=lambda p: (p[0], p[1]))
    most = now = 0
    for _, d in points:
        now += d
        most = max(most, now)
    return most


def _all_built(fleet: Fleet, n: int, timeout: float) -> list[models.PlanRecord]:
    def built() -> list[models.PlanRecord] | None:
        plans = fleet.store.plans.list(limit=1000)
        failed = [p for p in plans if p.status is models.PlanStatus.FAILED]
        assert not failed, failed[0].error
        return plans if len(plans) == n and all(
            p.status is models.PlanStatus.BUILT for p in plans) else None

    got = wait_for(built, timeout=timeout, interval=0.2)
    assert isinstance(got, list)
    return got


def test_plans_progress_at_once_on_one_build_worker(fleet: Fleet) -> None:
    # Given one build worker, runner slots for all, and four plans of three independent
    # two-second tasks
    fleet.store.settings.update(auto_build=False)
    fleet.env.update(PLANFLEET_RUNNER_SLOTS="12")
    fleet.workers()
    for k in range(4):
        fleet.submit(fleet.task_file([{"id": f"P{k}T{i}", "args": {"sleep": 2.0}}
                                      for i in range(3)], max_parallel=3))
    ready = wait_for(lambda: len(p := [x.id for x in fleet.store.plans.list()
                                       if x.status is models.PlanStatus.READY_FOR_BUILD]) == 4
                     and p, timeout=60)
    # When all four are queued for building at once
    assert fleet.cli("enqueue-build", *map(str, ready)).returncode == 0  # type: ignore[arg-type]
    plans = _all_built(fleet, 4, timeout=90)
    # Then no plan waited for another: at one instant every plan had a step running
    spans = {p.id: [(s.started_at, s.finished_at) for s in fleet.store.steps.all(p.id)]
             for p in plans}
    starts = sorted(a for ss in spans.values() for a, _ in ss if a)
    first_ends = [min(b for _, b in ss if b) for ss in spans.values()]
    assert max(min(a for a, _ in ss) for ss in spans.values()) < min(first_ends)
    assert len(starts) == 12
    for p in plans:
        for s in fleet.store.steps.all(p.id):
            assert len(fleet.executions(p.id, s.task_id)) == 1


def test_a_solver_capacity_holds_across_eight_workers_and_fifty_plans(fleet: Fleet) -> None:
    # Given a solver of capacity 3 for the whole fleet, and eight build workers
    fleet.store.fleet.set_solver("angrav", 3)
    fleet.store.settings.update(max_running=100)
    fleet.env.update(PLANFLEET_RUNNER_SLOTS="16")
    fleet.worker("plan_queue")
    for _ in range(8):
        fleet.worker("build_queue")
    # When fifty plans each declare the solver with a larger capacity of their own
    for k in range(50):
        fleet.submit(fleet.task_file(
            [{"id": f"P{k}A", "solver": "angrav", "args": {"sleep": 0.05}},
             {"id": f"P{k}B", "solver": "angrav", "args": {"sleep": 0.05}}],
            solvers={"angrav": {"script": "f/test/work", "capacity": 5}}, max_parallel=5))
    plans = _all_built(fleet, 50, timeout=240)
    # Then, measured from the steps' slots, never more than three ran at once, and three did
    spans = [(s.started_at, s.finished_at) for p in plans for s in fleet.store.steps.all(p.id)]
    assert len(spans) == 100 and all(a and b for a, b in spans)
    assert _max_overlap(spans) == 3  # type: ignore[arg-type]
    for p in plans:
        for s in fleet.store.steps.all(p.id):
            assert len(fleet.executions(p.id, s.task_id)) == 1, f"{s.task_id} ran twice"
    # and each input says that its capacity of 5 was above the fleet's, which held
    assert plans[0].pending_input_id is not None
    (warning,) = fleet.store.inputs.get(plans[0].pending_input_id).warnings
    assert warning["code"] == "capacity_above_fleet" and "the fleet's 3" in warning["message"]


def test_a_ready_step_says_why_it_waits_and_starts_when_capacity_is_raised(
        fleet: Fleet) -> None:
    fleet.store.fleet.set_solver("angrav", 0)
    fleet.workers()
    fleet.submit(fleet.task_file([{"id": "A", "solver": "angrav", "args": {"sleep": 0}}],
                                 solvers={"angrav": {"script": "f/test/work"}}))
    plan = wait_for(lambda: fleet.store.plans.list(), timeout=30)[0]  # type: ignore[index]
    out = wait_for(lambda: "WAITING A" in (r := fleet.cli("show", str(plan.id))).stdout and r,
                   timeout=30)
    assert "waiting for a free angrav slot: 0 of 0 busy" in out.stdout  # type: ignore[union-attr]
    listed = fleet.cli("solvers")
    assert "angrav" in listed.stdout and "1" in listed.stdout.split("angrav")[1].split("\n")[0]
    assert fleet.cli("solvers", "set", "angrav", "--capacity", "1").returncode == 0
    wait_for(lambda: fleet.store.plans.get(plan.id).status is models.PlanStatus.BUILT, 30)
    assert fleet.cli("solvers", "remove", "angrav").returncode == 0
    assert fleet.cli("solvers", "remove", "angrav").returncode != 0


def test_a_plan_whose_turns_keep_failing_fails_with_the_error(fleet: Fleet) -> None:
    # Given a plan whose document a turn cannot read (an unexpected error in every turn)
    fleet.store.settings.update(auto_build=False)
    fleet.workers()
    fleet.submit(fleet.task_file([{"id": "A"}]))
    plan = wait_for(lambda: (ps := fleet.store.plans.list()) and ps[0].status
                    is models.PlanStatus.READY_FOR_BUILD and ps[0], timeout=60)
    with psycopg.connect(fleet.config.database_url, autocommit=True) as conn:
        conn.execute("UPDATE plans SET plan = plan - 'tasks' WHERE id = %s",
                     (plan.id,))  # type: ignore[union-attr]
    # When it is built
    assert fleet.cli("enqueue-build", str(plan.id)).returncode == 0  # type: ignore[union-attr]
    # Then after a few turns it fails with the error, instead of being turned for ever
    got = wait_for(lambda: (p := fleet.store.plans.get(plan.id)).status  # type: ignore[union-attr]
                   is models.PlanStatus.FAILED and p, timeout=90, interval=0.2)
    assert "failed 3 times with an unexpected error: ValidationError" in got.error  # type: ignore[union-attr]
    assert {s.status for s in fleet.store.steps.all(plan.id)} <= {  # type: ignore[union-attr]
        models.StepStatus.CANCELLED}
