"""Applying a turn's decision: order, and a guarded write that matches nothing stops the rest
(fakes of the store and the dispatcher; no Postgres or Redis)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, cast

from planfleet import models
from planfleet.config import Config
from planfleet.dispatch import Dispatcher, DispatchError, Submission
from planfleet.schema.repositories import Store
from planfleet.workers.building import Build
from tests.unit.test_deciding import chain, ended, step

S = models.StepStatus
NOW = dt.datetime.now(dt.UTC)


class FakeSteps:
    """The reads a turn makes, one snapshot after another, and the writes it asks for."""

    def __init__(self, reads: list[dict[str, models.Step]], misses: set[str]) -> None:
        self.reads, self.misses = reads, misses
        self.calls: list[tuple[Any, ...]] = []

    def latest(self, plan_id: int) -> dict[str, models.Step]:
        return self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]

    def finish(self, step_id: int, status: S, **kw: Any) -> bool:
        self.calls.append(("finish", step_id, status))
        return "finish" not in self.misses

    def needs_qa(self, step_id: int, qa_job: Any, result: Any) -> bool:
        self.calls.append(("needs_qa", step_id))
        return "needs_qa" not in self.misses

    def mark_ready(self, ids: list[int]) -> None:
        self.calls.append(("mark_ready", tuple(ids)))


class FakeDispatcher:
    def __init__(self) -> None:
        self.sent: list[Submission] = []

    def submit_many(self, jobs: Sequence[Submission]) -> dict[uuid.UUID, DispatchError | None]:
        self.sent += jobs
        return {}


class FakeCircuits:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def get(self, scripts: list[str]) -> dict[str, models.Circuit]:
        self.calls.append("get")
        return {}


def build(steps: FakeSteps, qa: bool = False) -> tuple[Build, FakeDispatcher, FakeCircuits]:
    p = chain(qa="f/checks/review") if qa else chain()
    circuits = FakeCircuits()
    store = cast(Store, type("FakeStore", (), {"steps": steps, "circuits": circuits})())
    record = models.PlanRecord(7, None, models.PlanStatus.BUILDING, {}, "d", None, "w", None,
                               1, NOW, NOW, plan=p.model_dump())
    dispatcher = FakeDispatcher()
    return (Build(store, cast(Dispatcher, dispatcher), Config(), record, "w", p), dispatcher,
            circuits)


def test_a_completion_that_matches_nothing_stops_and_the_turn_decides_on_a_fresh_read() -> None:
    # Given a's job succeeded, but its step was moved on meanwhile (the guarded write misses)
    a = step("a", S.RUNNING, observed=ended(result=1), ran=None)
    b, c, d = step("b"), step("c"), step("d", S.COMPLETED)
    moved = dataclasses.replace(a, status=S.COMPLETED, observed=None)
    steps = FakeSteps([{"a": a, "b": b, "c": c, "d": d},
                       {"a": moved, "b": b, "c": c, "d": d}], misses={"finish"})
    turn, _, circuits = build(steps)
    # When the turn runs
    status = turn.turn()
    # Then nothing after the missed write was applied (no circuit success), and the fresh read
    # readied b
    assert steps.calls == [("finish", a.id, S.COMPLETED), ("mark_ready", (b.id,))]
    assert circuits.calls == []
    assert status is models.PlanStatus.BUILDING


def test_a_check_is_not_submitted_when_its_job_id_could_not_be_written() -> None:
    a = step("a", S.RUNNING, observed=ended(result=1), ran=None)
    rest = {"b": step("b"), "c": step("c"), "d": step("d", S.COMPLETED)}
    # another turn sent it to its check meanwhile: its write here matches nothing
    elsewhere = dataclasses.replace(a, status=S.NEEDS_QA, qa_job_id=uuid.uuid4(), observed=None)
    steps = FakeSteps([{"a": a, **rest}, {"a": elsewhere, **rest}], misses={"needs_qa"})
    turn, dispatcher, _ = build(steps, qa=True)
    turn.turn()
    assert ("needs_qa", a.id) in steps.calls and dispatcher.sent == []
    # written first, then sent
    steps = FakeSteps([{"a": a, **rest}, {"a": dataclasses.replace(
        a, status=S.NEEDS_QA, observed=None), **rest}], misses=set())
    turn, dispatcher, _ = build(steps, qa=True)
    turn.turn()
    assert steps.calls[0] == ("needs_qa", a.id) and len(dispatcher.sent) == 1
    assert dispatcher.sent[0].script == "f/checks/review"
