"""Domain records and their states. The enums mirror the Postgres enums of the schema.

State machines::

    input:  pending ──► queued ──► planning ──► planned
               │           ▲           │
               └───────────┘ (replan)  └──► failed   (refused files start failed)

    plan:   ready_for_build ──► queued ──► building ──► built | failed
                                   ▲          │ ▲
                                   │          ▼ │
                                   │        paused / blocked
                                   └── retry (failed)        any active ──► cancelled
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
from typing import Any, Self


class InputStatus(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    PLANNING = "planning"
    PLANNED = "planned"
    FAILED = "failed"


class PlanStatus(enum.StrEnum):
    READY_FOR_BUILD = "ready_for_build"
    QUEUED = "queued"
    BUILDING = "building"
    PAUSED = "paused"
    BLOCKED = "blocked"
    BUILT = "built"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def moving(self) -> bool:
        """Queued or building: it goes on without anyone (every other status waits for a
        person or is final)."""
        return self in (PlanStatus.QUEUED, PlanStatus.BUILDING)


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    NEEDS_QA = "needs_qa"
    BLOCKED = "blocked"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


@functools.cache
def _field_names(cls: Any) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _from_row(cls: Any, row: dict[str, Any]) -> Any:
    names = _field_names(cls)
    return cls(**{k: v for k, v in row.items() if k in names})


@dataclasses.dataclass(frozen=True)
class Settings:
    """The operator's run-time toggles (the one ``settings`` row)."""

    auto_plan: bool
    auto_build: bool
    watch_dir: str | None
    max_parallel: int
    #: steps running at once across the fleet
    max_running: int = 1000
    updated_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        return _from_row(cls, row)  # type: ignore[no-any-return]

@dataclasses.dataclass(frozen=True)
class PendingInput:
    """A recorded task-list file (without its bytes unless asked for)."""

    id: int
    filename: str
    source_dir: str | None
    digest: str | None
    size: int
    status: InputStatus
    error: str | None
    attempts: int
    created_at: dt.datetime
    updated_at: dt.datetime
    content: bytes | None = None
    #: what the planner read but did not plan, or read with a guess ({code, message, line, …})
    warnings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: the source whose version it is (``file:…``, ``upload:…``, ``youtrack:…``, ``key:…``)
    source: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        row = dict(row)
        row["status"] = InputStatus(row["status"])
        if isinstance(row.get("content"), memoryview):
            row["content"] = bytes(row["content"])
        return _from_row(cls, row)  # type: ignore[no-any-return]


@dataclasses.dataclass(frozen=True)
class Event:
    """One line of the audit trail."""

    id: int
    at: dt.datetime
    kind: str
    input_id: int | None
    plan_id: int | None
    step_id: int | None
    message: str
    data: dict[str, Any]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        return _from_row(cls, row)  # type: ignore[no-any-return]


@dataclasses.dataclass(frozen=True)
class RecordOutcome:
    """What recording one file version did: ``recorded``, ``duplicate`` (of ``input_id``, the
    latest version of its source) or ``refused``."""

    filename: str
    input_id: int
    outcome: str
    #: the source it is a version of
    source: str | None = None


@dataclasses.dataclass(frozen=True)
class PlanRecord:
    """A stored plan (``plan`` holds the planner's document when loaded with it)."""

    id: int
    pending_input_id: int | None
    status: PlanStatus
    summary: dict[str, Any]
    digest: str
    error: str | None
    worker: str | None
    heartbeat_at: dt.datetime | None
    attempts: int
    created_at: dt.datetime
    updated_at: dt.datetime
    plan: dict[str, Any] | None = None
    #: the source of the input it was made from
    source: str | None = None
    #: how many revisions (newer versions of its source) were applied to it
    revision: int = 0
    #: the revision that waits for the plan's next turn to apply it
    pending_revision: int | None = None

    @property
    def scripts(self) -> list[str]:
        """The scripts its tasks run (when loaded with its plan document)."""
        return sorted({t["script"] for t in (self.plan or {}).get("tasks", {}).values()})

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        row = dict(row)
        row["status"] = PlanStatus(row["status"])
        return _from_row(cls, row)  # type: ignore[no-any-return]


@dataclasses.dataclass(frozen=True)
class PlanLabel:
    """What names a plan for a person: its project and the file it was made from."""

    id: int
    project: str | None
    input_id: int | None
    filename: str | None

    def __str__(self) -> str:
        return " · ".join(x for x in (self.project, self.filename) if x) or f"plan {self.id}"


@dataclasses.dataclass(frozen=True)
class RevisionRecord:
    """A newer version of a plan's source, applied to the plan (or waiting to be)."""

    id: int
    plan_id: int
    input_id: int
    summary: dict[str, Any]
    digest: str
    #: pending (the plan's next turn applies it), waiting (for a person), applied, superseded
    status: str
    #: what it did to each task (once applied): added, removed, changed, kept, adopted, stale
    diff: dict[str, Any] | None
    created_at: dt.datetime
    applied_at: dt.datetime | None
    #: the version's plan document (when loaded with it)
    plan: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        return _from_row(cls, row)  # type: ignore[no-any-return]


@dataclasses.dataclass(frozen=True)
class SourceVersion:
    """One version of a source: an input recorded for it, and the plan made from it."""

    input: PendingInput
    plan_id: int | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        row = dict(row)
        plan_id = row.pop("plan_id")
        return cls(input=PendingInput.from_row(row), plan_id=plan_id)


@dataclasses.dataclass(frozen=True)
class SourceHistory:
    """A source's versions, oldest first, and the plan its next version revises (its newest
    plan that is not cancelled)."""

    source: str
    versions: list[SourceVersion]
    current_plan: PlanRecord | None

    @property
    def latest(self) -> SourceVersion | None:
        return self.versions[-1] if self.versions else None


@dataclasses.dataclass(frozen=True)
class Step:
    """One attempt of one task of a plan."""

    id: int
    plan_id: int
    task_id: str
    status: StepStatus
    attempt: int
    tries: int
    windmill_job_id: Any
    script: str
    solver: str | None
    args: dict[str, Any]
    result: Any
    error: str | None
    not_before: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error_type: str | None = None
    #: this attempt's own timeout (seconds), when a retry lengthened it
    timeout: float | None = None
    #: what a person is asked while the step is blocked
    question: str | None = None
    #: what a person decided about it
    decision: dict[str, Any] | None = None
    #: the quality check's job, while the step needs_qa
    qa_job_id: Any = None
    #: what the tracker saw the step's job (or check) end with, not yet acted on
    observed: dict[str, Any] | None = None
    #: since when it has been ready (pending, its dependencies done)
    ready_at: dt.datetime | None = None
    #: why its task left the plan (removed_from_source, done_in_source)
    removed: str | None = None
    #: completed, but a task it depends on ran again after
    stale: bool = False
    #: the definition its task runs again with once its job ends (a revision's
    #: ``on_change: finish``)
    rerun: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        row = dict(row)
        row["status"] = StepStatus(row["status"])
        return _from_row(cls, row)  # type: ignore[no-any-return]

    @property
    def active(self) -> bool:
        """A job of it runs: the step's own, or its quality check."""
        return self.status in (StepStatus.DISPATCHED, StepStatus.RUNNING, StepStatus.NEEDS_QA)

    @property
    def job(self) -> Any:
        """The id of the job that decides what happens next (the check while it needs_qa)."""
        return self.qa_job_id if self.status is StepStatus.NEEDS_QA else self.windmill_job_id

    @property
    def terminal(self) -> bool:
        return self.status in (
            StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED
        )


@dataclasses.dataclass(frozen=True)
class Circuit:
    """The circuit breaker of one script: ``closed`` (steps go), ``open`` (steps wait for the
    cool-down), ``half_open`` (one trial step is out)."""

    script: str
    state: str
    failures: int
    opened_at: dt.datetime | None
    last_error: str | None
    #: seconds since it opened (or last changed, when closed)
    open_for: float
    #: seconds since it last changed
    idle_for: float

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        return _from_row(cls, dict(row))  # type: ignore[no-any-return]
