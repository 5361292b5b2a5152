"""What a turn of a plan does: the typed actions :mod:`planfleet.workers.deciding` returns and
:class:`planfleet.workers.building.Build` applies, in order (Temporal's workflow-task commands;
procrastinate's ``RetryDecision``).

The order is part of the decision. A job's id is written to Postgres before the job is
submitted (:class:`NeedsQa` before its :class:`Submit`); a job is cancelled before its step is
recorded as ended (:class:`Cancel` before :class:`Fail` or :class:`CancelStep`); a circuit
hears of a failure before the step is recorded. A guarded write that matches nothing (the step
or the plan moved on meanwhile) stops the list there: the turn reads the steps again and
decides afresh, so what follows it is never applied on a stale view.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from planfleet import models
from planfleet.schema.repositories import NextAttempt


@dataclasses.dataclass(frozen=True)
class Skip:
    """Pending tasks that wait, directly or not, on ``cause``, which ended badly: skipped
    (guarded: each must still be pending). The applier logs the tasks it skipped."""

    tasks: tuple[str, ...]
    cause: str

    @property
    def reason(self) -> str:
        return f"dependency {self.cause} failed"


@dataclasses.dataclass(frozen=True)
class Complete:
    """The step's job succeeded (and its quality check passed, if it has one). Guarded."""

    step: models.Step
    result: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class NeedsQa:
    """The step's output goes to its quality check, whose job id is written here, before the
    :class:`Submit` that follows. Guarded."""

    step: models.Step
    qa_job: uuid.UUID
    result: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Submit:
    """Submit a job under an id already written to Postgres (submitting it twice is a no-op).
    A permanent refusal is decided by :func:`planfleet.workers.deciding.refused`."""

    #: the step as the decision saw it once the id was written
    step: models.Step
    job: uuid.UUID
    script: str
    args: Mapping[str, Any]
    timeout: float
    #: the job is the step's quality check (not the step's own job)
    check: bool = False


@dataclasses.dataclass(frozen=True)
class Cancel:
    """Cancel a job (cancelling an ended or unknown job is a no-op)."""

    job: Any
    reason: str


@dataclasses.dataclass(frozen=True)
class ClearObserved:
    """The turn acted on what the tracker saw the step's job end with."""

    step: models.Step


@dataclasses.dataclass(frozen=True)
class Fail:
    """The attempt failed. With ``retry_in`` its next attempt is created in the same
    transaction, pending for that many seconds (``next_attempt`` says how it differs);
    without, the task fails for good and its dependents are skipped. Guarded."""

    step: models.Step
    error: str
    error_type: str | None = None
    result: Any = None
    retry_in: float | None = None
    next_attempt: NextAttempt | None = None


@dataclasses.dataclass(frozen=True)
class Block:
    """The step waits for a person, who is asked ``question``. Guarded."""

    step: models.Step
    question: str
    error: str
    error_type: str | None = None
    result: Any = None


@dataclasses.dataclass(frozen=True)
class CancelStep:
    """The plan is cancelled: the step's attempt ends cancelled (after its job was). A step
    that ended meanwhile stays as it ended."""

    step: models.Step
    reason: str


@dataclasses.dataclass(frozen=True)
class CancelPending:
    """The plan is cancelled: its pending steps end cancelled."""

    reason: str


@dataclasses.dataclass(frozen=True)
class MarkReady:
    """Pending steps whose dependencies are all done compete for slots from now on."""

    step_ids: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class FinishPlan:
    """Every step ended: the plan is built (every task done) or failed. The applier adds the
    attempts' count and span to the summary (it reads every attempt, not only the latest).
    Guarded: a plan no longer building is not finished."""

    built: bool
    error: str | None
    counts: Mapping[str, int]
    skipped_by_a_person: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """Only steps waiting for a person are left: the plan waits for a decision. Guarded."""


@dataclasses.dataclass(frozen=True)
class CircuitFailed:
    """A failure of ``script`` counts towards opening its circuit (``misconfigured``: at
    once)."""

    script: str
    message: str
    misconfigured: bool = False


@dataclasses.dataclass(frozen=True)
class CircuitSucceeded:
    """A success of ``script`` closes its circuit."""

    script: str


@dataclasses.dataclass(frozen=True)
class Event:
    """A line of the plan's history (the events table)."""

    kind: str
    message: str
    step_id: int | None = None
    data: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Log:
    """A log line of the decision (``action="build"`` and the plan's ids are bound by the
    applier)."""

    event: str
    level: Literal["debug", "info", "warning", "error"] = "info"
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)


Action = (Skip | Complete | NeedsQa | Submit | Cancel | ClearObserved | Fail | Block
          | CancelStep | CancelPending | MarkReady | FinishPlan | BlockPlan | CircuitFailed
          | CircuitSucceeded | Event | Log)


@dataclasses.dataclass(frozen=True)
class TurnDecision:
    """What a turn does with the steps it read, in order."""

    actions: tuple[Action, ...]
    #: nothing needs reading again: the endings (finish, block, ready) were decided too.
    #: False: apply, read the steps again and decide once more (a retry's new attempt, a step
    #: sent to its check: rows the decision could not see)
    settled: bool
    #: the plan's status once every action took effect
    status: models.PlanStatus

    def of(self, kind: type[Any]) -> list[Any]:
        """The actions of one kind, in order."""
        return [a for a in self.actions if isinstance(a, kind)]
