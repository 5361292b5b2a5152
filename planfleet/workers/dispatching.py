"""Starting steps across the fleet: one short transaction under the fleet's dispatch lock.

A build worker runs its rounds in a thread of their own: turns and the tracker ask for a
round and go on, and every ask made while a round runs is served by the next one (a round
reads the whole fleet's ready steps, however many turns readied them).

Read every ready step of every building plan and what runs now, let
:func:`planfleet.workers.sharing.choose` pick under the fleet's capacity, mark the chosen
steps dispatched with fresh job ids (the slot is taken in that statement), commit, then submit
the jobs. A worker that dies between the commit and the submission leaves steps dispatched
with ids Windmill never saw: the tracker finds them unknown and their plan's turn submits them,
under the same ids.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from planfleet import models
from planfleet.backoff import Backoff
from planfleet.config import Config
from planfleet.dispatch import Dispatcher, Submission
from planfleet.schema.repositories import FleetLoad, Store
from planfleet.workers import sharing
from planfleet.workers.circuits import Breakers

log = structlog.get_logger(__name__)
#: Seconds within which a turn's dispatch round is left to the next one.
ROUND_EVERY = 0.1


def fleet_cap(config: Config, max_running: int) -> int:
    """Steps that may run at once in the fleet: ``max_running``, and the local runner's
    slots when steps run on this machine."""
    if config.dispatch == "local":
        return min(max_running, config.runner_slots)
    return max_running


def snapshot(load: FleetLoad, config: Config
             ) -> tuple[list[sharing.Candidate], dict[int, sharing.PlanState], sharing.Fleet]:
    """The plain data the sharing policy decides on."""
    candidates = [
        sharing.Candidate(step_id=r["id"], plan_id=r["plan_id"], task_id=r["task_id"],
                          solver=r["solver"], priority=r["priority"], rank=r["rank"],
                          waited=float(r["waited"] or 0.0), alone=r["alone"])
        for r in load.ready]
    active: dict[int, int] = {}
    by_solver: dict[int, dict[str, int]] = {}
    alone: set[int] = set()
    for (plan_id, solver, is_alone), n in load.active.items():
        active[plan_id] = active.get(plan_id, 0) + n
        if solver is not None:
            by_solver.setdefault(plan_id, {})[solver] = (
                by_solver.get(plan_id, {}).get(solver, 0) + n)
        if is_alone:
            alone.add(plan_id)
    plans = {}
    for plan_id, row in load.plans.items():
        since = row["since_served"]
        plans[plan_id] = sharing.PlanState(
            max_parallel=row["max_parallel"] or 1,
            since_served=float("inf") if since is None else float(since),
            active=active.get(plan_id, 0), active_by_solver=by_solver.get(plan_id, {}),
            alone_active=plan_id in alone, caps=dict(row["solver_caps"] or {}))
    fleet = sharing.Fleet(free=fleet_cap(config, load.max_running) - load.running,
                          caps=load.solver_caps, busy=load.busy)
    return candidates, plans, fleet


class Dispatching:
    """The fleet's dispatch rounds, as one worker process runs them."""

    def __init__(self, store: Store, dispatcher: Dispatcher, config: Config,
                 wake: Callable[[Sequence[int]], Any]) -> None:
        self.store, self.dispatcher, self.config = store, dispatcher, config
        #: asks for turns of plans (a submission failed for good: the plan decides)
        self.wake = wake
        self.breakers = Breakers(store, set(), threshold=config.circuit_threshold,
                                 cooldown=config.circuit_cooldown)
        self._last = -ROUND_EVERY
        self._thread: threading.Thread | None = None
        self._wanted = threading.Event()

    def start(self, stop: threading.Event) -> threading.Thread:
        """Run the rounds asked for with :meth:`soon` in a thread of their own until ``stop``
        is set: whoever asks goes on at once, and the asks made while a round runs are
        served by one more round."""
        thread = threading.Thread(target=self._serve, args=(stop,), name="planfleet-dispatch",
                                  daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def soon(self, *, unless_recent: bool = False) -> None:
        """A round: by the rounds' thread when it runs, else now (``unless_recent``: not when
        this process ran one within the last :data:`ROUND_EVERY` seconds — turns come in
        bursts, each round reads the whole fleet's ready steps, and the tracker asks for one
        every poll anyway)."""
        if self._thread is not None and self._thread.is_alive():
            self._wanted.set()
            return
        if unless_recent and time.monotonic() - self._last < ROUND_EVERY:
            return
        self.round()

    def _serve(self, stop: threading.Event) -> None:
        waits = Backoff(first=ROUND_EVERY, cap=5.0)
        while not stop.is_set():
            if not self._wanted.wait(timeout=1.0):
                continue
            self._wanted.clear()
            try:
                self.round()
                waits.reset()
            except Exception as exc:  # the next ask (the tracker's poll) tries again
                log.warning("dispatch_round_failed", error=str(exc),
                            error_type=type(exc).__name__)
                stop.wait(waits.next())

    def round(self) -> int:
        """Start what may start now; how many steps were started."""
        self._last = time.monotonic()
        scripts: dict[int, str] = {}

        def choose(load: FleetLoad) -> list[tuple[int, uuid.UUID]]:
            candidates, plans, fleet = snapshot(load, self.config)
            if fleet.free <= 0:
                return []
            for r in load.ready:
                scripts[r["id"]] = r["script"]
            self.breakers.scripts = sorted(set(scripts.values()))
            self.breakers.forget()  # a turn elsewhere may have opened one a moment ago
            open_ = {s for s in self.breakers.scripts if not self.breakers.allows(s)}
            if open_:  # its script's circuit is open: the step waits
                candidates = [c for c in candidates if scripts[c.step_id] not in open_]
            chosen = sharing.choose(candidates, plans, fleet, aging=self.config.aging)
            return [(c.step_id, uuid.uuid4()) for c in chosen]

        claimed = self.store.fleet.dispatch(
            choose, cap=functools.partial(fleet_cap, self.config), aging=self.config.aging,
            cooldown=self.config.circuit_cooldown)
        if claimed:
            self.submit(claimed)
        return len(claimed)

    def submit(self, claimed: Sequence[dict[str, Any]]) -> None:
        errors = self.dispatcher.submit_many([
            Submission(r["windmill_job_id"], r["script"], dict(r["args"]),
                       float(r["timeout"] or self.config.step_timeout)) for r in claimed])
        failed: set[int] = set()
        for r in claimed:
            exc = errors.get(r["windmill_job_id"])
            bound = log.bind(plan_id=r["plan_id"], task_id=r["task_id"], step_id=r["id"])
            if exc is None:
                bound.debug("step_dispatched", action="build", attempt=r["attempt"],
                            job_id=str(r["windmill_job_id"]))
            elif exc.permanent:
                self.breakers.failed(r["script"], str(exc), misconfigured=exc.misconfigured)
                self.store.steps.finish(r["id"], models.StepStatus.FAILED, error=str(exc))
                failed.add(r["plan_id"])
                bound.error("step_dispatch_failed", action="build", error=str(exc))
            else:  # stays dispatched; the tracker finds it unknown and its turn submits again
                bound.warning("step_submit_retry", action="build", error=str(exc))
        if failed:
            self.wake(sorted(failed))
        # a plan cancelled between the claim and the submission: its turn found no job to
        # cancel yet, so the job just sent is cancelled here
        for r in self.store.steps.cancelled_among([r["id"] for r in claimed]):
            self.dispatcher.cancel(r["windmill_job_id"], "plan cancelled")


def running_plans(load: FleetLoad) -> dict[str, list[int]]:
    """Per solver, the plans whose steps run on it now."""
    holders: dict[str, set[int]] = {}
    for (plan_id, solver, _), n in load.active.items():
        if solver is not None and n:
            holders.setdefault(solver, set()).add(plan_id)
    return {s: sorted(p) for s, p in holders.items()}


def waiting_reasons(load: FleetLoad, config: Config, plan_id: int) -> dict[str, str]:
    """Why each ready step of the plan has not started, in words."""
    candidates, plans, fleet = snapshot(load, config)
    holders = running_plans(load)
    return {c.task_id: sharing.waiting_reason(c, plans[c.plan_id], fleet, holders)
            for c in candidates if c.plan_id == plan_id}
