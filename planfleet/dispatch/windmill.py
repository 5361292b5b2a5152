"""The Windmill dispatcher: steps run as jobs of Windmill scripts, under job ids we chose.

Submitting: ``POST jobs/run/p/{script}?job_id=…`` (the id is in ``steps`` before the request,
and Windmill refuses a second job with the same id, so a crash or a retry never starts two).
Several submissions go out concurrently, over one worker's few kept-alive connections.

Tracking many jobs with few requests: every ``poll`` seconds (while looks find jobs ending
or new ones come; else at doubling waits up to ``QUIET_CAP``) one listing asks which jobs
completed since the last look (``list_filtered_uuids?completed_after=…``, on Windmill's clock)
and, while some tracked job has not been seen running, one asks (at most once a second) which
of the jobs started since the oldest such one are running; only a job that completed is then
fetched (``jobs_u/get``: result, success, duration). A job that shows up in neither for
``check_after`` seconds is looked up on its own, at doubling intervals, which also finds a job
Windmill lost (404: it is reported unknown, and submitted again). A job another worker
submitted since the last look is followed by the listings like one of ours; only a
dispatcher's first look (a worker that just started, or took over the tracking) looks up at
once each job it did not submit, since those may have ended at any time before.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from planfleet.backoff import Backoff
from planfleet.dispatch import DispatchError, JobState, JobStatus, Submission
from planfleet.dispatch.windmill_api import ListingUnavailable, WindmillClient, server_time

log = structlog.get_logger(__name__)
T = TypeVar("T")
R = TypeVar("R")

#: Seconds each "completed since" listing reaches back before the previous one (a job's
#: completion may commit a little after its timestamp).
OVERLAP = 5.0
#: Seconds after which Windmill's clock offset is measured again.
CLOCK_EVERY = 600.0
#: Without listings (an older Windmill): a job's first lookup after this many seconds, then
#: at doubling intervals up to ``FALLBACK_CAP``: a modest rate, whatever the jobs' number.
FALLBACK_FIRST = 1.0
FALLBACK_CAP = 30.0
#: Seconds between asks which jobs run: a step is recorded running only after it has been
#: dispatched a second anyway (a completion is looked for at every poll).
RUNNING_EVERY = 1.0
#: The longest wait between looks while jobs run but none ended or was new at the last looks:
#: a quiet fleet of long jobs (agents' steps take minutes) is not asked about every ``poll``.
QUIET_CAP = 1.0


@dataclasses.dataclass
class _Job:
    status: JobStatus
    #: Windmill has the job (our submission succeeded, or it said the id exists)
    known: bool
    #: monotonic time of its next lookup on its own
    check_at: float
    check_every: float
    #: a transient submission failure: when to report it unknown (to be submitted again)
    resubmit_at: float | None = None
    failures: int = 0
    #: monotonic time since which it may have started (its submission, or when it was first
    #: asked about): the listing of running jobs reaches back to the oldest of these
    since: float = dataclasses.field(default_factory=time.monotonic)
    #: followed by the listings although this dispatcher did not submit it (another worker
    #: did, since the last look: its start and end come after that look's reach)
    listed: bool = False


_QUEUED = JobStatus(JobState.QUEUED)
_UNKNOWN = JobStatus(JobState.UNKNOWN)


class WindmillDispatcher:
    #: turns may submit and cancel while the tracker asks for statuses (one thread at a time
    #: calls ``status``)
    thread_safe = True

    def __init__(
        self, client: WindmillClient, *, poll: float = 0.5, check_after: float = 30.0,
        retry_base: float = 1.0, retry_cap: float = 60.0, concurrency: int = 8,
    ) -> None:
        self.client = client
        self.poll, self.check_after = poll, check_after
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="windmill")
        self._jobs: dict[uuid.UUID, _Job] = {}
        self._offset: float | None = None
        self._clock_at = 0.0
        self._since: str | None = None
        self._first_sent: float | None = None
        self._next_poll = 0.0
        #: monotonic time of the last look at Windmill (None: none yet)
        self._looked_at: float | None = None
        #: the waits between looks: ``poll`` after a look that found a job ended or new (more
        #: may follow soon), then twice as long after each quiet one, up to QUIET_CAP
        self._waits = Backoff(first=poll, cap=max(QUIET_CAP, poll))
        #: whether a job was new since the last look
        self._new = False
        self._running_at = -RUNNING_EVERY
        #: False once Windmill answered that it has no listing endpoints
        self._listing = True
        #: guards the bookkeeping (``_jobs``), never held over a request: turns submit while
        #: the tracker looks (one thread calls ``status`` at a time)
        self._lock = threading.Lock()

    # -- helpers -----------------------------------------------------------------------------

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) <= 1:
            return [fn(x) for x in items]
        return list(self._pool.map(fn, items))

    def _clock(self) -> float:
        now = time.monotonic()
        if self._offset is None or now - self._clock_at > CLOCK_EVERY:
            self._offset = self.client.clock()
            self._clock_at = now
        return self._offset


    def _status_of(self, job_id: uuid.UUID, job: dict[str, Any]) -> JobStatus:
        link = self.client.job_link(job_id)
        if job.get("type") == "CompletedJob" or "duration_ms" in job:
            duration = job.get("duration_ms")
            seconds = duration / 1000.0 if isinstance(duration, int | float) else None
            result = job.get("result")
            if job.get("success") and not job.get("canceled"):
                return JobStatus(JobState.SUCCESS, result=result, duration=seconds, link=link)
            err = result.get("error") if isinstance(result, dict) else None
            return JobStatus(JobState.FAILURE, result=result, error=_error_of(job),
                             duration=seconds, link=link,
                             error_type="cancelled" if job.get("canceled") else
                             (err.get("name") if isinstance(err, dict) else None))
        return JobStatus(JobState.RUNNING if job.get("running") else JobState.QUEUED, link=link)

    # -- Dispatcher --------------------------------------------------------------------------

    def submit(self, job_id: uuid.UUID, script: str, args: dict[str, Any], timeout: float) -> None:
        error = self.submit_many([Submission(job_id, script, args, timeout)])[job_id]
        if error is not None:
            raise error

    def submit_many(self, jobs: Sequence[Submission]) -> dict[uuid.UUID, DispatchError | None]:
        if not jobs:
            return {}
        with self._lock:
            if self._first_sent is None:
                self._first_sent = time.time()  # completions are looked for from here on

        def send(job: Submission) -> DispatchError | None:
            try:
                self.client.run_script(job.job_id, job.script, job.args)
            except DispatchError as exc:
                return exc
            return None

        out = dict(zip((j.job_id for j in jobs), self._map(send, jobs), strict=True))
        with self._lock:
            self._sent(out)
            self._new = True
        return out

    def _sent(self, out: dict[uuid.UUID, DispatchError | None]) -> None:
        now = time.monotonic()
        first = self.check_after if self._listing else FALLBACK_FIRST
        for job_id, error in out.items():
            if error is None:
                self._jobs[job_id] = _Job(_QUEUED, True, now + first, first, since=now)
            elif error.permanent:
                self._jobs.pop(job_id, None)
            else:
                # kept as queued; reported unknown (so submitted again) after a backoff
                failures = (self._jobs[job_id].failures if job_id in self._jobs else 0) + 1
                delay = min(self.retry_cap, self.retry_base * 2 ** (failures - 1))
                self._jobs[job_id] = _Job(_QUEUED, False, now + delay, delay,
                                          resubmit_at=now + delay, failures=failures)

    def status(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, JobStatus]:
        now = time.monotonic()
        wanted = set(job_ids)
        with self._lock:
            for job_id in [j for j in self._jobs if j not in wanted]:
                del self._jobs[job_id]  # the caller has what it needed
            for job_id in wanted - self._jobs.keys():
                self._new = True
                if self._looked_at is not None and self._listing:
                    # new since the last look (another worker's submission, claimed after
                    # the caller's last read): the listings find its start and end, and it
                    # is looked up on its own only as late as a job of ours
                    self._jobs[job_id] = _Job(_QUEUED, False, now + self.check_after,
                                              self.check_after, since=self._looked_at,
                                              listed=True)
                else:  # submitted by an earlier worker (or never): look it up at once
                    self._jobs[job_id] = _Job(_QUEUED, False, now, self.check_after
                                              if self._listing else FALLBACK_FIRST)
            open_jobs = {j: job for j, job in self._jobs.items()
                         if job.resubmit_at is None and not job.status.done}
        if now >= self._next_poll:
            with self._lock:
                moved, self._new = self._new, False
            try:
                moved = self._look(now, open_jobs) or moved
            except DispatchError as exc:
                log.warning("windmill_poll_failed", error=str(exc))
            else:
                self._looked_at = now
            self._next_poll = time.monotonic() + self.next_wait(moved)
        out = {}
        with self._lock:
            for job_id in job_ids:
                job = self._jobs.get(job_id) or _Job(_QUEUED, False, now, self.check_after)
                if job.resubmit_at is not None:
                    out[job_id] = _UNKNOWN if now >= job.resubmit_at else _QUEUED
                else:
                    out[job_id] = job.status
        return out

    def next_wait(self, moved: bool) -> float:
        """Seconds to the next look, after a look that found a job ended or new (``moved``)
        or not."""
        if moved:
            self._waits.reset()
        return self._waits.next()

    def _look(self, now: float, open_jobs: dict[uuid.UUID, _Job]) -> bool:
        """Ask Windmill about the open jobs (no lock held: requests take a while; the _Job
        records are updated in place); whether one of them ended."""
        if not open_jobs:
            return False
        fetch = {j for j, job in open_jobs.items() if now >= job.check_at}
        watched = {j: job for j, job in open_jobs.items() if job.known or job.listed}
        if watched and self._listing:
            try:
                self._list(watched, fetch)
            except ListingUnavailable as exc:
                self._listing = False
                log.warning("windmill_listing_unavailable", error=str(exc),
                            fallback="each job looked up on its own, at doubling intervals")
                for job in open_jobs.values():
                    job.check_every = min(job.check_every, FALLBACK_FIRST)
                    job.check_at = min(job.check_at, now + FALLBACK_FIRST)
        if fetch:
            self._fetch(sorted(fetch), now)
        return any(job.status.done for job in open_jobs.values())

    def _list(self, watched: dict[uuid.UUID, _Job], fetch: set[uuid.UUID]) -> None:
        """Which watched jobs completed (to ``fetch``) or run, from the listing endpoints."""
        offset = self._clock()
        since = self._since or server_time(
            offset - OVERLAP - (time.time() - (self._first_sent or time.time())))
        self._since = server_time(offset - OVERLAP)
        done = self.client.job_ids(completed_after=since) & {str(j) for j in watched}
        fetch |= {uuid.UUID(j) for j in done}
        waiting = [j for j, job in watched.items()
                   if job.status.state is JobState.QUEUED and j not in fetch]
        if waiting and time.monotonic() - self._running_at >= RUNNING_EVERY:
            self._running_at = time.monotonic()
            # only jobs started since the oldest one not yet seen running: a handful, not
            # every job the fleet runs
            oldest = min(watched[j].since for j in waiting)
            running = self.client.job_ids(running="true", started_after=server_time(
                offset - OVERLAP - (time.monotonic() - oldest)))
            for j in waiting:
                if str(j) in running:
                    watched[j].status = JobStatus(JobState.RUNNING,
                                                  link=self.client.job_link(j))

    def _fetch(self, job_ids: list[uuid.UUID], now: float) -> None:
        def get(job_id: uuid.UUID) -> dict[str, Any] | None | DispatchError:
            try:
                return self.client.get_job(job_id)
            except DispatchError as exc:
                return exc

        with self._lock:
            jobs = {j: self._jobs[j] for j in job_ids if j in self._jobs}
        for job_id, found in zip(job_ids, self._map(get, job_ids), strict=True):
            job = jobs.get(job_id)
            if job is None:
                continue  # no longer followed
            if isinstance(found, DispatchError):
                log.warning("windmill_lookup_failed", job_id=str(job_id), error=str(found))
                continue
            if found is None:
                if job.known:
                    log.warning("windmill_job_gone", job_id=str(job_id))
                job.known, job.status = False, _UNKNOWN
                continue
            job.known = True
            job.status = self._status_of(job_id, found)
            job.check_every = min(job.check_every * 2,
                                  self.check_after * 10 if self._listing else FALLBACK_CAP)
            job.check_at = now + job.check_every

    def cancel(self, job_id: uuid.UUID, reason: str) -> None:
        try:
            self.client.cancel(job_id, reason)
        except DispatchError as exc:
            log.warning("windmill_cancel_failed", job_id=str(job_id), error=str(exc))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()


def _error_of(job: dict[str, Any]) -> str:
    """What went wrong, in the words Windmill recorded."""
    if job.get("canceled"):
        by = job.get("canceled_by") or "someone"
        return f"cancelled by {by}: {job.get('canceled_reason') or 'no reason given'}"
    result = job.get("result")
    if isinstance(result, dict) and isinstance(result.get("error"), dict):
        err = result["error"]
        name, message = err.get("name"), err.get("message")
        return f"{name}: {message}" if name else str(message or err)
    return f"job failed: {str(result)[:500]}"
