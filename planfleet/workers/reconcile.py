"""The reconciler: moves again what Postgres says should be moving but nobody moves.

Each pass: inputs and plans ``queued`` for longer than ``requeue_after`` with no job waiting,
running or scheduled in RQ are enqueued again (their job was lost with Redis, or never sent);
plans ``building`` whose worker's heartbeat is
older than ``build_stale`` (the worker died) and inputs ``planning`` whose lease is older than
``plan_stale`` are handed to a new job; with ``auto_plan`` on, inputs left ``pending`` are
queued, and with ``auto_build`` on, plans left ``ready_for_build``. When ``prune_after`` is set,
finished records older than that are pruned every :data:`~planfleet.defaults.PRUNE_EVERY`
seconds. A job enqueued twice is harmless (every job claims its row before acting), and every
move is a guarded statement, so several reconcilers may run at once. Its actions are events.
"""

from __future__ import annotations

import threading
import time

import rq
import structlog
from rq.job import Job

from planfleet import defaults
from planfleet.runtime import Runtime

log = structlog.get_logger(__name__)
#: Seconds a scheduled retry may be overdue before it no longer counts as a live job.
OVERDUE = 60.0


def reconcile_once(rt: Runtime) -> dict[str, list[int]]:
    """One pass; returns the ids it enqueued again, by kind."""
    cfg = rt.config
    out: dict[str, list[int]] = {"inputs": [], "plans": []}
    stale_inputs = rt.store.inputs.stale(queued=cfg.requeue_after, planning=cfg.plan_stale)
    waiting = live_ids(rt.queues.plan) if any(s == "queued" for _, s in stale_inputs) else set()
    for input_id, status in stale_inputs:
        if status == "planning" and not rt.store.inputs.release(input_id, cfg.plan_stale):
            continue
        if status == "queued" and (input_id in waiting or not rt.store.inputs.touch(input_id)):
            continue  # its job is waiting in the queue: a backlog, not a loss
        out["inputs"].append(input_id)
    stale_plans = rt.store.plans.stale(stale=cfg.build_stale, queued=cfg.requeue_after)
    waiting = (live_ids(rt.queues.build) | live_ids(rt.queues.turns)) if stale_plans else set()
    for plan_id, status in stale_plans:
        if plan_id in waiting:
            continue  # a job for it waits (or runs): a backlog, not a loss
        if status == "queued" and not rt.store.plans.touch(plan_id):
            continue
        out["plans"].append(plan_id)
    settings = rt.store.settings.get()
    auto = {"inputs": rt.store.inputs.queue_pending() if settings.auto_plan else [],
            "plans": rt.store.plans.queue_ready() if settings.auto_build else []}
    rt.queues.enqueue_plans(out["inputs"] + auto["inputs"])
    rt.queues.enqueue_builds(out["plans"] + auto["plans"])
    for kind, ids in out.items():
        if ids:
            rt.store.events.add("reconciled", f"enqueued {kind} again: {ids}",
                                data={kind: ids})
            log.info("reconciled", action="reconcile", kind=kind, ids=ids)
    for kind, ids in auto.items():
        if ids:
            rt.store.events.add("auto_queued", f"auto mode queued waiting {kind}: {ids}",
                                data={kind: ids})
            log.info("auto_queued", action="reconcile", kind=kind, ids=ids)
            out[kind] += ids
    return out


def live_ids(queue: rq.Queue) -> set[int]:
    """The record ids that have a job waiting in ``queue`` or scheduled for a retry that is
    not long overdue (what a lost Redis would have lost). Started jobs do not count: a record
    whose job runs is ``planning`` or ``building`` with a fresh lease, and the started entry of a job whose
    worker was killed lingers in RQ for a minute and a half."""
    job_ids = set(queue.get_job_ids())
    job_ids.update(queue.deferred_job_registry.get_job_ids(cleanup=False))
    # scheduled retries count while due soon; long overdue, no scheduler is moving them
    scheduled = queue.scheduled_job_registry
    for entry in queue.connection.zrangebyscore(scheduled.key, time.time() - OVERDUE, "+inf"):
        job_ids.add(entry.decode() if isinstance(entry, bytes) else str(entry))
    found: set[int] = set()
    for job in Job.fetch_many(sorted(job_ids), connection=queue.connection,
                              serializer=queue.serializer):
        found.update(_ids_of(job))
    return found


def _ids_of(job: Job | None) -> list[int]:
    """The record ids a job carries: its one argument, an id or a list of ids (a batch of
    turns)."""
    if job is None or not job.args:
        return []
    arg = job.args[0]
    if isinstance(arg, int):
        return [arg]
    if isinstance(arg, list):
        return [x for x in arg if isinstance(x, int)]
    return []


def prune(rt: Runtime, older_than: float) -> dict[str, int]:
    """Delete finished inputs, plans (with their steps) and events older than ``older_than``
    seconds, and RQ's records of the jobs that carried them."""
    inputs, plans, events = rt.store.plans.prune(older_than)
    jobs = 0
    for queue, ids in ((rt.queues.plan, set(inputs)), (rt.queues.build, set(plans)),
                       (rt.queues.turns, set(plans))):
        if ids:
            jobs += _drop_rq_jobs(queue, ids)
    out = {"inputs": len(inputs), "plans": len(plans), "events": events, "rq_jobs": jobs}
    log.info("pruned", action="prune", older_than=older_than, **out)
    return out


def _drop_rq_jobs(queue: rq.Queue, ids: set[int]) -> int:
    """Delete the finished and failed RQ jobs of ``queue`` whose records (all of them, for a
    batch) are among ``ids``."""
    dropped = 0
    for registry in (queue.finished_job_registry, queue.failed_job_registry):
        job_ids = registry.get_job_ids(cleanup=False)
        for job in Job.fetch_many(job_ids, connection=queue.connection,
                                  serializer=queue.serializer):
            carried = _ids_of(job)
            if job is not None and carried and set(carried) <= ids:
                job.delete()
                dropped += 1
    return dropped


def run(rt: Runtime, stop: threading.Event) -> None:
    """Reconcile every ``reconcile_interval`` seconds until ``stop`` is set."""
    next_prune = 0.0
    while not stop.is_set():
        try:
            reconcile_once(rt)
            if rt.config.prune_after and time.monotonic() >= next_prune:
                prune(rt, rt.config.prune_after)
                next_prune = time.monotonic() + defaults.PRUNE_EVERY
        except Exception as exc:  # noqa: BLE001 - log and keep going; next pass retries
            log.error("reconcile_failed", action="reconcile", error=str(exc))
        stop.wait(rt.config.reconcile_interval)
