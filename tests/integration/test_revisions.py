"""A changed task file revises its plan instead of starting over: end to end with real
workers, Postgres and Redis, and a solver script that records each execution."""

from __future__ import annotations

from typing import Any

from planfleet import models
from tests.conftest import wait_for
from tests.integration.conftest import Fleet

P = models.PlanStatus
S = models.StepStatus


def _version(fleet: Fleet, tasks: list[dict[str, Any]], **top: Any) -> bytes:
    return fleet.task_file([dict(t, args=dict(t.get("args", {}))) for t in tasks], **top)


def _steps(fleet: Fleet, plan_id: int) -> dict[str, models.Step]:
    return fleet.store.steps.latest(plan_id)


def _running(fleet: Fleet, plan_id: int, task: str) -> bool:
    step = _steps(fleet, plan_id).get(task)
    return step is not None and step.status in (S.DISPATCHED, S.RUNNING)


def _ended(fleet: Fleet, plan_id: int) -> models.PlanRecord:
    record = wait_for(lambda: (p := fleet.store.plans.get(plan_id)).status in (
        P.BUILT, P.FAILED, P.BLOCKED) and p, timeout=90, interval=0.1)
    assert isinstance(record, models.PlanRecord)
    return record


V1 = [
    {"id": "A", "title": "Set up"},
    {"id": "B", "title": "Schema"},
    {"id": "C", "title": "Slow migration", "args": {"sleep": 3.0}},
    {"id": "D", "title": "API", "depends_on": ["C"]},
    {"id": "E", "title": "Docs", "depends_on": ["C"]},
]


def test_a_new_version_revises_the_running_plan_and_every_task_runs_once(fleet: Fleet) -> None:
    # Given feature.yaml of five tasks, building, its slow task C running
    fleet.workers()
    fleet.submit(_version(fleet, V1, max_parallel=5), name="feature.yaml")
    plan_id = wait_for(lambda: (p := fleet.store.plans.list()) and p[0].id, timeout=60)
    assert isinstance(plan_id, int)
    wait_for(lambda: _running(fleet, plan_id, "C") and all(
        _steps(fleet, plan_id)[t].status is S.COMPLETED for t in "AB"), timeout=60)
    # When a second version arrives under the same name: E removed, F added, D's args
    # changed, C's title reworded
    v2 = [dict(V1[0]), dict(V1[1]), dict(V1[2], title="Slow migration, reworded"),
          dict(V1[3], args={"sleep": 0.07}),
          {"id": "F", "title": "Client", "depends_on": ["A"]}]
    second = fleet.submit(_version(fleet, v2, max_parallel=5), name="feature.yaml")
    record = _ended(fleet, plan_id)
    # Then the same plan was revised and built; every task ran exactly once, D with its new
    # args, C's first job followed to its end, E never
    assert record.status is P.BUILT, record.error
    assert record.revision == 1 and fleet.store.plans.list()[0].id == plan_id
    assert fleet.store.inputs.get(second).status is models.InputStatus.PLANNED
    for task in "ABCDF":
        assert len(fleet.executions(plan_id, task)) == 1, task
    assert fleet.executions(plan_id, "E") == []
    assert fleet.executions(plan_id, "D")[0]["sleep"] == 0.07
    steps = _steps(fleet, plan_id)
    assert steps["C"].attempt == 1 and steps["C"].args["title"] == "Slow migration"
    assert steps["E"].status is S.CANCELLED and steps["E"].removed == "removed_from_source"
    (event,) = fleet.store.events.list(plan_id=plan_id, kind="plan_revised")
    assert (event.data["added"], event.data["removed"], event.data["changed"],
            event.data["adopted"], sorted(event.data["kept"])) == (
        ["F"], ["E"], ["D"], ["C"], ["A", "B"])


def test_a_changed_running_task_is_cancelled_and_runs_again_with_its_new_definition(
        fleet: Fleet) -> None:
    fleet.workers()
    tasks = [{"id": "A", "args": {"sleep": 30.0}}, {"id": "B", "depends_on": ["A"]}]
    fleet.submit(_version(fleet, tasks), name="job.yaml")
    plan_id = wait_for(lambda: (p := fleet.store.plans.list()) and p[0].id, timeout=60)
    assert isinstance(plan_id, int)
    wait_for(lambda: _running(fleet, plan_id, "A"), timeout=60)
    first_job = _steps(fleet, plan_id)["A"].windmill_job_id
    # a new version changes A's args while its job runs (on_change: rerun, the default)
    fleet.submit(_version(fleet, [{"id": "A", "args": {"sleep": 0.05}},
                                  {"id": "B", "depends_on": ["A"]}]), name="job.yaml")
    record = _ended(fleet, plan_id)
    assert record.status is P.BUILT, record.error
    attempts = [s for s in fleet.store.steps.all(plan_id) if s.task_id == "A"]
    assert [(s.attempt, s.status) for s in attempts] == [(1, S.CANCELLED), (2, S.COMPLETED)]
    assert attempts[0].windmill_job_id == first_job
    # the cancelled job never finished; the new definition ran once, then B once
    assert [e["sleep"] for e in fleet.executions(plan_id, "A")] == [0.05]
    assert len(fleet.executions(plan_id, "B")) == 1


def test_versions_in_quick_succession_apply_in_order_and_the_newest_wins(fleet: Fleet) -> None:
    fleet.workers()
    base = [{"id": "A", "args": {"sleep": 2.0}}, {"id": "B", "depends_on": ["A"]}]
    fleet.submit(_version(fleet, base), name="quick.yaml")
    plan_id = wait_for(lambda: (p := fleet.store.plans.list()) and p[0].id, timeout=60)
    assert isinstance(plan_id, int)
    wait_for(lambda: _running(fleet, plan_id, "A"), timeout=60)
    # two versions 10 ms apart: B's args changed, then changed again
    fleet.submit(_version(fleet, [base[0], dict(base[1], args={"sleep": 0.06})]),
                 name="quick.yaml")
    fleet.submit(_version(fleet, [base[0], dict(base[1], args={"sleep": 0.08})]),
                 name="quick.yaml")
    record = _ended(fleet, plan_id)
    assert record.status is P.BUILT, record.error
    # A ran once; B once, with the newest version's args
    assert len(fleet.executions(plan_id, "A")) == 1
    assert [e["sleep"] for e in fleet.executions(plan_id, "B")] == [0.08]
    revisions = fleet.store.revisions.of_plan(plan_id)
    assert revisions[-1].status == "applied"
    assert all(r.status in ("applied", "superseded") for r in revisions)


def test_a_new_version_of_a_built_plan_runs_only_what_changed(fleet: Fleet) -> None:
    fleet.workers()
    tasks = [{"id": "A"}, {"id": "B", "depends_on": ["A"]}, {"id": "C", "depends_on": ["B"]},
             {"id": "D"}]
    fleet.submit(_version(fleet, tasks), name="done.yaml")
    first = wait_for(lambda: (p := fleet.store.plans.list()) and p[0].id, timeout=60)
    assert isinstance(first, int)
    assert _ended(fleet, first).status is P.BUILT
    # B changed: B runs again; C (completed, downstream) is kept and marked stale; A and D kept
    changed = [tasks[0], dict(tasks[1], args={"sleep": 0.06}), tasks[2], tasks[3]]
    fleet.submit(_version(fleet, changed), name="done.yaml")
    second = wait_for(lambda: (p := fleet.store.plans.list()) and p[0].id != first and p[0].id,
                      timeout=60)
    assert isinstance(second, int)
    assert _ended(fleet, second).status is P.BUILT
    assert [e["sleep"] for e in fleet.executions(second, "B")] == [0.06]
    for task in "ACD":
        assert fleet.executions(second, task) == [], task
    steps = _steps(fleet, second)
    assert steps["C"].stale and steps["C"].status is S.COMPLETED
    assert not steps["A"].stale


def test_without_auto_build_a_revision_waits_for_a_person(fleet: Fleet) -> None:
    fleet.workers()
    # (A runs long enough for the person to look before B could start)
    tasks = [{"id": "A", "args": {"sleep": 6.0}}, {"id": "B", "depends_on": ["A"]}]
    fleet.submit(_version(fleet, tasks), name="manual.yaml")
    plan_id = wait_for(lambda: (p := fleet.store.plans.list()) and p[0].id, timeout=60)
    assert isinstance(plan_id, int)
    wait_for(lambda: _running(fleet, plan_id, "A"), timeout=60)
    fleet.store.settings.update(auto_build=False)
    fleet.submit(_version(fleet, [tasks[0], {"id": "C", "depends_on": ["A"]}]),
                 name="manual.yaml")
    waiting = wait_for(lambda: [r for r in fleet.store.revisions.of_plan(plan_id)
                                if r.status == "waiting"], timeout=30)
    assert isinstance(waiting, list)
    # the diff is shown before anything is applied
    shown = fleet.cli("apply-revision", str(plan_id))
    assert shown.returncode == 0, shown.stderr
    assert "added: C" in shown.stdout and "removed: B" in shown.stdout
    assert fleet.store.revisions.of_plan(plan_id)[-1].status == "waiting"
    applied = fleet.cli("apply-revision", str(plan_id), "--yes")
    assert applied.returncode == 0, applied.stderr
    record = _ended(fleet, plan_id)
    assert record.status is P.BUILT, record.error
    assert fleet.executions(plan_id, "B") == [] and len(fleet.executions(plan_id, "C")) == 1
