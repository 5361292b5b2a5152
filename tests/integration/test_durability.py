"""Faults the fleet survives: Redis restarted empty, Postgres down and back, SIGKILL of each
process, SIGTERM hand-back; the reconciler's auto mode; pruning."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from planfleet import exceptions, models
from planfleet.processes import children
from planfleet.workers import reconcile
from tests.conftest import stays, wait_for
from tests.integration.conftest import BIN, Fleet
from tests.integration.test_pipeline import finished, plan_of
from tests.support.services import PrivatePostgres, PrivateRedis

FAST = {"PLANFLEET_REQUEUE_AFTER": "1", "PLANFLEET_RECONCILE_INTERVAL": "0.3",
        "PLANFLEET_PLAN_STALE": "3"}


def chain(prefix: str, n: int, sleep: float) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "estimate": 10, "args": {"sleep": sleep},
             "depends_on": [f"{prefix}{i - 1}"] if i else []} for i in range(n)]


def tolerant(fn: Any) -> Any:
    """``fn``, reading None while the test's own connections meet a restarted Postgres."""
    def call() -> Any:
        try:
            return fn()
        except exceptions.DatabaseUnavailable:
            return None
    return call


def all_built(fleet: Fleet, input_ids: list[int], timeout: float = 90) -> list[int]:
    @tolerant
    def done() -> list[int] | None:
        plans = {p.pending_input_id: p for p in fleet.store.plans.list(limit=1000)}
        if all(i in plans and plans[i].status is models.PlanStatus.BUILT for i in input_ids):
            return [plans[i].id for i in input_ids]
        return None

    try:
        got = wait_for(done, timeout=timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(f"not all built:\n{fleet.logs()[-6000:]}") from None
    assert isinstance(got, list)
    return got


def reconciler(fleet: Fleet) -> None:
    fleet.start(str(BIN / "planfleet"), "reconcile", name="reconcile")


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    r = PrivateRedis()
    yield r
    r.close()


def test_redis_restarted_empty_the_fleet_resumes_from_postgres(
        tmp_path: Path, database_url: str, private_redis: PrivateRedis) -> None:
    fleet = Fleet(tmp_path, database_url, private_redis.url)
    fleet.env.update(FAST)
    try:
        fleet.workers()
        reconciler(fleet)
        first = [fleet.submit(fleet.task_file(chain(f"R{i}-", 3, 0.3))) for i in range(3)]
        wait_for(lambda: any(s.active for p in fleet.store.plans.list()
                             for s in fleet.store.steps.latest(p.id).values()), timeout=30)
        # When Redis dies and comes back empty: queued jobs, registries, retries all gone
        private_redis.restart_empty()
        more = [fleet.submit(fleet.task_file(chain(f"S{i}-", 2, 0.1)), queue=False)
                for i in range(3)]  # recorded while nothing was enqueued: only Postgres knows
        # Then everything is built, each task run once
        plan_ids = all_built(fleet, first + more)
        for plan_id in plan_ids:
            for step in fleet.store.steps.all(plan_id):
                assert len(fleet.executions(plan_id, step.task_id)) == 1, step.task_id
        assert all(p.poll() is None for p in fleet.procs), "a process died"
        assert any(e.kind in ("reconciled", "auto_queued") for e in fleet.store.events.list())
    finally:
        fleet.stop()


def test_postgres_down_then_back_nothing_lost_nothing_twice(
        tmp_path: Path, redis_url: str) -> None:
    pg = PrivatePostgres()
    fleet = Fleet(tmp_path, pg.url, redis_url)
    fleet.env.update(FAST)
    try:
        fleet.workers()
        reconciler(fleet)
        fleet.start(str(BIN / "planfleet"), "watch", name="watch")
        inbox = Path(fleet.env["WATCH_DIR"])
        wait_for(inbox.exists, timeout=30)
        ids = [fleet.submit(fleet.task_file(chain(f"P{i}-", 3, 0.4))) for i in range(3)]
        wait_for(lambda: any(s.active for p in fleet.store.plans.list()
                             for s in fleet.store.steps.latest(p.id).values()), timeout=30)
        # When Postgres goes away for a while (in the middle of builds) ...
        pg.stop()
        (inbox / "during.yaml").write_bytes(fleet.task_file(chain("D", 2, 0.1)))
        time.sleep(6)
        assert all(p.poll() is None for p in fleet.procs), "a process exited while Postgres was down"
        pg.start()
        # ... Then every process carries on: what was running is finished, the file dropped
        # meanwhile is recorded and built, no step ran twice
        during = wait_for(tolerant(lambda: [i.id for i in fleet.store.inputs.list()
                                            if i.filename == "during.yaml"]),
                          timeout=60, interval=0.3)
        assert isinstance(during, list)
        plan_ids = all_built(fleet, ids + during, timeout=120)
        for plan_id in plan_ids:
            for step in fleet.store.steps.latest(plan_id).values():
                assert len(fleet.executions(plan_id, step.task_id)) == 1, step.task_id
        assert all(p.poll() is None for p in fleet.procs)
        assert "waiting_for_postgres" in fleet.logs() or "Postgres is not reachable" in fleet.logs()
    finally:
        fleet.stop()
        pg.close()


def test_sigterm_stops_a_build_worker_at_once_and_the_next_worker_finishes_it(
        fleet: Fleet) -> None:
    fleet.worker("plan_queue")
    build = fleet.worker("build_queue")
    input_id = fleet.submit(fleet.task_file(chain("T", 4, 1.0)))
    p = plan_of(fleet, input_id)
    wait_for(lambda: fleet.store.steps.latest(p.id).get("T1") is not None
             and fleet.store.steps.latest(p.id)["T1"].active, timeout=30)
    # When the build worker is asked to stop (warm shutdown)
    started = time.monotonic()
    os.kill(build.pid, signal.SIGTERM)
    build.wait(30)
    # Then it stopped within seconds, though the plan is far from built: no worker holds a
    # plan, the plan stays building and its running step's job goes on
    assert time.monotonic() - started < 10
    assert fleet.store.plans.get(p.id).status is models.PlanStatus.BUILDING
    # And the next worker finishes it without running anything twice
    fleet.worker("build_queue")
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT
    for i in range(4):
        assert len(fleet.executions(p.id, f"T{i}")) == 1


def test_sigkill_of_a_plan_worker_mid_planning_the_lease_expires_and_it_is_planned(
        fleet: Fleet) -> None:
    fleet.env.update(FAST)
    plan_worker = fleet.worker("plan_queue")
    big = [{"id": f"B{i}", "estimate": 1 + i % 7,
            "depends_on": [f"B{i - 1 - k}" for k in range(3) if i - 1 - k >= 0]}
           for i in range(20_000)]
    input_id = fleet.submit(fleet.task_file(big, max_parallel=8))
    wait_for(lambda: fleet.store.inputs.get(input_id).status is models.InputStatus.PLANNING,
             timeout=30, interval=0.01)
    horses = children(plan_worker.pid)
    os.killpg(plan_worker.pid, signal.SIGKILL)
    for pid in horses:
        os.kill(pid, signal.SIGKILL)
    plan_worker.wait(10)
    assert fleet.store.inputs.get(input_id).status is models.InputStatus.PLANNING
    fleet.worker("plan_queue")
    reconciler(fleet)
    p = plan_of(fleet, input_id, timeout=90)
    assert p.summary["tasks"] == 20_000
    assert fleet.store.inputs.get(input_id).attempts == 2


def test_sigkill_of_the_watcher_loses_no_file_and_records_none_twice(fleet: Fleet) -> None:
    watch = fleet.start(str(BIN / "planfleet"), "watch", name="watch")
    inbox = Path(fleet.env["WATCH_DIR"])
    wait_for(inbox.exists, timeout=20)
    fleet.store.settings.update(auto_plan=False)
    for i in range(150):
        (inbox / f"f{i:03}.yaml").write_text(f"tasks: [{{id: T{i}}}]\n")
        if i == 75:
            os.killpg(watch.pid, signal.SIGKILL)
            watch.wait(10)
            watch = fleet.start(str(BIN / "planfleet"), "watch", name="watch")
    wait_for(lambda: len(fleet.store.inputs.list(limit=1000)) == 150, timeout=60, interval=0.2)
    # a second watcher pass finds nothing more to record
    stays(lambda: len(fleet.store.inputs.list(limit=1000)) == 150, 3.0, interval=0.2)
    names = [i.filename for i in fleet.store.inputs.list(limit=1000)]
    assert sorted(names) == [f"f{i:03}.yaml" for i in range(150)]


def test_sigkill_of_the_reconciler_is_harmless(fleet: Fleet) -> None:
    fleet.env.update(FAST)
    rec = fleet.start(str(BIN / "planfleet"), "reconcile", name="reconcile")
    time.sleep(1)
    os.killpg(rec.pid, signal.SIGKILL)
    rec.wait(10)
    fleet.workers()
    input_id = fleet.submit(fleet.task_file([{"id": "A", "args": {"sleep": 0}}]), queue=False)
    fleet.store.db  # noqa: B018 - the input is queued in Postgres but was never enqueued
    with psycopg.connect(fleet.config.database_url, autocommit=True) as conn:
        conn.execute("UPDATE pending_inputs SET status = 'queued' WHERE id = %s", (input_id,))
    reconciler(fleet)
    assert finished(fleet, plan_of(fleet, input_id).id).status is models.PlanStatus.BUILT


def test_auto_mode_moves_waiting_records_and_two_reconcilers_move_each_once(
        fleet: Fleet) -> None:
    fleet.store.settings.update(auto_plan=False, auto_build=False)
    ids = [fleet.submit(fleet.task_file([{"id": f"A{i}"}]), queue=False) for i in range(20)]
    fleet.store.settings.update(auto_plan=True)
    results: list[dict[str, list[int]]] = []
    barrier = threading.Barrier(2)

    def one() -> None:
        barrier.wait()
        results.append(reconcile.reconcile_once(fleet.rt))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    moved = sorted(i for r in results for i in r["inputs"])
    assert moved == sorted(ids)  # each input once, whichever reconciler won it
    assert fleet.queues.plan.count == 20
    assert all(fleet.store.inputs.get(i).status is models.InputStatus.QUEUED for i in ids)


def test_prune_removes_only_what_finished_long_ago(fleet: Fleet) -> None:
    fleet.workers()
    done = [fleet.submit(fleet.task_file([{"id": f"P{i}", "args": {"sleep": 0}}]))
            for i in range(3)]
    plan_ids = all_built(fleet, done)
    bad = fleet.submit(b"tasks: [{id: A, depends_on: [A]}]", "bad.yaml")
    wait_for(lambda: fleet.store.inputs.get(bad).status is models.InputStatus.FAILED, 30)
    fleet.store.settings.update(auto_build=False)
    waiting = fleet.submit(fleet.task_file([{"id": "W"}]))
    waiting_plan = plan_of(fleet, waiting).id
    with psycopg.connect(fleet.config.database_url, autocommit=True) as conn:
        conn.execute("UPDATE plans SET updated_at = now() - interval '40 days'")
        conn.execute("UPDATE pending_inputs SET updated_at = now() - interval '40 days'")
        conn.execute("UPDATE events SET at = now() - interval '40 days'")
    fleet.store.events.add("recent", "kept")
    rq_jobs_before = fleet.queues.build.finished_job_registry.get_job_count(cleanup=False)
    assert rq_jobs_before >= 3  # the plans' turns: a first one each, and one per job's end
    r = fleet.cli("prune", "--older-than", "30d")
    assert r.returncode == 0, r.stderr
    assert "pruned 4 inputs, 3 plans" in r.stdout
    remaining = {p.id for p in fleet.store.plans.list()}
    assert remaining == {waiting_plan} and not set(plan_ids) & remaining
    assert [i.id for i in fleet.store.inputs.list()] == [waiting]
    assert fleet.store.steps.all(plan_ids[0]) == []
    assert [e.kind for e in fleet.store.events.list()] == ["pruned", "recent"]
    assert fleet.queues.build.finished_job_registry.get_job_count(cleanup=False) == 0
    assert fleet.cli("prune", "--older-than", "soon").returncode == 2


def test_a_backlog_is_not_enqueued_again_only_lost_jobs_are(fleet: Fleet) -> None:
    ids = [fleet.submit(fleet.task_file([{"id": f"Q{i}"}])) for i in range(5)]  # no workers
    with psycopg.connect(fleet.config.database_url, autocommit=True) as conn:
        conn.execute("UPDATE pending_inputs SET updated_at = now() - interval '1 hour'")
    assert reconcile.reconcile_once(fleet.rt)["inputs"] == []  # their jobs wait in the queue
    assert fleet.queues.plan.count == 5
    fleet.queues.plan.empty()  # lost, as with a Redis restart
    assert sorted(reconcile.reconcile_once(fleet.rt)["inputs"]) == sorted(ids)
    assert fleet.queues.plan.count == 5


def test_a_started_job_does_not_count_as_live(fleet: Fleet) -> None:
    input_id = fleet.submit(fleet.task_file([{"id": "Z"}]))
    assert reconcile.live_ids(fleet.queues.plan) == {input_id}
    job = fleet.queues.plan.get_jobs()[0]
    fleet.queues.plan.remove(job)
    registry = fleet.queues.plan.started_job_registry  # as when its worker was killed
    fleet.queues.connection.zadd(registry.key, {f"{job.id}:exec-1": time.time() + 60})
    assert reconcile.live_ids(fleet.queues.plan) == set()


def test_a_long_overdue_scheduled_retry_does_not_count_as_live(fleet: Fleet) -> None:
    input_id = fleet.submit(fleet.task_file([{"id": "R"}]))
    job = fleet.queues.plan.get_jobs()[0]
    fleet.queues.plan.remove(job)
    key = fleet.queues.plan.scheduled_job_registry.key
    fleet.queues.connection.zadd(key, {job.id: time.time() + 5})  # a retry due soon
    assert reconcile.live_ids(fleet.queues.plan) == {input_id}
    fleet.queues.connection.zadd(key, {job.id: time.time() - reconcile.OVERDUE - 5})
    assert reconcile.live_ids(fleet.queues.plan) == set()  # no scheduler moves it
