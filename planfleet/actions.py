"""What a person can do to inputs and plans: one place for the CLI, the API and the UI.

Each verb is the guarded transition in Postgres followed by the RQ enqueue it calls for; a
refused transition raises :class:`~planfleet.exceptions.InvalidTransition` (with the reason)
and enqueues nothing. An enqueue that fails after the transition is repaired by the
reconciler (the record is ``queued`` in Postgres, the truth).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from planfleet import exceptions, models, sources
from planfleet.runtime import Runtime
from planfleet.schema.repositories import FileVersion

#: ``source_dir`` of inputs uploaded through the API (not read from a folder).
UPLOADS = sources.UPLOAD_DIR


def enqueue_plan(rt: Runtime, input_id: int) -> None:
    """pending -> queued, and its plan job."""
    rt.store.inputs.queue(input_id)
    rt.queues.enqueue_plans([input_id])


def replan(rt: Runtime, input_id: int) -> None:
    """planned | failed -> queued: plan the stored bytes again."""
    rt.store.inputs.replan(input_id)
    rt.queues.enqueue_plans([input_id])


def enqueue_build(rt: Runtime, plan_id: int) -> None:
    """ready_for_build -> queued, and its build job."""
    rt.store.plans.queue(plan_id)
    rt.queues.enqueue_builds([plan_id])


def retry(rt: Runtime, plan_id: int) -> int:
    """failed -> queued with fresh attempts of its failed, skipped and cancelled steps; how many
    steps run again."""
    again = rt.store.plans.retry(plan_id)
    rt.queues.enqueue_builds([plan_id])
    return again


def cancel(rt: Runtime, plan_id: int, reason: str) -> None:
    """Stop a plan: nothing new starts; its next turn cancels running steps."""
    rt.store.plans.cancel(plan_id, reason)
    rt.queues.enqueue_builds([plan_id])


def upload(rt: Runtime, filename: str, content: bytes) -> models.RecordOutcome:
    """Record a task file as if it had been dropped into the watch dir: a new version of its
    source (``upload:<filename>``, or the ``source:`` the file declares), queued and enqueued
    when ``auto_plan`` is on; or, when its bytes are those of the source's latest version,
    that input (a duplicate)."""
    auto = rt.store.settings.get().auto_plan
    digest = hashlib.sha256(content).hexdigest()
    (outcome,) = rt.store.inputs.record_files(
        UPLOADS, [FileVersion(filename, len(content), time.time_ns(), digest, content)],
        queue=auto)
    if auto and outcome.outcome == "recorded":
        rt.queues.enqueue_plans([outcome.input_id])
    return outcome


DECISIONS = ("retry", "skip", "fail", "answer")


def decide(rt: Runtime, plan_id: int, task_id: str, decision: str,
           note: str | None = None) -> str:
    """A person's decision on a blocked step of a plan: ``retry`` (``note`` becomes feedback
    for the solver), ``answer`` (``note`` answers its question), ``skip`` (its dependents go
    on as if it were done) or ``fail``. The plan goes on building. Returns what was done."""
    if decision not in DECISIONS:
        raise exceptions.InvalidTransition(
            f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    if decision == "answer" and not note:
        raise exceptions.InvalidTransition("an answer needs its text (note)")
    plan = rt.store.plans.get(plan_id)
    step = rt.store.steps.latest(plan_id).get(task_id)
    if step is None:
        raise exceptions.NotFound(f"plan {plan_id} has no task {task_id!r}")
    extra: dict[str, Any] | None = None
    if decision == "retry":
        feedback = list(step.args.get("feedback") or [])
        if step.error:  # the blocked attempt's own failure
            feedback.append({"attempt": step.attempt, "error_type": step.error_type,
                             "error": step.error[:2000],
                             "result": (step.result or {}).get("value")
                             if isinstance(step.result, dict) else None})
        if note:
            feedback.append({"attempt": step.attempt, "from": "a person", "note": note})
        extra = {"feedback": feedback} if feedback else None
    elif decision == "answer":
        extra = {"clarification": {"question": step.question, "answer": note}}
    if not rt.store.steps.decide(step.id, decision, note=note, extra=extra):
        raise exceptions.InvalidTransition(
            f"task {task_id} of plan {plan_id} is {step.status}, not blocked")
    if plan.status is models.PlanStatus.BLOCKED:
        rt.store.plans.resume(plan_id)
    rt.queues.enqueue_builds([plan_id])  # a turn acts on the decision
    return f"task {task_id} of plan {plan_id}: {decision}"


def pause(rt: Runtime, plan_id: int) -> None:
    """Start no new steps; running ones finish."""
    rt.store.plans.pause(plan_id)


def resume(rt: Runtime, plan_id: int) -> None:
    """A paused (or blocked) plan goes on building."""
    rt.store.plans.resume(plan_id)
    rt.queues.enqueue_builds([plan_id])


def waiting_revision(rt: Runtime, plan_id: int) -> tuple[models.RevisionRecord, Any]:
    """The plan's revision that waits for a person, and what it would do now to each task
    (a :class:`planfleet.planner.revision.Revision`)."""
    from planfleet.planner.plan import Plan
    from planfleet.workers import revising

    record = rt.store.plans.get(plan_id)
    waiting = [r for r in rt.store.revisions.of_plan(plan_id) if r.status == "waiting"]
    if not waiting or record.plan is None:
        raise exceptions.InvalidTransition(f"plan {plan_id} has no revision waiting for a person")
    full = rt.store.revisions.get(waiting[-1].id)
    assert full is not None and full.plan is not None
    revision, _ = revising.decide(rt.store, record, Plan.model_validate(full.plan))
    return full, revision


def apply_revision(rt: Runtime, plan_id: int, revision_id: int) -> None:
    """waiting -> pending: the plan's next turn applies the revision."""
    rt.store.revisions.release(revision_id)
    rt.queues.enqueue_builds([plan_id])
