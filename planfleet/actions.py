"""What a person can do to inputs and plans: one place for the CLI, the API and the UI.

Each verb is the guarded transition in Postgres followed by the RQ enqueue it calls for; a
refused transition raises :class:`~planfleet.exceptions.InvalidTransition` (with the reason)
and enqueues nothing. An enqueue that fails after the transition is repaired by the
reconciler (the record is ``queued`` in Postgres, the truth).
"""

from __future__ import annotations

import hashlib
import time

from planfleet import models
from planfleet.runtime import Runtime
from planfleet.schema.repositories import FileVersion

#: ``source_dir`` of inputs uploaded through the API (not read from a folder).
UPLOADS = "upload:"


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
    """Stop a plan: nothing new starts; its build worker cancels running steps."""
    rt.store.plans.cancel(plan_id, reason)


def upload(rt: Runtime, filename: str, content: bytes) -> models.RecordOutcome:
    """Record a task file as if it had been dropped into the watch dir: a new input (queued
    and enqueued when ``auto_plan`` is on), or the earlier input with the same bytes."""
    auto = rt.store.settings.get().auto_plan
    digest = hashlib.sha256(content).hexdigest()
    (outcome,) = rt.store.inputs.record_files(
        UPLOADS, [FileVersion(filename, len(content), time.time_ns(), digest, content)],
        queue=auto)
    if auto and outcome.outcome == "recorded":
        rt.queues.enqueue_plans([outcome.input_id])
    return outcome
