"""Taking a plan's turns: the guarded loop around :meth:`planfleet.workers.building.Build.turn`.

Whoever asks for a turn first leaves a wish on the plan, then tries the plan's turn lock. The
holder of the lock takes turns while wishes come in; after it lets the lock go it looks once
more, so a wish made while it was finishing is never lost. After its turns, the worker runs a
dispatch round for the whole fleet (what the turn readied, or the slots it freed, go to the
best waiting steps of any plan).
"""

from __future__ import annotations

import structlog

from planfleet import models
from planfleet.dispatch import Dispatcher
from planfleet.planner.plan import Plan
from planfleet.runtime import Runtime
from planfleet.workers import poison, revising
from planfleet.workers.building import Build
from planfleet.workers.dispatching import Dispatching

log = structlog.get_logger(__name__)
P = models.PlanStatus


_cache: dict[tuple[int, str | None], Plan] = {}
_CACHE_MAX = 4096


def typed_plan(record: models.PlanRecord) -> Plan:
    """The plan document, validated once per process (a document that changes, by a
    revision, changes its digest)."""
    key = (record.id, record.digest)
    plan = _cache.get(key)
    if plan is None:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        plan = _cache[key] = Plan.model_validate(record.plan)
    return plan


def _read(rt: Runtime, plan_id: int) -> tuple[models.PlanRecord, Plan | None]:
    """The plan's record and its document, typed: a turn reads the document only when this
    process has not seen it yet (the record without it is a fraction of the bytes)."""
    record = rt.store.plans.get(plan_id, document=False)
    plan = _cache.get((record.id, record.digest))
    if plan is None:
        record = rt.store.plans.get(plan_id)
        plan = None if record.plan is None else typed_plan(record)
    return record, plan


def take(rt: Runtime, plan_id: int, dispatcher: Dispatcher, dispatching: Dispatching,
         worker: str, *, round_after: bool = True, ask: bool = True) -> P | None:
    """Take the plan's turns (or leave a wish for the turn that runs); the last status seen.
    ``round_after``: then run a dispatch round (unless one ran a moment ago); a caller taking
    many plans' turns runs one itself. ``ask``: leave the wish first (false: whoever asked
    for the turn left it)."""
    plans = rt.store.plans
    if ask:
        plans.want_turn(plan_id)
    status: P | None = None
    while True:
        with plans.turn_lock(plan_id) as locked:
            if not locked:
                return status  # another turn runs: it goes round once more for our wish
            while plans.take_turn_wish(plan_id):
                try:
                    status = _one(rt, plan_id, dispatcher, worker)
                except Exception:
                    plans.want_turn(plan_id)  # the job's retry takes the turn again
                    raise
        if not plans.wished(plan_id):
            break
    if round_after:
        dispatching.round_soon()
    return status


def _one(rt: Runtime, plan_id: int, dispatcher: Dispatcher, worker: str) -> P:
    try:
        record, plan = _read(rt, plan_id)
    except Exception as exc:  # a document no turn can read, too
        return _poisoned(rt, plan_id, dispatcher, exc)
    if (record.pending_revision is not None and plan is not None
            and record.status in (P.QUEUED, P.BUILDING, P.PAUSED, P.BLOCKED)):
        try:  # a newer version of its source comes first
            if revising.apply(rt, record, dispatcher, plan):
                record, plan = _read(rt, plan_id)
        except Exception as exc:
            return _poisoned(rt, plan_id, dispatcher, exc)
    if record.status not in (P.QUEUED, P.BUILDING, P.PAUSED, P.CANCELLED) or plan is None:
        return record.status  # nothing moves it now (a person decides, or it has ended)
    try:
        build = Build(rt.store, dispatcher, rt.config, record, worker, plan)
        if record.status is P.QUEUED and not build.start():
            status = rt.store.plans.status(plan_id)
        else:
            status = build.turn()
    except Exception as exc:
        return _poisoned(rt, plan_id, dispatcher, exc)
    rt.store.plans.turned(plan_id)
    return status


def _poisoned(rt: Runtime, plan_id: int, dispatcher: Dispatcher, exc: Exception) -> P:
    """A turn ended with an error: the fleet's (re-raised, for RQ to retry) or, after a few in
    a row, the plan's own (it fails with the error instead of being turned for ever)."""
    if isinstance(exc, poison.NOT_POISON):
        raise exc
    verdict = poison.after_error(exc, rt.store.plans.turn_failed(plan_id),
                                 rt.config.plan_max_attempts)
    if not verdict.fail:
        raise exc
    rt.store.plans.fail_poisoned(plan_id, verdict.error)
    for step in rt.store.steps.latest(plan_id).values():
        if step.active:
            dispatcher.cancel(step.job, "plan failed")
            rt.store.steps.finish(step.id, models.StepStatus.CANCELLED, error=verdict.error)
    log.error("plan_poisoned", action="build", plan_id=plan_id, error=verdict.error)
    return P.FAILED
