"""The plan worker's job: plan an input's stored bytes and store the plan."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator

import structlog

from planfleet import exceptions, models, planner
from planfleet.runtime import Runtime

log = structlog.get_logger(__name__)
#: Seconds between the planning lease's heartbeats, at most (and a third of ``plan_stale``).
LEASE_EVERY = 2.0


def plan_input(rt: Runtime, input_id: int, job_id: str) -> int | None:
    """Claim input ``input_id`` (queued -> planning), plan it, store the plan.

    Returns the new plan's id, or None when there was nothing to do (another worker has the
    input, it is not queued, or it could not be planned: then it is ``failed`` with the
    planner's messages). Database and Redis faults propagate, for RQ to retry.
    """
    bound = log.bind(input_id=input_id, job_id=job_id)
    claimed = rt.store.inputs.claim(input_id, job_id)
    if claimed is None:
        bound.info("plan_skipped", action="plan", reason="not queued")
        return None
    assert claimed.content is not None
    with _lease(rt, input_id, job_id):
        return _plan(rt, claimed, job_id, bound)


@contextlib.contextmanager
def _lease(rt: Runtime, input_id: int, job_id: str) -> Iterator[None]:
    """Keep the planning lease while planning (a large file may take a while): the reconciler
    gives an input back to the queue only when its lease went silent."""
    stop = threading.Event()
    every = min(LEASE_EVERY, rt.config.plan_stale / 3)

    def beat() -> None:
        while not stop.wait(every):
            try:
                if not rt.store.inputs.heartbeat(input_id, job_id):
                    return
            except exceptions.PlanfleetError as exc:
                log.warning("plan_heartbeat_failed", input_id=input_id, error=str(exc))

    thread = threading.Thread(target=beat, name=f"lease-{input_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _plan(rt: Runtime, claimed: models.PendingInput, job_id: str,
          bound: structlog.stdlib.BoundLogger) -> int | None:
    input_id = claimed.id
    assert claimed.content is not None
    settings = rt.store.settings.get()
    try:
        task_list = planner.load_checked(claimed.content, claimed.filename)
        plan = planner.plan(
            task_list, max_parallel=task_list.max_parallel or settings.max_parallel
        )
    except planner.PlanningError as exc:
        rt.store.inputs.fail(input_id, str(exc), [p.to_dict() for p in exc.problems], job_id,
                             warnings=[w.to_dict() for w in exc.warnings])
        bound.warning("plan_failed", action="plan", error=str(exc)[:500],
                      problems=len(exc.problems))
        return None
    document = json.loads(plan.model_dump_json())
    digest = hashlib.sha256(
        json.dumps(document["tasks"], sort_keys=True).encode() + claimed.content
    ).hexdigest()
    queue = settings.auto_build
    plan_id = rt.store.plans.create_from_input(
        input_id, document, plan.summary(), digest, queue=queue, job=job_id,
        warnings=plan.warnings,
    )
    bound.info("plan_created", action="plan", plan_id=plan_id, tasks=plan.task_count,
               makespan=plan.makespan, lower_bound=plan.lower_bound, queued=queue,
               warnings=len(plan.warnings))
    if queue:
        # committed first: a failed enqueue leaves the plan `queued` for the reconciler
        rt.queues.enqueue_builds([plan_id])
    return plan_id

