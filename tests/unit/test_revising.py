"""What applying a revision writes to a plan's steps (pure: no Postgres, no dispatcher)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from planfleet import models
from planfleet.planner import revision as rv
from planfleet.workers import revising

S = models.StepStatus
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def step(task: str, status: S, n: int, **kw: Any) -> models.Step:
    active = status in (S.DISPATCHED, S.RUNNING, S.NEEDS_QA)
    return models.Step(id=n, plan_id=1, task_id=task, status=status, attempt=1, tries=1,
                       windmill_job_id=uuid.UUID(int=n) if active or status is S.COMPLETED
                       else None, script="f/x", solver=None, args={}, result=None,
                       error=None, not_before=None, started_at=NOW if active else None,
                       finished_at=None, **kw)


def d(task: str, deps: tuple[str, ...] = (), **args: Any) -> rv.TaskDefinition:
    return rv.TaskDefinition(task, "f/x", None, args, frozenset(deps))


def define(task: str) -> dict[str, Any]:
    return {"task_id": task, "marker": "new"}


def test_each_rule_becomes_the_writes_that_carry_it_out() -> None:
    old = {"done": d("done"), "run": d("run"), "wait": d("wait", ("run",)),
           "gone": d("gone"), "gone_running": d("gone_running"), "blocked": d("blocked"),
           "changed_done": d("changed_done"), "after": d("after", ("changed_done",))}
    steps = {"done": step("done", S.COMPLETED, 1), "run": step("run", S.RUNNING, 2),
             "wait": step("wait", S.PENDING, 3), "gone": step("gone", S.PENDING, 4),
             "gone_running": step("gone_running", S.RUNNING, 5),
             "blocked": step("blocked", S.BLOCKED, 6),
             "changed_done": step("changed_done", S.COMPLETED, 7),
             "after": step("after", S.COMPLETED, 8)}
    new = rv.Version({"done": d("done"), "run": d("run", v=2), "wait": d("wait", ("run",), v=2),
                      "blocked": d("blocked", v=2), "changed_done": d("changed_done", v=2),
                      "after": d("after", ("changed_done",)), "fresh": d("fresh")})
    revision = rv.decide(old, {t: rv.state_of(s) for t, s in steps.items()}, new)
    w = revising.writes(revision, steps, define)
    # a changed running task: its step closed, its job cancelled, a new attempt after it
    assert (2, revising.REVISED, None) in w.close and uuid.UUID(int=2) in w.cancel
    assert sorted(sid for sid, _ in w.attempts) == [2, 6, 7]
    # a changed step not started takes the new definition in place
    assert w.revise == [(3, {"task_id": "wait", "marker": "new"})]
    # removed: a waiting step closed as removed; a running one left to finish, marked
    assert (4, "removed_from_source: left the plan", "removed_from_source") in w.close
    assert w.removed == [(5, "removed_from_source")]
    assert uuid.UUID(int=5) not in w.cancel
    # a blocked step whose task changed stops waiting for a person and runs again
    assert (6, revising.REVISED, None) in w.close
    # a completed task that runs again makes its completed dependent stale
    assert w.stale == [8]
    # new tasks get steps; unchanged completed ones are not touched
    assert w.create == [{"task_id": "fresh", "marker": "new"}]
    touched = ({sid for sid, *_ in w.close} | {sid for sid, _ in w.attempts}
               | {sid for sid, _ in w.revise} | {sid for sid, _ in w.removed} | set(w.stale))
    assert 1 not in touched


def test_on_change_finish_and_on_removed_cancel() -> None:
    old = {"run": d("run"), "gone": d("gone")}
    steps = {"run": step("run", S.RUNNING, 1), "gone": step("gone", S.RUNNING, 2)}
    new = rv.Version({"run": d("run", v=2)},
                     policy=rv.RevisionPolicy(on_change="finish", on_removed="cancel"))
    revision = rv.decide(old, {t: rv.state_of(s) for t, s in steps.items()}, new)
    w = revising.writes(revision, steps, define)
    # the changed running job finishes, then the task runs again with this definition
    assert w.rerun == [(1, {"task_id": "run", "marker": "new"})]
    assert uuid.UUID(int=1) not in w.cancel
    # the removed running job is cancelled and its step closed as removed
    assert w.cancel == [uuid.UUID(int=2)]
    assert w.close == [(2, "removed_from_source: left the plan", "removed_from_source")]


class Store:
    """Records what settle asks the repository to write."""

    def __init__(self) -> None:
        self.settled: list[tuple[int, S, str | None]] = []
        self.revisions = self

    def settle(self, step: models.Step, status: S, error: str | None) -> bool:
        self.settled.append((step.id, status, error))
        return True


class Dispatcher:
    def __init__(self) -> None:
        self.cancelled: list[Any] = []

    def cancel(self, job: Any, reason: str) -> None:
        self.cancelled.append(job)


def test_settle_records_ends_that_count_for_nothing_and_times_them_out() -> None:
    store, dispatcher = Store(), Dispatcher()
    ended = step("a", S.RUNNING, 1, removed="removed_from_source",
                 observed={"state": "success", "result": 1})
    rerun = step("b", S.RUNNING, 2, rerun={"task_id": "b"},
                 observed={"state": "failure", "error": "boom"})
    late = step("c", S.RUNNING, 3, removed="done_in_source", timeout=60.0)
    running = step("d", S.RUNNING, 4, removed="removed_from_source", timeout=600.0)
    ordinary = step("e", S.RUNNING, 5, observed={"state": "success"})
    assert revising.settle(store, {s.task_id: s for s in (ended, rerun, late, running,
                                                          ordinary)},
                           dispatcher, grace=5.0,  # type: ignore[arg-type]
                           now=NOW + dt.timedelta(seconds=120))
    assert store.settled == [(1, S.COMPLETED, "removed_from_source: left the plan"),
                             (2, S.FAILED, "boom"),
                             (3, S.FAILED, "timed out after 60 s")]
    assert dispatcher.cancelled == [uuid.UUID(int=3)]
