"""The tracker: follows every running step's job for the whole fleet.

One build worker at a time tracks (the one holding the tracker's advisory lock; when it dies,
its connection closes and another takes over). Every ``build_poll`` seconds it asks the
dispatcher about every job the fleet runs — for Windmill, the dispatcher's listings keep that
to at most two status requests per job — and:

- records a job that ended, or vanished, on its step (``steps.observed``) and asks for a turn
  of the step's plan, which acts on it (and asks again when an end is still not acted on a
  few seconds later — that turn was lost with its worker — then at doubling intervals, so
  that a busy fleet's backlog of turns is not asked for twice over);
- asks for the first turn of plans queued for building on the turn queue, which build
  workers empty before the build jobs (a plan's own ``build_plan`` job may wait behind many);
- records a step as running once its job has run for a moment;
- asks for a turn of a plan whose step is past its timeout (the turn cancels the job);
- asks for a dispatch round, which starts steps whose backoff is over or that waited for
  capacity (an operator may also have raised a capacity).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import structlog

from planfleet import defaults, models
from planfleet.config import Config
from planfleet.dispatch import Dispatcher, JobState
from planfleet.schema import queries
from planfleet.schema.repositories import Store
from planfleet.workers.building import RUNNING_AFTER, observation
from planfleet.workers.dispatching import Dispatching

log = structlog.get_logger(__name__)
S = models.StepStatus
#: Seconds between a follower's attempts to become the tracker, and the leader's checks that
#: its lock's connection still stands.
LEADER_CHECK = 2.0
#: Seconds a recorded end may wait for its plan's turn before the plan is woken again (and a
#: queued plan for its first turn); each time again, twice as long, up to REWAKE_CAP.
REWAKE = 3.0
REWAKE_CAP = 60.0


class Tracker:
    def __init__(self, store: Store, dispatcher: Dispatcher, config: Config,
                 dispatching: Dispatching, wake: Callable[[Sequence[int]], Any]) -> None:
        self.store, self.dispatcher, self.config = store, dispatcher, config
        self.dispatching = dispatching
        self.wake = wake
        #: steps whose timeout was reported to their plan (once each)
        self._timed_out: set[int] = set()
        #: steps whose recorded end was reported to their plan: when (monotonic seconds), and
        #: the wait before it is reported again
        self._woken: dict[int, tuple[float, float]] = {}
        #: queued plans asked for their first turn: when, and the wait before asking again
        self._queued: dict[int, tuple[float, float]] = {}

    def tick(self) -> None:
        """One look at the fleet's running jobs, then a dispatch round asked for."""
        rows = self.store.steps.fleet_active()
        jobs: dict[uuid.UUID, dict[str, Any]] = {}
        wake: set[int] = set()
        clock = time.monotonic()
        for r in rows:
            job = r["qa_job_id"] if r["status"] == S.NEEDS_QA else r["windmill_job_id"]
            if job is not None and not r["observed"]:
                jobs[job] = r
            elif r["observed"] and _due(self._woken, r["id"], clock):
                # recorded, yet not acted on: the turn asked for was lost with its worker
                wake.add(r["plan_id"])
        queued = self.store.plans.queued(limit=defaults.TURN_BATCH)
        for plan_id in queued:  # asked for at once when first seen, then as a lost turn
            if plan_id not in self._queued:
                self._queued[plan_id] = (clock, REWAKE)
                wake.add(plan_id)
            elif _due(self._queued, plan_id, clock):
                wake.add(plan_id)
        for plan_id in self._queued.keys() - set(queued):
            del self._queued[plan_id]
        now = dt.datetime.now(dt.UTC)
        statuses = self.dispatcher.status(list(jobs)) if jobs else {}
        ended: list[tuple[int, S, dict[str, Any]]] = []
        started: list[int] = []
        for job, status in statuses.items():
            r = jobs[job]
            age = (now - r["started_at"]).total_seconds() if r["started_at"] else 0.0
            if status.done or status.state is JobState.UNKNOWN:
                ended.append((r["id"], S(r["status"]), observation(status)))
            elif (status.state is JobState.RUNNING and r["status"] == S.DISPATCHED
                  and age >= RUNNING_AFTER):
                started.append(r["id"])
            limit = (float(r["timeout"] or self.config.step_timeout) + self.config.timeout_grace
                     + (self.config.qa_timeout if r["status"] == S.NEEDS_QA else 0.0))
            if age > limit and r["id"] not in self._timed_out:
                self._timed_out.add(r["id"])
                wake.add(r["plan_id"])
        for step_id, plan_id in self.store.steps.observe(ended).items():
            wake.add(plan_id)
            self._woken[step_id] = (clock, REWAKE)
        self.store.steps.running(started)
        self._timed_out &= {r["id"] for r in rows}
        for step_id in self._woken.keys() - {r["id"] for r in rows if r["observed"]}:
            del self._woken[step_id]
        if wake:
            self.wake(sorted(wake))
        self.dispatching.soon()


def _due(woken: dict[int, tuple[float, float]], key: int, clock: float) -> bool:
    """Whether ``key``, asked for at a time recorded in ``woken`` (first seen now), is due to
    be asked for again; if so the next wait is twice as long."""
    at, wait = woken.setdefault(key, (clock, REWAKE))
    if clock - at < wait:
        return False
    woken[key] = (clock, min(wait * 2, REWAKE_CAP))
    return True


def run(tracker: Tracker, url: str, stop: threading.Event, poll: float) -> None:
    """Track while holding the tracker lock; wait for it otherwise. Never raises."""
    conn: psycopg.Connection[Any] | None = None
    leader = False
    checked = 0.0
    delay = poll
    while not stop.is_set():
        try:
            now = time.monotonic()
            if conn is None or conn.closed:
                conn, leader = psycopg.connect(url, autocommit=True), False
            if not leader or now - checked >= LEADER_CHECK:
                row = conn.execute(queries.get("lock_tracker") if not leader
                                   else "SELECT true").fetchone()
                became = not leader and bool(row and row[0])
                leader = leader or became
                checked = now
                if became:
                    log.info("tracker_leading")
            if leader:
                tracker.tick()
            delay = poll if leader else LEADER_CHECK
        except Exception as exc:  # a tracker that stops would stall the fleet: log, wait, go on
            log.warning("tracker_failed", error=str(exc), error_type=type(exc).__name__)
            if conn is not None and conn.closed:
                conn, leader = None, False
            delay = min(max(delay * 2, poll), 10.0)
        stop.wait(delay)
    if conn is not None:
        conn.close()
