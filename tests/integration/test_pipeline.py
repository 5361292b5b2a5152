"""The fleet end to end: real RQ workers, real Postgres and Redis, the local runner."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from planfleet import models
from tests.conftest import stays, wait_for
from tests.integration.conftest import BIN, Fleet


def plan_of(fleet: Fleet, input_id: int, timeout: float = 30) -> models.PlanRecord:
    def found() -> models.PlanRecord | None:
        got = fleet.store.inputs.get(input_id)
        assert got.status is not models.InputStatus.FAILED, got.error
        plans = [p for p in fleet.store.plans.list(limit=1000) if p.pending_input_id == input_id]
        return plans[0] if plans else None

    got = wait_for(found, timeout=timeout)
    assert isinstance(got, models.PlanRecord)
    return got


def finished(fleet: Fleet, plan_id: int, timeout: float = 60) -> models.PlanRecord:
    def done() -> models.PlanRecord | None:
        p = fleet.store.plans.get(plan_id)
        return p if p.status in (models.PlanStatus.BUILT, models.PlanStatus.FAILED,
                                 models.PlanStatus.CANCELLED) else None

    try:
        got = wait_for(done, timeout=timeout, interval=0.05)
    except AssertionError:
        raise AssertionError(f"plan {plan_id} did not finish:\n{fleet.logs()}") from None
    assert isinstance(got, models.PlanRecord)
    return got


def diamond(sleep: float = 0.1, **extra: Any) -> list[dict[str, Any]]:
    tasks = [
        {"id": "A", "estimate": 10, "args": {"sleep": sleep}},
        {"id": "B", "estimate": 20, "depends_on": ["A"], "args": {"sleep": sleep}},
        {"id": "C", "estimate": 30, "depends_on": ["A"], "args": {"sleep": sleep}},
        {"id": "D", "estimate": 5, "depends_on": ["A"], "args": {"sleep": sleep}},
        {"id": "E", "estimate": 10, "depends_on": ["B", "C", "D"], "args": {"sleep": sleep}},
        {"id": "F", "estimate": 60, "args": {"sleep": sleep}},
    ]
    for t in tasks:
        t["args"].update(extra.get(t["id"], {}))
    return tasks


def test_a_plan_is_built_in_dependency_order_within_max_parallel(fleet: Fleet) -> None:
    fleet.workers()
    input_id = fleet.submit(fleet.task_file(diamond(0.2), max_parallel=2))
    p = finished(fleet, plan_of(fleet, input_id).id)
    assert p.status is models.PlanStatus.BUILT, p.error
    assert p.summary["build"]["counts"] == {"completed": 6}
    runs = {t: fleet.executions(p.id, t) for t in "ABCDEF"}
    assert all(len(r) == 1 for r in runs.values()), runs
    run = {t: r[0] for t, r in runs.items()}
    for child, parents in {"B": "A", "C": "A", "D": "A", "E": "BCD"}.items():
        for parent in parents:
            assert run[child]["start"] >= run[parent]["end"]
    # never more than max_parallel at once, from the recorded step times
    steps = fleet.store.steps.all(p.id)
    for s in steps:
        assert s.started_at and s.finished_at
        # at the moment each step starts, how many run (itself included)
        live = [o for o in steps if o.started_at <= s.started_at < o.finished_at]
        assert len(live) <= 2, [(o.task_id, o.started_at.time(), o.finished_at.time())
                                for o in steps]
    assert fleet.store.inputs.get(input_id).status is models.InputStatus.PLANNED


def test_bad_file_fails_with_the_message_and_the_next_one_goes_through(fleet: Fleet) -> None:
    fleet.workers()
    bad = fleet.submit(b"tasks:\n  - {id: A, depends_on: [B]}\n  - {id: B, depends_on: [A]}\n")
    garbage = fleet.submit(b"\x00\xff\x00 binary")
    good = fleet.submit(fleet.task_file([{"id": "X", "args": {"sleep": 0}}]))
    p = finished(fleet, plan_of(fleet, good).id)
    assert p.status is models.PlanStatus.BUILT
    for input_id, words in [(bad, "dependency cycle: A -> B -> A"), (garbage, "binary data")]:
        got = wait_for(lambda i=input_id: fleet.store.inputs.get(i).status
                       is models.InputStatus.FAILED and fleet.store.inputs.get(i))
        assert words in got.error  # type: ignore[union-attr]
    assert fleet.store.events.list(kind="plan_failed", input_id=bad)


def test_manual_mode_at_each_hop(fleet: Fleet) -> None:
    fleet.store.settings.update(auto_plan=False, auto_build=False)
    fleet.workers()
    input_id = fleet.submit(fleet.task_file([{"id": "X", "args": {"sleep": 0}}]), queue=False)
    assert fleet.store.inputs.get(input_id).status is models.InputStatus.PENDING
    r = fleet.cli("enqueue-plan", str(input_id))
    assert r.returncode == 0, r.stderr
    p = plan_of(fleet, input_id)
    # auto_build is off: nobody starts it (a build worker would have within a second)
    stays(lambda: fleet.store.plans.get(p.id).status is models.PlanStatus.READY_FOR_BUILD, 2.0)
    r = fleet.cli("enqueue-build", str(p.id))
    assert r.returncode == 0, r.stderr
    r = fleet.cli("enqueue-build", str(p.id))
    assert r.returncode == 3 and "not ready_for_build" in r.stderr
    assert finished(fleet, p.id).status is models.PlanStatus.BUILT
    r = fleet.cli("enqueue-plan", str(input_id))
    assert r.returncode == 3 and "is planned, not pending" in r.stderr
    r = fleet.cli("show", str(p.id))
    assert r.returncode == 0 and "completed" in r.stdout
    # a deliberate replan plans the stored bytes again into a new plan
    r = fleet.cli("replan", str(input_id))
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len([x for x in fleet.store.plans.list()
                          if x.pending_input_id == input_id]) == 2, timeout=20)


def test_failure_skips_dependents_then_retry_runs_only_those(fleet: Fleet) -> None:
    fleet.env.update(PLANFLEET_ON_EXHAUSTED="fail")  # (the default escalates to a person)
    fleet.workers()
    (fleet.records / "B.fail").write_text("")
    input_id = fleet.submit(fleet.task_file(diamond(0.05)))
    p = finished(fleet, plan_of(fleet, input_id).id)
    assert p.status is models.PlanStatus.FAILED
    latest = fleet.store.steps.latest(p.id)
    assert latest["B"].status is models.StepStatus.FAILED and latest["B"].attempt == 3
    assert latest["E"].status is models.StepStatus.SKIPPED
    assert "dependency B failed" in (latest["E"].error or "")
    assert {t: latest[t].status for t in "ACDF"} == dict.fromkeys("ACDF", models.StepStatus.COMPLETED)
    assert len(fleet.executions(p.id, "B")) == 3  # three attempts with backoff
    assert p.error == "1 failed (B), 1 skipped"
    # When B is mended and the plan retried, Then only B and E run again
    (fleet.records / "B.fail").unlink()
    r = fleet.cli("retry", str(p.id))
    assert r.returncode == 0, r.stderr
    assert "2 steps will run again" in r.stdout
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT
    assert {t: len(fleet.executions(p.id, t)) for t in "ABCDEF"} == {
        "A": 1, "B": 4, "C": 1, "D": 1, "E": 1, "F": 1}
    r = fleet.cli("retry", str(p.id))
    assert r.returncode == 3 and "not failed" in r.stderr


def test_transient_failures_retry_with_backoff(fleet: Fleet) -> None:
    fleet.workers()
    input_id = fleet.submit(fleet.task_file(
        [{"id": "T", "args": {"sleep": 0, "fail_times": 2}}]))
    p = finished(fleet, plan_of(fleet, input_id).id)
    assert p.status is models.PlanStatus.BUILT
    steps = fleet.store.steps.all(p.id)
    assert [(s.attempt, s.status) for s in steps] == [
        (1, models.StepStatus.FAILED), (2, models.StepStatus.FAILED),
        (3, models.StepStatus.COMPLETED)]
    assert "planned failure 1 of 2" in (steps[0].error or "")
    assert steps[2].result["value"] == {"task_id": "T", "executions": 3}
    assert len({s.windmill_job_id for s in steps}) == 3


def test_cancel_stops_running_and_pending_steps(fleet: Fleet) -> None:
    fleet.workers()
    input_id = fleet.submit(fleet.task_file(diamond(5.0), max_parallel=2))
    p = plan_of(fleet, input_id)
    wait_for(lambda: any(s.active for s in fleet.store.steps.latest(p.id).values()), 20)
    r = fleet.cli("cancel", str(p.id))
    assert r.returncode == 0, r.stderr
    p = finished(fleet, p.id, timeout=20)
    assert p.status is models.PlanStatus.CANCELLED
    wait_for(lambda: all(s.terminal for s in fleet.store.steps.latest(p.id).values()), 10)
    statuses = {s.status for s in fleet.store.steps.latest(p.id).values()}
    assert statuses == {models.StepStatus.CANCELLED}
    r = fleet.cli("cancel", str(p.id))
    assert r.returncode == 3


def test_sigkilled_build_worker_resumes_without_running_a_step_twice(fleet: Fleet) -> None:
    fleet.worker("plan_queue")
    build = fleet.worker("build_queue")
    tasks = [{"id": f"T{i}", "estimate": 10, "args": {"sleep": 0.4},
              "depends_on": [f"T{i - 2}"] if i >= 2 else []} for i in range(10)]
    input_id = fleet.submit(fleet.task_file(tasks, max_parallel=2))
    p = plan_of(fleet, input_id)
    # When the build worker (its tracker, its runner's executor) is killed mid-plan
    wait_for(lambda: sum(s.status is models.StepStatus.COMPLETED
                         for s in fleet.store.steps.latest(p.id).values()) >= 3, 30)
    os.killpg(build.pid, signal.SIGKILL)
    build.wait(10)
    done_before = {t for t, s in fleet.store.steps.latest(p.id).items()
                   if s.status is models.StepStatus.COMPLETED}
    # Then a new worker's tracker takes the fleet over (the dead one's lock went with its
    # connection) and the plan's turns go on from what Postgres and the runner recorded
    fleet.worker("build_queue")
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT, p.error
    for i in range(10):
        assert len(fleet.executions(p.id, f"T{i}")) == 1, f"T{i} ran twice"
    assert done_before  # some steps were done before the kill and not run again
    assert len(fleet.store.steps.all(p.id)) == 10


def test_files_dropped_into_the_watch_dir_end_built(fleet: Fleet) -> None:
    # Given the whole fleet: watcher, plan worker, build worker
    fleet.workers()
    fleet.start(str(BIN / "planfleet"), "watch", name="watch")
    inbox = Path(fleet.env["WATCH_DIR"])
    wait_for(inbox.exists, timeout=20)
    # When task files are dropped (one written aside and renamed into place)
    for i in range(3):
        tmp = inbox / f"job{i}.yaml.tmp"
        tmp.write_bytes(fleet.task_file([{"id": f"J{i}", "args": {"sleep": 0}},
                                         {"id": f"K{i}", "depends_on": [f"J{i}"],
                                          "args": {"sleep": 0}}]))
        tmp.rename(inbox / f"job{i}.yaml")
    # Then each is recorded, planned and built
    def built() -> bool:
        plans = fleet.store.plans.list()
        return len(plans) == 3 and all(p.status is models.PlanStatus.BUILT for p in plans)

    wait_for(built, timeout=60, interval=0.1)
    assert {i.filename for i in fleet.store.inputs.list()} == {f"job{i}.yaml" for i in range(3)}


def test_a_missing_script_fails_its_step_at_once_with_the_path(fleet: Fleet) -> None:
    # an allow-list wider than the scripts folder lets the missing script reach the build
    fleet.env["PLANFLEET_ALLOWED_SCRIPTS"] = "f/test/*"
    fleet.workers()
    input_id = fleet.submit(fleet.task_file([
        {"id": "A", "script": "f/test/missing", "args": {"sleep": 0}},
        {"id": "B", "depends_on": ["A"], "args": {"sleep": 0}},
        {"id": "C", "args": {"sleep": 0}},
    ]))
    p = finished(fleet, plan_of(fleet, input_id).id, timeout=30)
    assert p.status is models.PlanStatus.FAILED
    latest = fleet.store.steps.latest(p.id)
    assert latest["A"].attempt == 1 and "script f/test/missing not found" in (latest["A"].error or "")
    assert latest["B"].status is models.StepStatus.SKIPPED
    assert latest["C"].status is models.StepStatus.COMPLETED


def test_per_task_attempts_and_timeout_override_the_defaults(fleet: Fleet) -> None:
    fleet.env.update(PLANFLEET_ON_EXHAUSTED="fail")
    fleet.workers()
    input_id = fleet.submit(fleet.task_file([
        {"id": "ONCE", "max_attempts": 1, "args": {"sleep": 0, "fail_times": 5}},
        {"id": "SLOW", "timeout": 0.5, "max_attempts": 2, "args": {"sleep": 5}},
    ]))
    p = finished(fleet, plan_of(fleet, input_id).id, timeout=40)
    assert p.status is models.PlanStatus.FAILED
    steps = fleet.store.steps.all(p.id)
    once = [s for s in steps if s.task_id == "ONCE"]
    slow = [s for s in steps if s.task_id == "SLOW"]
    assert len(once) == 1 and once[0].status is models.StepStatus.FAILED
    assert len(slow) == 2 and "timed out after 0.5 s" in (slow[0].error or "")
    assert "timed out after 1 s" in (slow[1].error or "")  # a timeout retries with twice as long


def test_a_plan_job_retried_after_a_transient_fault_claims_its_input_again(fleet: Fleet) -> None:
    from planfleet import exceptions
    from planfleet.workers import planning

    input_id = fleet.submit(fleet.task_file([{"id": "X", "args": {"sleep": 0}}]), queue=False)
    fleet.store.inputs.queue(input_id)
    create = fleet.store.plans.create_from_input
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise exceptions.DatabaseUnavailable("Postgres is not reachable: test")
        return create(*args, **kwargs)

    fleet.store.plans.create_from_input = flaky  # type: ignore[method-assign]
    # When the first run of the job hits the fault, Then it propagates (for RQ to retry)
    try:
        planning.plan_input(fleet.rt, input_id, "rq-job-1")
        raise AssertionError("the fault should propagate")
    except exceptions.DatabaseUnavailable:
        pass
    assert fleet.store.inputs.get(input_id).status is models.InputStatus.PLANNING
    # another job cannot take it, the same job (RQ's retry) can
    assert planning.plan_input(fleet.rt, input_id, "rq-job-2") is None
    plan_id = planning.plan_input(fleet.rt, input_id, "rq-job-1")
    assert plan_id is not None
    assert fleet.store.inputs.get(input_id).status is models.InputStatus.PLANNED
    # and jobs are enqueued with RQ retries for such faults
    (job_id,) = fleet.queues.enqueue_plans([input_id])
    import rq
    from rq.serializers import JSONSerializer

    job = rq.job.Job.fetch(job_id, connection=fleet.queues.connection, serializer=JSONSerializer)
    assert job.retries_left == 5 and job.retry_intervals[0] == 2
