"""Dispatchers: where a step's job runs. The build workers see only the :class:`Dispatcher`
protocol; :mod:`planfleet.dispatch.local` runs Windmill-style scripts on this machine."""

from __future__ import annotations

import dataclasses
import enum
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

    @property
    def done(self) -> bool:
        return self.state in (JobState.SUCCESS, JobState.FAILURE)


class Dispatcher(Protocol):
    """Runs jobs under ids the caller chose (and wrote down before calling ``submit``)."""

    def submit(
        self, job_id: uuid.UUID, script: str, args: dict[str, Any], timeout: float
    ) -> None:
        """Start the job; submitting an id that was submitted before is a no-op."""

    def status(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, JobStatus]:
        """The state of each job."""

    def cancel(self, job_id: uuid.UUID, reason: str) -> None:
        """Stop a queued or running job (a finished one is left alone)."""

    def close(self) -> None:
        """Release connections and processes this dispatcher holds."""


class DispatchError(Exception):
    """A job could not be submitted. ``permanent``: retrying will not help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
