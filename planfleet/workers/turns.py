"""Taking plans' turns: the guarded loop around :meth:`planfleet.workers.building.Build.turn`.

Whoever asks for a turn first leaves a wish on the plan, then tries the plan's turn lock. The
holder of the lock takes turns while wishes come in; after it lets the lock go it looks once
more, so a wish made while it was finishing is never lost. Turns are taken a batch at a time:
one statement takes the batch's locks, one its wishes, one reads its plans' latest steps,
then each plan decides and writes on its own, over the locks' one connection. After its
turns, the worker asks for a dispatch round for the whole fleet (what the turns readied, or the
slots they freed, go to the best waiting steps of any plan).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog

from planfleet import models
from planfleet.dispatch import Dispatcher
from planfleet.planner.plan import Plan
from planfleet.runtime import Runtime
from planfleet.workers import poison, revising
from planfleet.workers.building import Build
from planfleet.workers.circuits import Breakers
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


def _document(rt: Runtime, record: models.PlanRecord) -> tuple[models.PlanRecord, Plan | None]:
    """The plan's record with its document, typed: read only when this process has not seen
    that document yet (the record without it is a fraction of the bytes)."""
    plan = _cache.get((record.id, record.digest))
    if plan is None:
        record = rt.store.plans.get(record.id)
        plan = None if record.plan is None else typed_plan(record)
    return record, plan


def take(rt: Runtime, plan_ids: Sequence[int], dispatcher: Dispatcher,
         dispatching: Dispatching, worker: str, *, round_after: bool = True,
         ask: bool = True) -> dict[int, P]:
    """Take the plans' turns together (or leave wishes for the turns of them that run); the
    last status seen of each plan turned. A batch reads and writes over one connection: its
    locks, its wishes and its plans' steps in a statement each, whatever its size.
    ``round_after``: then run a dispatch round (unless one ran a moment ago); a caller taking
    several batches runs one itself. ``ask``: leave the wishes first (false: whoever asked
    for the turns left them). A turn that raises leaves its plan's wish for the job's retry
    and the others go on; the first such error is raised at the end."""
    plans = rt.store.plans
    ids = sorted(set(plan_ids))
    if ask:
        plans.want_turns(ids)
    seen: dict[int, P] = {}
    errors: list[Exception] = []
    failed: set[int] = set()
    while ids:
        with plans.turn_locks(ids) as locked:
            # a plan another turn holds: that turn goes round once more for our wish
            while heads := plans.take_turn_wishes([i for i in locked if i not in failed]):
                steps = rt.store.steps.latest_of([h.id for h in heads])
                breakers = Breakers(rt.store, set(), threshold=rt.config.circuit_threshold,
                                    cooldown=rt.config.circuit_cooldown)
                turned = []
                for head in heads:
                    try:
                        seen[head.id], moved = _one(rt, head, steps.get(head.id), dispatcher,
                                                    worker, breakers)
                    except Exception as exc:
                        plans.want_turns([head.id])  # the job's retry takes the turn again
                        failed.add(head.id)
                        errors.append(exc)
                    else:
                        if moved:
                            turned.append(head.id)
                plans.turned(turned)
        # asked for while the locks were held and after the last look: once more
        ids = [i for i in plans.turns_wanted(locked) if i not in failed] if locked else []
    if round_after:
        dispatching.soon(unless_recent=True)
    if errors:
        raise errors[0]
    return seen


def _one(rt: Runtime, head: models.PlanRecord, steps: Mapping[str, models.Step] | None,
         dispatcher: Dispatcher, worker: str, breakers: Breakers) -> tuple[P, bool]:
    """A turn of one plan, its lock held and its wish taken (``head``: the plan as the wish
    was taken, without its document; ``steps``: its latest steps, as read then): the plan's
    status, and whether a turn moved it (not one that found it ended, or failed it)."""
    plan_id = head.id
    try:
        record, plan = _document(rt, head)
    except Exception as exc:  # a document no turn can read, too
        return _poisoned(rt, plan_id, dispatcher, exc), False
    if (record.pending_revision is not None and plan is not None
            and record.status in (P.QUEUED, P.BUILDING, P.PAUSED, P.BLOCKED)):
        try:  # a newer version of its source comes first
            if revising.apply(rt, record, dispatcher, plan):
                record, plan = _document(rt, rt.store.plans.get(plan_id, document=False))
                steps = None
        except Exception as exc:
            return _poisoned(rt, plan_id, dispatcher, exc), False
    if record.status not in (P.QUEUED, P.BUILDING, P.PAUSED, P.CANCELLED) or plan is None:
        return record.status, False  # nothing moves it now (a person decides, or it ended)
    try:
        build = Build(rt.store, dispatcher, rt.config, record, worker, plan, breakers)
        if record.status is P.QUEUED:
            if not build.start():
                return rt.store.plans.status(plan_id), True
            steps = None  # it made its steps
        return build.turn(steps), True
    except Exception as exc:
        return _poisoned(rt, plan_id, dispatcher, exc), False


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
