"""A changed task file revises its plan instead of starting over: end to end with real
workers, Postgres and Redis, and a solver script that records each execution."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from planfleet import models
from planfleet.dispatch import JobState, JobStatus, Submission
from planfleet.workers import planning, turns
from planfleet.workers.dispatching import Dispatching
from planfleet.workers.tracker import Tracker
from tests.conftest import wait_for
from tests.integration.conftest import SCRIPTS, Fleet

PACKAGE_SCRIPTS = Path(__file__).resolve().parents[2] / "planfleet" / "windmill"

P = models.PlanStatus
S = models.StepStatus


def _version(fleet: Fleet, tasks: list[dict[str, Any]], **top: Any) -> bytes:
    return fleet.task_file([dict(t, args=dict(t.get("args", {}))) for t in tasks], **top)


def _steps(fleet: Fleet, plan_id: int) -> dict[str, models.Step]:
    return fleet.store.steps.latest(plan_id)


def _running(fleet: Fleet, plan_id: int, task: str) -> bool:
    step = _steps(fleet, plan_id).get(task)
    return step is not None and step.status in (S.DISPATCHED, S.RUNNING)


def _newest_plan(fleet: Fleet) -> int:
    plan_id = wait_for(lambda: (p := fleet.store.plans.list()) and p[0].id, timeout=60)
    assert isinstance(plan_id, int)
    return plan_id


def _once_running(fleet: Fleet, task: str) -> int:
    """The newest plan, once its ``task`` runs."""
    plan_id = _newest_plan(fleet)
    wait_for(lambda: _running(fleet, plan_id, task), timeout=60)
    return plan_id


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
    plan_id = _once_running(fleet, "C")
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
    # the schedule was recomputed for what remained: C under way, D and F to come
    assert record.plan is not None
    assert sorted(record.plan["remaining"]["schedule"]) == ["C", "D", "F"]
    (event,) = fleet.store.events.list(plan_id=plan_id, kind="plan_revised")
    assert (event.data["added"], event.data["removed"], event.data["changed"],
            event.data["adopted"], sorted(event.data["kept"])) == (
        ["F"], ["E"], ["D"], ["C"], ["A", "B"])


def test_a_changed_running_task_is_cancelled_and_runs_again_with_its_new_definition(
        fleet: Fleet) -> None:
    fleet.workers()
    tasks = [{"id": "A", "args": {"sleep": 30.0}}, {"id": "B", "depends_on": ["A"]}]
    fleet.submit(_version(fleet, tasks), name="job.yaml")
    plan_id = _once_running(fleet, "A")
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
    plan_id = _once_running(fleet, "A")
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
    first = _newest_plan(fleet)
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
    plan_id = _once_running(fleet, "A")
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


def test_a_tasks_md_checked_off_and_extended_over_three_versions_runs_each_task_once(
        fleet: Fleet) -> None:
    # the shipped solver script beside the test scripts (markdown tasks run the default one)
    scripts = fleet.tmp / "scripts"
    shutil.copytree(SCRIPTS, scripts)
    shutil.copytree(PACKAGE_SCRIPTS / "f" / "planner", scripts / "f" / "planner")
    fleet.env["PLANFLEET_SCRIPTS_DIR"] = str(scripts)
    fleet.workers()
    versions = [
        "- [ ] T001 Set up\n- [ ] T002 Schema\n- [ ] T003 API\n",
        "- [x] T001 Set up\n- [ ] T002 Schema\n- [ ] T003 API\n- [ ] T004 Client\n",
        "- [x] T001 Set up\n- [x] T002 Schema\n- [ ] T003 API\n- [ ] T004 Client\n"
        "- [ ] T005 Docs\n",
    ]
    plans: list[int] = []
    for text in versions:
        fleet.submit(text.encode(), name="tasks.md")
        plan_id = wait_for(lambda: (p := fleet.store.plans.list()) and p[0].id not in plans
                           and p[0].id, timeout=60)
        assert isinstance(plan_id, int)
        assert _ended(fleet, plan_id).status is P.BUILT
        plans.append(plan_id)
    # every task was dispatched once across the three plans; what a version kept was copied
    dispatched: dict[str, int] = {}
    for plan_id in plans:
        for step in fleet.store.steps.all(plan_id):
            if step.windmill_job_id is not None:
                dispatched[step.task_id] = dispatched.get(step.task_id, 0) + 1
    assert dispatched == {"T001": 1, "T002": 1, "T003": 1, "T004": 1, "T005": 1}
    last = fleet.store.plans.get(plans[-1])
    assert last.plan is not None and sorted(last.plan["done_in_source"]) == ["T001", "T002"]
    assert sorted(_steps(fleet, plans[-1])) == ["T003", "T004", "T005"]


def test_a_version_that_fails_to_plan_leaves_the_running_plan_untouched(fleet: Fleet) -> None:
    fleet.workers()
    base = [{"id": "A", "args": {"sleep": 2.0}}, {"id": "B", "depends_on": ["A"]}]
    fleet.submit(_version(fleet, base), name="bad.yaml")
    plan_id = _once_running(fleet, "A")
    broken = fleet.submit(_version(fleet, [base[0], {"id": "B", "depends_on": ["Z"]}]),
                          name="bad.yaml")
    wait_for(lambda: fleet.store.inputs.get(broken).status is models.InputStatus.FAILED,
             timeout=30)
    assert "Z" in (fleet.store.inputs.get(broken).error or "")
    fixed = fleet.submit(_version(fleet, [base[0], dict(base[1], args={"sleep": 0.06})]),
                         name="bad.yaml")
    record = _ended(fleet, plan_id)
    assert record.status is P.BUILT and record.revision == 1
    assert fleet.store.inputs.get(fixed).status is models.InputStatus.PLANNED
    assert len(fleet.executions(plan_id, "A")) == 1
    assert [e["sleep"] for e in fleet.executions(plan_id, "B")] == [0.06]


def test_on_change_finish_lets_the_job_end_then_runs_the_new_definition(fleet: Fleet) -> None:
    fleet.workers()
    v1 = [{"id": "A", "args": {"sleep": 2.0}}, {"id": "B", "depends_on": ["A"]}]
    fleet.submit(_version(fleet, v1, policy={"on_change": "finish"}), name="finish.yaml")
    plan_id = _once_running(fleet, "A")
    fleet.submit(_version(fleet, [dict(v1[0], args={"sleep": 0.05}), v1[1]],
                          policy={"on_change": "finish"}), name="finish.yaml")
    record = _ended(fleet, plan_id)
    assert record.status is P.BUILT, record.error
    # A's first job ran to its end, then A ran again with its new args; B once, after both
    runs = fleet.executions(plan_id, "A")
    assert [e["sleep"] for e in runs] == [2.0, 0.05]
    (b,) = fleet.executions(plan_id, "B")
    assert b["start"] >= runs[1]["end"]


class Recording:
    """A dispatcher that records what it was asked (jobs run until told otherwise)."""

    def __init__(self) -> None:
        self.submitted: list[tuple[Any, str]] = []
        self.cancelled: list[Any] = []
        self.states: dict[Any, JobStatus] = {}

    def submit(self, job_id: Any, script: str, args: dict[str, Any], timeout: float) -> None:
        self.submit_many([Submission(job_id, script, args, timeout)])

    def submit_many(self, jobs: Any) -> dict[Any, Any]:
        for j in jobs:
            self.submitted.append((j.job_id, j.args["task_id"]))
            self.states.setdefault(j.job_id, JobStatus(JobState.RUNNING))
        return {}

    def status(self, job_ids: Any) -> dict[Any, JobStatus]:
        return {j: self.states.get(j, JobStatus(JobState.UNKNOWN)) for j in job_ids}

    def cancel(self, job_id: Any, reason: str) -> None:
        self.cancelled.append(job_id)
        self.states[job_id] = JobStatus(JobState.FAILURE, error=reason)

    def close(self) -> None:
        pass


def test_a_worker_killed_while_applying_a_revision_leaves_it_to_the_next_turn(
        fleet: Fleet, monkeypatch: Any) -> None:
    rt, rec = fleet.rt, Recording()
    dispatching = Dispatching(rt.store, rec, rt.config, lambda ids: None)
    tracker = Tracker(rt.store, rec, rt.config, dispatching, lambda ids: None)

    def turn(plan_id: int) -> None:
        turns.take(rt, [plan_id], rec, dispatching, "test")
        dispatching.round()

    v1 = [{"id": "A"}, {"id": "B", "depends_on": ["A"]}]
    plan_id = planning.plan_input(rt, fleet.submit(_version(fleet, v1), name="kill.yaml"), "t")
    assert plan_id is not None
    turn(plan_id)
    ((first, _),) = rec.submitted
    # a new version changes A while its job runs
    assert planning.plan_input(rt, fleet.submit(_version(fleet, [
        dict(v1[0], args={"sleep": 0.01}), v1[1]]), name="kill.yaml"), "t") == plan_id
    # the worker dies after cancelling A's job, before its transaction commits
    def killed(*args: Any, **kwargs: Any) -> bool:
        raise SystemExit("SIGKILL")

    monkeypatch.setattr(rt.store.revisions, "apply", killed)
    with pytest.raises(SystemExit):
        turn(plan_id)
    assert rec.cancelled == [first]
    assert [r.status for r in rt.store.revisions.of_plan(plan_id)] == ["pending"]
    step = _steps(fleet, plan_id)["A"]
    assert (step.attempt, step.status, step.windmill_job_id) == (1, S.DISPATCHED, first)
    # the next turn decides again from the steps as they are, and applies it once
    monkeypatch.undo()
    tracker.tick()  # the cancelled job's end is seen
    turn(plan_id)
    assert [r.status for r in rt.store.revisions.of_plan(plan_id)] == ["applied"]
    attempts = [s for s in rt.store.steps.all(plan_id) if s.task_id == "A"]
    assert [(s.attempt, s.status) for s in attempts] == [(1, S.CANCELLED), (2, S.DISPATCHED)]
    second = attempts[1].windmill_job_id
    for job in (second,):
        rec.states[job] = JobStatus(JobState.SUCCESS, result={})
    tracker.tick()
    turn(plan_id)
    (b,) = [j for j, t in rec.submitted if t == "B"]
    rec.states[b] = JobStatus(JobState.SUCCESS, result={})
    tracker.tick()
    turn(plan_id)
    assert rt.store.plans.get(plan_id).status is P.BUILT
    # no job id was sent twice; A's first job was cancelled (again, harmlessly) and never
    # followed; its new definition ran once, B once
    ids = [j for j, _ in rec.submitted]
    assert len(ids) == len(set(ids)) == 3
    assert set(rec.cancelled) == {first}
    assert [t for _, t in rec.submitted] == ["A", "A", "B"]


def test_a_youtrack_project_pulled_five_times_dispatches_each_issue_once(
        fleet: Fleet) -> None:
    from tests.support.fake_youtrack import FakeYouTrack, issue

    scripts = fleet.tmp / "scripts"
    shutil.copytree(SCRIPTS, scripts)
    shutil.copytree(PACKAGE_SCRIPTS / "f" / "planner", scripts / "f" / "planner")
    fleet.env["PLANFLEET_SCRIPTS_DIR"] = str(scripts)
    fleet.workers()
    yt = FakeYouTrack([issue(f"SAM-{n}", f"Task {n}",
                             depends_on=(f"SAM-{n - 1}",) if n % 3 else ())
                       for n in range(1, 7)])
    pulled = fleet.tmp / "pulled"
    opened: set[str] = set()
    try:
        for k in range(5):
            if k:  # between pulls: two issues resolved, two new ones
                for i in [i for i in yt.issues if not i["resolved"]][:2]:
                    i["resolved"] = 1700000000000
                yt.issues += [issue(f"SAM-{10 * k + n}", f"New {k}.{n}") for n in (1, 2)]
            r = fleet.cli("pull", "youtrack", "--url", yt.url, "--token", yt.token,
                          "--project", "SAM", "--to", str(pulled))
            assert r.returncode == 0, r.stderr
            (written,) = pulled.iterdir()
            fleet.submit(written.read_bytes(), name=written.name)
            opened = {i["idReadable"] for i in yt.issues if not i["resolved"]}
    finally:
        yt.close()
    # wait for the source's newest plan to end
    def last() -> models.PlanRecord | None:
        plans = [p for p in fleet.store.plans.list() if p.status is not P.CANCELLED]
        busy = any(r.status == "pending" for p in plans
                   for r in fleet.store.revisions.of_plan(p.id))
        return plans[0] if plans and plans[0].status is P.BUILT and not busy and all(
            i.status is not models.InputStatus.QUEUED
            and i.status is not models.InputStatus.PLANNING
            for i in fleet.store.inputs.list(limit=50)) else None

    final = wait_for(last, timeout=120, interval=0.2)
    assert isinstance(final, models.PlanRecord)
    dispatched: dict[str, int] = {}
    for p in fleet.store.plans.list():
        for step in fleet.store.steps.all(p.id):
            if step.windmill_job_id is not None:
                dispatched[step.task_id] = dispatched.get(step.task_id, 0) + 1
    # every issue ran at most once; every issue still open at the last pull ran once
    assert all(n == 1 for n in dispatched.values()), dispatched
    assert opened <= set(dispatched), opened - set(dispatched)
    assert sorted(_steps(fleet, final.id)) == sorted(opened)
