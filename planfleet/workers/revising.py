"""Applying a revision to a plan that has started: one of the plan's turns.

A new version of a source whose plan has started (queued, building, paused or blocked) is
stored as a *revision* of that plan (:mod:`planfleet.workers.planning`). The plan's next turn,
holding the plan's turn lock, applies the newest one before anything else: what
:func:`planfleet.planner.revision.decide` decides for each task becomes writes to its steps
(:func:`writes`, pure), made in one transaction together with the plan taking the version's
document; the jobs of steps that make way are cancelled before that transaction commits (a
worker that dies in between leaves the revision pending, and the next turn decides again from
what the steps are then). Steps that ran on while their task left the source, or whose task
runs again once their job has ended (``on_change: finish``), are settled by :func:`settle` at
the start of each turn: their outcome is recorded, and counts for nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from planfleet import models
from planfleet.dispatch import Dispatcher, JobState
from planfleet.planner import revision as rv
from planfleet.planner.plan import Plan, replan
from planfleet.policy import StepPolicy, effective
from planfleet.runtime import Runtime
from planfleet.schema.repositories import Store
from planfleet.workers import outcomes

log = structlog.get_logger(__name__)
S = models.StepStatus
#: Why a step made way for its task's new definition.
REVISED = "revised: its task changed in the source"


def definer(plan_id: int, plan: Plan, fleet: StepPolicy) -> Callable[[str], dict[str, Any]]:
    """What a step of one of the plan's tasks runs with (a first attempt's row, and the row of
    an attempt with a new definition), task by task."""
    rank = {t: i for i, t in enumerate(plan.priority_order)}

    def define(task_id: str) -> dict[str, Any]:
        task = plan.tasks[task_id]
        solver = task.solver[0] if task.solver else None
        return {
            "task_id": task_id, "script": task.script, "solver": solver,
            "args": {**task.args, "task_id": task_id, "title": task.title, "plan_id": plan_id,
                     "solver": solver or ""},
            "priority": task.effective_priority, "rank": rank.get(task_id, len(rank)),
            "alone": not task.parallel,
            "timeout": effective(fleet, plan.policy, task.max_attempts, task.timeout).timeout}

    return define


@dataclasses.dataclass(frozen=True)
class Writes:
    """What applying a revision writes, in this order."""

    #: (step id, reason, removed reason or None): a waiting, blocked or running step makes way
    close: list[tuple[int, str, str | None]] = dataclasses.field(default_factory=list)
    #: the jobs of the running steps among ``close``, cancelled first
    cancel: list[Any] = dataclasses.field(default_factory=list)
    #: (latest step id, definition): a fresh attempt with the new definition
    attempts: list[tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=list)
    #: (step id, definition): a step not started takes the new definition
    revise: list[tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=list)
    #: definitions of tasks that have no step yet
    create: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: (step id, reason): a running or ended step whose task left the source
    removed: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    #: (step id, definition): runs again with it once its job ends
    rerun: list[tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=list)
    stale: list[int] = dataclasses.field(default_factory=list)
    unready: list[int] = dataclasses.field(default_factory=list)


def writes(revision: rv.Revision, steps: Mapping[str, models.Step],
           define: Callable[[str], dict[str, Any]]) -> Writes:
    """The writes that carry out ``revision`` on a plan whose latest steps are ``steps``;
    ``define(task_id)`` is a task's new step definition."""
    out = Writes()
    A = rv.Action
    for task_id, d in sorted(revision.decisions.items()):
        step = steps.get(task_id)
        if d.action is A.ADD or (step is None and d.runs):
            out.create.append(define(task_id))
            continue
        if step is None:
            continue
        if d.action in (A.RUN_NEW_DEFINITION, A.CANCEL_AND_RERUN, A.RERUN_COMPLETED,
                        A.RERUN_STALE):
            if step.status is S.PENDING:
                out.revise.append((step.id, define(task_id)))
                continue
            if not step.terminal or step.status is S.BLOCKED:
                out.close.append((step.id, REVISED, None))
                if step.active:
                    out.cancel.append(step.job)
            out.attempts.append((step.id, define(task_id)))
        elif d.action is A.FINISH_THEN_RERUN:
            out.rerun.append((step.id, define(task_id)))
        elif d.action is A.STALE:
            out.stale.append(step.id)
        elif d.action in (A.NOT_STARTED_REMOVED, A.CANCEL_REMOVED):
            out.close.append((step.id, f"{d.reason}: left the plan", d.reason))
            if step.active:
                out.cancel.append(step.job)
        elif d.action is A.FINISH_REMOVED:
            out.removed.append((step.id, d.reason or rv.REMOVED_FROM_SOURCE))
        elif d.action is A.ENDED_REMOVED:
            if step.status is S.BLOCKED:
                out.close.append((step.id, f"{d.reason}: left the plan", d.reason))
            else:
                out.removed.append((step.id, d.reason or rv.REMOVED_FROM_SOURCE))
    out.unready.extend(steps[t].id for t in revision.unready if t in steps)
    return out


def decide(store: Store, record: models.PlanRecord, version: Plan, old: Plan | None = None
           ) -> tuple[rv.Revision, dict[str, models.Step]]:
    """What ``version`` does to each task of the plan (``old``: its document, typed) as its
    steps are now (and those steps: the latest of each task still in the plan)."""
    assert old is not None or record.plan is not None
    steps = store.steps.states(record.id)
    live = {t: s for t, s in steps.items() if s.removed is None}
    revision = rv.decide(rv.definitions(old if old is not None
                                        else Plan.model_validate(record.plan)),
                         {t: rv.state_of(s) for t, s in live.items()}, rv.Version.of_plan(version))
    return revision, live


def apply(rt: Runtime, record: models.PlanRecord, dispatcher: Dispatcher,
          old: Plan | None = None) -> bool:
    """Apply the plan's pending revision (the newest; older ones were superseded when it was
    recorded) to the plan (``old``: its document, typed). Whether one was applied."""
    if record.pending_revision is None or (old is None and record.plan is None):
        return False
    store = rt.store
    pending = record.pending_revision
    new = Plan.model_validate_json(store.revisions.document(pending))
    revision, live = decide(store, record, new, old)
    todo = writes(revision, live, definer(record.id, new, rt.config.step_policy()))
    for job in todo.cancel:  # before the commit: a worker that dies here leaves it pending
        dispatcher.cancel(job, "its task changed in the source")
    caps = {n: s.capacity for n, s in new.solvers.items() if s.capacity}
    applied = store.revisions.apply(record.id, pending, todo, revision.event_data(),
                                    max_parallel=new.max_parallel, solver_caps=caps,
                                    remaining=remaining(new, revision, live))
    if applied:
        log.info("plan_revised", action="build", plan_id=record.id, revision=pending,
                 **{k: len(v) for k, v in revision.summary().items()})
    return applied


def remaining(plan: Plan, revision: rv.Revision, steps: Mapping[str, models.Step],
              now: dt.datetime | None = None) -> dict[str, Any]:
    """The schedule of the work that remains once the revision is applied (minutes from the
    plan's first step, as its schedule): what it keeps done is done, what it follows runs
    since it started, the rest is planned by the planner's :func:`replan`."""
    now = now or dt.datetime.now(dt.UTC)
    starts = [s.started_at for s in steps.values() if s.started_at is not None]
    origin = min(starts, default=now)

    def minutes(at: dt.datetime) -> float:
        return max(0.0, (at - origin).total_seconds() / 60)

    done = [t for t in revision.of(rv.Action.KEEP, rv.Action.STALE)
            if t in plan.tasks and t in steps and steps[t].status is S.COMPLETED]
    running = {t: minutes(steps[t].started_at or now) for t in revision.of(rv.Action.ADOPT)
               if t in plan.tasks and t in steps}
    left = replan(plan, done, running, minutes(now))
    return {"at": now.isoformat(), **left.model_dump(mode="json")}


def settle(store: Store, steps: Mapping[str, models.Step], dispatcher: Dispatcher, *,
           grace: float, now: dt.datetime | None = None) -> bool:
    """Record the ends of jobs that count for nothing now: of steps whose task left the
    source, and of steps whose task runs again with a new definition (then that attempt is
    created); such a job past its timeout is cancelled and recorded so. Whether any was
    settled."""
    now = now or dt.datetime.now(dt.UTC)
    settled = False
    for step in steps.values():
        if not step.active or (step.removed is None and step.rerun is None):
            continue
        if step.observed is not None:
            ended = outcomes.job_status(step.observed)
            status = (S.COMPLETED if ended.state is JobState.SUCCESS
                      else S.CANCELLED if ended.state is JobState.UNKNOWN else S.FAILED)
            error = (None if status is S.COMPLETED else ended.error) or (
                f"{step.removed}: left the plan" if step.removed else None)
        elif (step.started_at is not None and step.timeout is not None
              and (now - step.started_at).total_seconds() > step.timeout + grace):
            dispatcher.cancel(step.job, "step timeout")
            status, error = S.FAILED, f"timed out after {step.timeout:g} s"
        else:
            continue
        if store.revisions.settle(step, status, error):
            settled = True
            log.info("step_settled", action="build", plan_id=step.plan_id, task_id=step.task_id,
                     step_id=step.id, status=status, removed=step.removed,
                     runs_again=step.rerun is not None)
    return settled
