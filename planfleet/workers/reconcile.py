"""The reconciler: enqueues again what Postgres says should be moving but nobody moves.

Inputs and plans `queued` for longer than ``requeue_after`` (their job was lost with Redis, or
never sent), plans `building` whose worker's heartbeat is older than ``build_stale`` (the
worker died), inputs `planning` far past the planning timeout. A job enqueued twice is
harmless: every job claims its row before acting. Safe to run in several places at once.
"""

from __future__ import annotations

import threading

import structlog

from planfleet import defaults
from planfleet.runtime import Runtime

log = structlog.get_logger(__name__)


def reconcile_once(rt: Runtime) -> dict[str, list[int]]:
    """One pass; returns the ids it enqueued again, by kind."""
    cfg = rt.config
    out: dict[str, list[int]] = {"inputs": [], "plans": []}
    for input_id, status in rt.store.inputs.stale(
        queued=cfg.requeue_after, planning=defaults.PLAN_JOB_TIMEOUT * 2
    ):
        if status == "planning" and not rt.store.inputs.release(
            input_id, defaults.PLAN_JOB_TIMEOUT * 2
        ):
            continue
        if status == "queued" and not rt.store.inputs.touch(input_id):
            continue
        out["inputs"].append(input_id)
    for plan_id, status in rt.store.plans.stale(stale=cfg.build_stale, queued=cfg.requeue_after):
        if status == "queued" and not rt.store.plans.touch(plan_id):
            continue
        out["plans"].append(plan_id)
    rt.queues.enqueue_plans(out["inputs"])
    rt.queues.enqueue_builds(out["plans"])
    for kind, ids in out.items():
        if ids:
            rt.store.events.add("reconciled", f"enqueued {kind} again: {ids}",
                                data={kind: ids})
            log.info("reconciled", action="reconcile", kind=kind, ids=ids)
    return out


def run(rt: Runtime, stop: threading.Event) -> None:
    """Reconcile every ``reconcile_interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            reconcile_once(rt)
        except Exception as exc:  # noqa: BLE001 - log and keep going; next pass retries
            log.error("reconcile_failed", action="reconcile", error=str(exc))
        stop.wait(rt.config.reconcile_interval)
