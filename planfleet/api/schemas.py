"""What the REST API takes and answers (pydantic models: the OpenAPI schema at /docs)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field

from planfleet import models
from planfleet.api import redact

T = TypeVar("T")
#: an error text as clients see it: without the server's absolute paths
ShownError = Annotated[str | None, AfterValidator(redact.paths)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    limit: int
    offset: int
    #: how many records match the filter
    total: int


class InputOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    filename: str
    source_dir: str | None
    #: the source whose version it is (file:…, upload:…, youtrack:…, key:…)
    source: str | None = None
    digest: str | None
    size: int
    status: models.InputStatus
    error: ShownError
    #: what the planner read but did not plan, or read with a guess
    warnings: list[dict[str, Any]] = []
    attempts: int
    created_at: dt.datetime
    updated_at: dt.datetime


class PlanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    pending_input_id: int | None
    status: models.PlanStatus
    summary: dict[str, Any]
    error: ShownError
    worker: str | None
    heartbeat_at: dt.datetime | None
    attempts: int
    created_at: dt.datetime
    updated_at: dt.datetime
    #: the source of the input it was made from
    source: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def makespan_minutes(self) -> float | None:
        """The planned makespan (``summary.makespan``), in minutes."""
        value = self.summary.get("makespan")
        return float(value) if isinstance(value, int | float) else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lower_bound_minutes(self) -> float | None:
        """No schedule can be shorter (``summary.lower_bound``), in minutes."""
        value = self.summary.get("lower_bound")
        return float(value) if isinstance(value, int | float) else None


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: dt.datetime
    kind: str
    input_id: int | None
    plan_id: int | None
    step_id: int | None
    message: str
    data: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventOut]
    limit: int
    #: pass as ``before`` for older events (None: this was the last page)
    next_before: int | None


class InputDetail(InputOut):
    #: the planner's problems when planning failed
    problems: list[dict[str, Any]]
    plans: list[PlanOut]
    events: list[EventOut]


class StepOut(BaseModel):
    id: int
    task_id: str
    status: models.StepStatus
    attempt: int
    tries: int
    job_id: str | None
    script: str
    solver: str | None
    args: dict[str, Any]
    result: Any
    error: ShownError
    not_before: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    #: from dispatch to the recorded end
    duration_seconds: float | None
    #: the job's page (Windmill's UI, or the local runner's log file)
    link: str | None
    error_type: str | None = None
    #: what a person is asked while the step is blocked
    question: str | None = None
    decision: dict[str, Any] | None = None

    @classmethod
    def of(cls, s: models.Step) -> StepOut:
        seconds = ((s.finished_at - s.started_at).total_seconds()
                   if s.started_at and s.finished_at else None)
        link = s.result.get("link") if isinstance(s.result, dict) else None
        return cls(id=s.id, task_id=s.task_id, status=s.status, attempt=s.attempt,
                   tries=s.tries, job_id=str(s.windmill_job_id) if s.windmill_job_id else None,
                   script=s.script, solver=s.solver, args=s.args, result=s.result,
                   error=s.error, not_before=s.not_before, started_at=s.started_at,
                   finished_at=s.finished_at, duration_seconds=seconds, link=link,
                   error_type=s.error_type, question=s.question, decision=s.decision)


class CircuitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    script: str
    state: str
    failures: int
    opened_at: dt.datetime | None
    last_error: ShownError


class RevisionOut(BaseModel):
    """A newer version of the plan's source: applied, superseded, or waiting."""

    id: int
    input_id: int
    #: pending (its plan's next turn applies it), waiting (for a person), applied, superseded
    status: str
    created_at: dt.datetime
    applied_at: dt.datetime | None
    #: what it did to each task: added, removed, done_in_source, changed, kept, adopted, stale
    #: (for a waiting one: what it would do now)
    diff: dict[str, Any] | None


class PlanDetail(PlanOut):
    #: the planner's document (schedule, batches, critical path, explanations, tasks)
    plan: dict[str, Any] | None
    #: the latest attempt of every task
    steps: list[StepOut]
    #: every attempt of every step, in the order they started
    history: list[StepOut]
    circuits: list[CircuitOut]
    #: task not started -> the blocked task (waiting for a person) it waits for
    waiting_for_a_person: dict[str, str]
    #: ready task -> why it has not started (the fleet's capacity, the plan's limits)
    waiting_for_a_slot: dict[str, str] = Field(default_factory=dict)
    #: newer versions of its source, oldest first
    revisions: list[RevisionOut] = Field(default_factory=list)


class SettingsOut(BaseModel):
    auto_plan: bool
    auto_build: bool
    watch_dir: str | None
    max_parallel: int
    #: steps running at once across the fleet
    max_running: int
    updated_at: dt.datetime | None


class SettingsIn(BaseModel):
    """Fields left out are not changed; ``watch_dir: ""`` goes back to WATCH_DIR."""

    model_config = ConfigDict(extra="forbid")
    auto_plan: bool | None = None
    auto_build: bool | None = None
    watch_dir: str | None = Field(None, max_length=4096)
    max_parallel: int | None = Field(None, ge=1, le=10_000)
    max_running: int | None = Field(None, ge=1, le=1_000_000)


class SolverOut(BaseModel):
    name: str
    #: steps it may run at once, fleet-wide
    capacity: int
    script: str | None
    #: steps it runs now
    busy: int
    #: ready steps waiting for it
    waiting: int
    updated_at: dt.datetime


class SolverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    capacity: int = Field(ge=0, le=100_000)
    script: str | None = Field(None, min_length=1, max_length=1000)


class SolverRemoved(BaseModel):
    name: str
    message: str


class QueueOut(BaseModel):
    name: str
    #: auto: the previous hop enqueues here by itself; manual: a person does
    mode: str
    depth: int
    started: int
    failed: int
    scheduled: int
    workers: int
    busy: int


class QueuesOut(BaseModel):
    queues: list[QueueOut]


class Done(BaseModel):
    """What an action did."""

    id: int
    status: str
    message: str


class Uploaded(BaseModel):
    input_id: int
    filename: str
    #: recorded (a new version of its source) or duplicate (the same bytes as the source's
    #: latest version, input_id)
    outcome: str
    #: the source it is a version of
    source: str | None = None


class Problem(BaseModel):
    code: str
    message: str
    task: str | None = None
    field: str | None = None
    line: int | None = None


class Invalid(BaseModel):
    detail: str
    problems: list[Problem]


class Error(BaseModel):
    detail: str


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["retry", "skip", "fail", "answer"]
    #: retry: feedback for the solver; answer: the answer to the step's question
    note: str | None = Field(None, max_length=10_000, pattern=r"^[^\x00]*$")


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("cancelled by a person", min_length=1, max_length=1000)
