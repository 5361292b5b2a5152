"""The plan worker's job: plan an input's stored bytes and store the plan."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator

import structlog

from planfleet import exceptions, models, planner
from planfleet.planner import revision as rv
from planfleet.planner.limits import capacity_warnings
from planfleet.planner.plan import Plan
from planfleet.runtime import Runtime
from planfleet.workers import poison, revising

log = structlog.get_logger(__name__)
P = models.PlanStatus
#: A source's plan in these states is revised by its source's new version (a revision, applied
#: by one of its turns); a plan that ended gives way to a new plan that keeps what it did, and
#: one that never started to a new plan.
REVISABLE = (P.QUEUED, P.BUILDING, P.PAUSED, P.BLOCKED)
#: Seconds between the planning lease's heartbeats, at most (and a third of ``plan_stale``).
LEASE_EVERY = 2.0


def plan_input(rt: Runtime, input_id: int, job_id: str) -> int | None:
    """Claim input ``input_id`` (queued -> planning), plan it, store the plan.

    Returns the new plan's id, or None when there was nothing to do (another worker has the
    input, it is not queued, or it could not be planned: then it is ``failed`` with the
    planner's messages). Database and Redis faults propagate, for RQ to retry; so does an
    unexpected error, until the input's attempts are used up (``plan_max_attempts``): then the
    input is failed with that error (the poison-pill rule, :mod:`planfleet.workers.poison`).
    """
    bound = log.bind(input_id=input_id, job_id=job_id)
    claimed = rt.store.inputs.claim(input_id, job_id)
    if claimed is None:
        bound.info("plan_skipped", action="plan", reason="not queued")
        return None
    assert claimed.content is not None
    max_attempts = rt.config.plan_max_attempts
    verdict = poison.before_start(claimed.attempts, max_attempts)
    if not verdict.fail:
        try:
            with _lease(rt, input_id, job_id):
                return _plan(rt, claimed, job_id, bound)
        except Exception as exc:
            verdict = poison.after_error(exc, claimed.attempts, max_attempts)
            if not verdict.fail:
                bound.warning("plan_error", action="plan", attempt=claimed.attempts,
                              error=f"{type(exc).__name__}: {exc}"[:500])
                raise  # RQ tries again (the same job may claim the input again)
    rt.store.inputs.fail(input_id, verdict.error, [{"code": "poison", "message": verdict.error}],
                         job_id)
    bound.error("plan_poisoned", action="plan", attempts=claimed.attempts, error=verdict.error)
    return None


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
    config = rt.config
    declared = rt.store.fleet.solvers()
    registered = [s["script"] for s in declared if s.get("script")]
    limits = planner.Limits(max_parallel=config.max_parallel_limit,
                            timeout=config.step_timeout_limit,
                            allowed_scripts=config.script_patterns(registered))
    try:
        task_list = planner.load_checked(claimed.content, claimed.filename, limits=limits)
        # the settings' default obeys the fleet's limit too (a file over it is refused above)
        fallback = min(settings.max_parallel, config.max_parallel_limit)
        plan = planner.plan(task_list, max_parallel=task_list.max_parallel or fallback)
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
    warnings = plan.warnings + [w.to_dict() for w in capacity_warnings(
        plan.solvers, {s["name"]: s["capacity"] for s in declared})]
    current = rt.store.sources.current_plan(claimed.source) if claimed.source else None
    if current is not None and current.status in REVISABLE:
        revision_id = rt.store.revisions.add(
            current.id, input_id, document, plan.summary(), digest, wait=not queue,
            job=job_id, warnings=warnings)
        if revision_id is not None:
            bound.info("revision_recorded", action="plan", plan_id=current.id,
                       revision=revision_id, waits=not queue, tasks=plan.task_count)
            if queue:
                rt.queues.enqueue_builds([current.id])  # its next turn applies it
            return current.id
        current = rt.store.sources.current_plan(current.source or "")  # it ended meanwhile
    carry, stale = _kept(rt, current, plan) if current is not None else ([], [])
    plan_id = rt.store.plans.create_from_input(
        input_id, document, plan.summary(), digest, queue=queue, job=job_id,
        warnings=warnings, carry=carry, stale=stale,
        supersede=current.id if current is not None
        and current.status is models.PlanStatus.READY_FOR_BUILD else None,
    )
    bound.info("plan_created", action="plan", plan_id=plan_id, tasks=plan.task_count,
               makespan=plan.makespan, lower_bound=plan.lower_bound, queued=queue,
               warnings=len(plan.warnings))
    if queue:
        # committed first: a failed enqueue leaves the plan `queued` for the reconciler
        rt.queues.enqueue_builds([plan_id])
    return plan_id



def _kept(rt: Runtime, previous: models.PlanRecord, plan: Plan) -> tuple[list[int], list[int]]:
    """The completed steps of the source's previous plan (it ended) that the new version keeps
    (the revision's ``keep`` and ``stale``), and which of them are stale."""
    if previous.status not in (P.BUILT, P.FAILED) or previous.plan is None:
        return [], []
    decided, steps = revising.decide(rt.store, previous, plan)
    keep = [steps[t].id for t in decided.of(rv.Action.KEEP, rv.Action.STALE)
            if t in steps and steps[t].status is models.StepStatus.COMPLETED]
    stale = [steps[t].id for t in decided.of(rv.Action.STALE) if t in steps]
    return keep, stale
