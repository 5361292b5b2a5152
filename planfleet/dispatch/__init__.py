"""Dispatchers: where a step's job runs. The build workers see only the :class:`Dispatcher`
protocol; :mod:`planfleet.dispatch.local` runs Windmill-style scripts on this machine."""

from __future__ import annotations

import dataclasses
import enum
import threading
import uuid
from collections.abc import Sequence
from typing import Any, Protocol


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    #: the dispatcher does not know the job (never submitted, or gone)
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class JobStatus:
    state: JobState
    result: Any = None
    error: str | None = None
    duration: float | None = None
    #: where a person can look at the job (a Windmill UI link, a log file)
    link: str | None = None
    #: the kind of error a failed job raised (its exception's class name, or "timeout")
    error_type: str | None = None

    @property
    def done(self) -> bool:
        return self.state in (JobState.SUCCESS, JobState.FAILURE)


class Dispatcher(Protocol):
    """Runs jobs under ids the caller chose (and wrote down before calling ``submit``).

    ``status`` answers UNKNOWN for an id the dispatcher never saw submitted (the caller then
    submits it again: same id, so at most one job) and for a job whose submission failed for a
    transient reason once its backoff is over."""

    def submit(
        self, job_id: uuid.UUID, script: str, args: dict[str, Any], timeout: float
    ) -> None:
        """Start the job; submitting an id that was submitted before is a no-op."""

    def submit_many(
        self, jobs: Sequence[Submission]
    ) -> dict[uuid.UUID, DispatchError | None]:
        """Submit several jobs (concurrently where the dispatcher can); per job, the error."""

    def status(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, JobStatus]:
        """The state of each job."""

    def cancel(self, job_id: uuid.UUID, reason: str) -> None:
        """Stop a queued or running job (a finished one is left alone)."""

    def close(self) -> None:
        """Release connections and processes this dispatcher holds."""


class DispatchError(Exception):
    """A job could not be submitted. ``permanent``: retrying will not help;
    ``misconfigured``: the script path, token or workspace is wrong (opens the circuit)."""

    def __init__(self, message: str, *, permanent: bool = False,
                 misconfigured: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent or misconfigured
        self.misconfigured = misconfigured


@dataclasses.dataclass(frozen=True)
class Submission:
    job_id: uuid.UUID
    script: str
    args: dict[str, Any]
    timeout: float


def submit_each(dispatcher: Dispatcher,
                jobs: Sequence[Submission]) -> dict[uuid.UUID, DispatchError | None]:
    """``submit_many`` for dispatchers that submit one job at a time."""
    out: dict[uuid.UUID, DispatchError | None] = {}
    for job in jobs:
        try:
            dispatcher.submit(job.job_id, job.script, job.args, job.timeout)
            out[job.job_id] = None
        except DispatchError as exc:
            out[job.job_id] = exc
    return out


class Locked:
    """A dispatcher shared by a process's turns and its tracker thread: one call at a time
    (the dispatchers keep per-job bookkeeping that is not thread-safe)."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner
        self._lock = threading.RLock()

    def submit(self, job_id: uuid.UUID, script: str, args: dict[str, Any], timeout: float) -> None:
        with self._lock:
            self.inner.submit(job_id, script, args, timeout)

    def submit_many(self, jobs: Sequence[Submission]) -> dict[uuid.UUID, DispatchError | None]:
        with self._lock:
            return self.inner.submit_many(jobs)

    def status(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, JobStatus]:
        with self._lock:
            return self.inner.status(job_ids)

    def cancel(self, job_id: uuid.UUID, reason: str) -> None:
        with self._lock:
            self.inner.cancel(job_id, reason)

    def close(self) -> None:
        with self._lock:
            self.inner.close()
