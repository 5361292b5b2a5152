"""The plan worker's job: plan an input's stored bytes and store the plan."""

from __future__ import annotations

import hashlib
import json

import structlog

from planfleet import planner
from planfleet.runtime import Runtime

log = structlog.get_logger(__name__)


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
    settings = rt.store.settings.get()
    try:
        task_list = planner.load_checked(claimed.content, claimed.filename)
        plan = planner.plan(
            task_list, max_parallel=task_list.max_parallel or settings.max_parallel
        )
    except planner.PlanningError as exc:
        rt.store.inputs.fail(input_id, str(exc), [p.to_dict() for p in exc.problems])
        bound.warning("plan_failed", action="plan", error=str(exc)[:500],
                      problems=len(exc.problems))
        return None
    document = json.loads(plan.model_dump_json())
    digest = hashlib.sha256(
        json.dumps(document["tasks"], sort_keys=True).encode() + claimed.content
    ).hexdigest()
    queue = settings.auto_build
    plan_id = rt.store.plans.create_from_input(
        input_id, document, plan.summary(), digest, queue=queue
    )
    bound.info("plan_created", action="plan", plan_id=plan_id, tasks=plan.task_count,
               makespan=plan.makespan, lower_bound=plan.lower_bound, queued=queue)
    if queue:
        # committed first: a failed enqueue leaves the plan `queued` for the reconciler
        rt.queues.enqueue_builds([plan_id])
    return plan_id

