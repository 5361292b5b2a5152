"""A turn's decisions: pure functions of the typed plan, its steps and the time; no Postgres or
Redis."""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
import json
import random
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from planfleet import models
from planfleet.planner import formats
from planfleet.planner.plan import Plan, plan
from planfleet.policy import StepPolicy
from planfleet.workers import deciding, retry, revising, sharing
from planfleet.workers import turn_actions as act
from planfleet.workers.deciding import Settings, Snapshot

S = models.StepStatus
P = models.PlanStatus
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
SOLVERS = {"angrav": {"script": "f/solvers/angrav", "capacity": 2},
           "jules": {"script": "f/solvers/jules"}}


def plan_of(tasks: list[dict[str, Any]], **extra: Any) -> Plan:
    doc = {"solvers": SOLVERS, "tasks": tasks, **extra}
    return plan(formats.load(json.dumps(doc).encode(), "tasks.json"))


def chain(**extra: Any) -> Plan:
    """a -> b -> c, and d on its own."""
    return plan_of([{"id": "a", "estimate": 5}, {"id": "b", "estimate": 5, "depends_on": ["a"]},
                    {"id": "c", "estimate": 5, "depends_on": ["b"]}, {"id": "d", "estimate": 5}],
                   **extra)


_ids = itertools.count(1)


def step(task: str, status: S = S.PENDING, *, attempt: int = 1, tries: int = 1,
         solver: str | None = None, script: str = "f/planner/solver_dispatch",
         observed: dict[str, Any] | None = None, ran: float | None = 60.0,
         **fields: Any) -> models.Step:
    """A step of ``task`` (``ran``: seconds since it started, when its job runs)."""
    running = status in (S.DISPATCHED, S.RUNNING, S.NEEDS_QA)
    return models.Step(
        id=next(_ids), plan_id=7, task_id=task, status=status, attempt=attempt, tries=tries,
        windmill_job_id=uuid.uuid4() if running or status is not S.PENDING else None,
        script=script, solver=solver, args={"task_id": task}, result=fields.pop("result", None),
        error=fields.pop("error", None), not_before=None,
        started_at=NOW - dt.timedelta(seconds=ran) if running and ran is not None else None,
        finished_at=None, observed=observed, **fields)


def ended(state: str = "success", result: Any = None, **more: Any) -> dict[str, Any]:
    """What the tracker records of a job's end."""
    return {"state": state, "result": result, "error": None, "duration": 1.5,
            "link": "http://runs/1", "error_type": None, **more}


def snap(p: Plan, *steps: models.Step, status: P = P.BUILDING,
         settings: Settings | None = None) -> Snapshot:
    return Snapshot(7, p, status, {s.task_id: s for s in steps}, NOW, settings or Settings())


def decide(s: Snapshot, seed: int = 1) -> act.TurnDecision:
    return deciding.decide(s, new_job=lambda: uuid.UUID(int=99), rng=random.Random(seed))


def kinds(d: act.TurnDecision) -> list[str]:
    return [type(a).__name__ for a in d.actions if not isinstance(a, act.Log)]


# -- what ended -----------------------------------------------------------------------------


def test_a_success_completes_the_step_and_its_dependents_are_ready() -> None:
    # Given a running a whose job succeeded, b waiting on it, d ready already
    a = step("a", S.RUNNING, observed=ended(result={"answer": 42}))
    b, c = step("b"), step("c")
    d = step("d", ready_at=NOW)
    # When the turn decides
    got = decide(snap(chain(), a, b, c, d))
    # Then a completes with its output, its script's circuit hears of it, and only b is readied
    assert kinds(got) == ["Complete", "CircuitSucceeded", "MarkReady"]
    (done,) = got.of(act.Complete)
    assert done.step == a and done.result == {"value": {"answer": 42}, "duration": 1.5,
                                              "link": "http://runs/1"}
    assert got.of(act.MarkReady) == [act.MarkReady((b.id,))]
    assert got.settled and got.status is P.BUILDING


def test_a_success_of_a_task_with_a_check_goes_to_the_check_written_before_submitted() -> None:
    p = chain(qa="f/checks/review")
    a = step("a", S.RUNNING, observed=ended(result="the output"))
    got = decide(snap(p, a, step("b"), step("c"), step("d")))
    assert kinds(got) == ["NeedsQa", "Submit"]
    needs, submit = got.actions[0], got.actions[2]
    assert isinstance(needs, act.NeedsQa) and isinstance(submit, act.Submit)
    assert needs.qa_job == submit.job == uuid.UUID(int=99)
    assert submit.check and submit.script == "f/checks/review"
    assert submit.timeout == Settings().qa_timeout
    assert submit.args["output"] == "the output" and submit.args["args"] == a.args
    assert submit.step.status is S.NEEDS_QA and submit.step.qa_job_id == needs.qa_job
    assert not got.settled  # the step changed beyond the snapshot: read again


def test_a_passed_check_completes_the_step_keeping_its_own_output() -> None:
    p = chain(qa="f/checks/review")
    a = step("a", S.NEEDS_QA, qa_job_id=uuid.uuid4(), result={"value": "out"},
             observed=ended(result={"passed": True, "notes": "fine"}))
    (done,) = decide(snap(p, a, step("b"), step("c"), step("d"))).of(act.Complete)
    assert done.result == {"value": "out", "qa": {"passed": True, "notes": "fine"}}


def test_a_failed_check_retries_the_task_with_the_findings_as_feedback() -> None:
    p = chain(qa="f/checks/review")
    a = step("a", S.NEEDS_QA, qa_job_id=uuid.uuid4(), result={"value": "out"},
             observed=ended(result={"passed": False, "findings": "no tests"}))
    got = decide(snap(p, a, step("b"), step("c"), step("d")))
    assert kinds(got) == ["Fail"]  # a verdict is no fault of the script: no circuit
    (fail,) = got.of(act.Fail)
    assert fail.error_type == "qa" and fail.retry_in is not None
    assert fail.error == "the quality check failed: no tests"
    assert fail.next_attempt is not None and fail.next_attempt.extra is not None
    (note,) = fail.next_attempt.extra["feedback"]
    assert note["error_type"] == "qa" and note["result"] == {"passed": False,
                                                             "findings": "no tests"}


# -- what retries when, what escalates --------------------------------------------------------


def test_a_failure_with_attempts_left_retries_after_the_policy_backoff() -> None:
    p = chain(policy={"max_attempts": 4, "retry_base": 10, "retry_cap": 100})
    a = step("a", S.RUNNING, attempt=2, tries=2, observed=ended(
        "failure", error="boom", error_type="RuntimeError"))
    got = decide(snap(p, a, step("b"), step("c"), step("d")), seed=5)
    assert kinds(got) == ["CircuitFailed", "Fail"]  # the circuit first, then the record
    (fail,) = got.of(act.Fail)
    expected = retry.decide(2, max_attempts=4, base=10, cap=100, rng=random.Random(5))
    assert fail.retry_in == expected.delay and 16 <= fail.retry_in <= 24  # 10 * 2, ±20 %
    assert fail.error == "boom" and fail.error_type == "error"
    assert fail.result == {"value": None, "link": "http://runs/1"}
    assert fail.next_attempt is not None and fail.next_attempt.extra == {"feedback": [
        {"attempt": 2, "error_type": "error", "error": "boom", "result": None}]}
    assert not got.settled


def test_a_step_reporting_an_error_in_its_result_is_a_failure() -> None:
    a = step("a", S.RUNNING, observed=ended(result={"status": "error", "error_type": "transient",
                                                    "message": "rate limited"}))
    (fail,) = decide(snap(chain(), a, step("b"), step("c"), step("d"))).of(act.Fail)
    assert fail.error_type == "transient" and fail.error == "rate limited"


def test_used_up_attempts_go_to_a_person_or_fail_when_the_file_says_so() -> None:
    a = step("a", S.RUNNING, attempt=3, tries=3, observed=ended("failure", error="boom"))
    rest = (step("b"), step("c"), step("d"))
    got = decide(snap(chain(), a, *rest))
    assert kinds(got) == ["CircuitFailed", "Block", "Event"]
    (block,) = got.of(act.Block)
    assert block.question.startswith("3 attempts failed (last: error: boom).")
    assert got.of(act.Event)[0].kind == "step_blocked"
    failing = decide(snap(chain(policy={"on_exhausted": "fail"}), a, *rest))
    assert kinds(failing) == ["CircuitFailed", "Fail"]
    (fail,) = failing.of(act.Fail)
    assert fail.retry_in is None and fail.next_attempt is None


def test_a_specification_error_asks_a_person_its_question() -> None:
    a = step("a", S.RUNNING, observed=ended(result={
        "status": "error", "error_type": "specification", "message": "unclear",
        "question": "Which database?"}))
    got = decide(snap(chain(), a, step("b"), step("c"), step("d")))
    assert kinds(got) == ["Block", "Event"]  # a question is no fault: no circuit
    (block,) = got.of(act.Block)
    assert block.question == "Which database?" and block.error_type == "specification"
    (event,) = got.of(act.Event)
    assert event.step_id == a.id and event.message == "a needs a person: Which database?"


def test_an_unavailable_agent_hands_the_task_to_the_next_solver_at_once() -> None:
    p = plan_of([{"id": "a", "estimate": 5, "solver": "angrav"}])
    a = step("a", S.RUNNING, solver="angrav", script="f/solvers/angrav",
             observed=ended("failure", error="no seats", error_type="AgentUnavailable"))
    (fail,) = decide(snap(p, a)).of(act.Fail)
    assert fail.retry_in == 0.0 and fail.next_attempt is not None
    assert (fail.next_attempt.solver, fail.next_attempt.script) == ("jules", "f/solvers/jules")
    assert fail.next_attempt.extra is not None and fail.next_attempt.extra["solver"] == "jules"
    # the last solver of the chain: an ordinary retry after a backoff
    last = dataclasses.replace(a, solver="jules", script="f/solvers/jules")
    (again,) = decide(snap(p, last)).of(act.Fail)
    assert again.next_attempt is not None and again.next_attempt.solver is None
    assert again.retry_in is not None and again.retry_in > 0


def test_a_step_past_its_timeout_is_cancelled_then_retried_with_a_longer_one_capped() -> None:
    # Given a step with a 60 s timeout that has run 71 s (10 s of grace)
    a = step("a", S.RUNNING, timeout=60.0, ran=71.0)
    rest = (step("b"), step("c"), step("d"))
    got = decide(snap(chain(), a, *rest))
    # Then its job is cancelled before the attempt is recorded as failed
    assert kinds(got) == ["Cancel", "CircuitFailed", "Fail"]
    assert got.actions[0] == act.Cancel(a.windmill_job_id, "step timeout")
    (fail,) = got.of(act.Fail)
    assert fail.error_type == "timeout" and fail.error == "timed out after 60 s"
    assert fail.next_attempt is not None and fail.next_attempt.timeout == 120.0
    capped = decide(snap(chain(), a, *rest, settings=Settings(timeout_cap=90.0)))
    assert capped.of(act.Fail)[0].next_attempt.timeout == 90.0
    # within the grace, or with no start recorded yet, nothing happens
    assert decide(snap(chain(), dataclasses.replace(
        a, started_at=NOW - dt.timedelta(seconds=69)), *rest)).of(act.Cancel) == []
    assert decide(snap(chain(), dataclasses.replace(a, started_at=None), *rest)).of(
        act.Cancel) == []


def test_a_check_gets_its_own_time_on_top_of_the_step_timeout() -> None:
    p = chain(qa="f/checks/review")
    a = step("a", S.NEEDS_QA, qa_job_id=uuid.uuid4(), timeout=60.0, ran=300.0)
    assert decide(snap(p, a, step("b"), step("c"), step("d"))).of(act.Cancel) == []
    late = dataclasses.replace(a, started_at=NOW - dt.timedelta(seconds=60 + 10 + 300 + 1))
    (cancel,) = decide(snap(p, late, step("b"), step("c"), step("d"))).of(act.Cancel)
    assert cancel.job == a.qa_job_id  # the check's job is the one that runs


def test_a_job_the_dispatcher_does_not_know_is_submitted_again_under_its_id() -> None:
    a = step("a", S.DISPATCHED, timeout=600.0, observed=ended("unknown"))
    got = decide(snap(chain(), a, step("b"), step("c"), step("d")))
    assert kinds(got) == ["ClearObserved", "Submit"]
    (submit,) = got.of(act.Submit)
    assert (submit.job, submit.script, submit.timeout, submit.check) == (
        a.windmill_job_id, a.script, 600.0, False)
    # a check that vanished: the check again, under its own id
    p = chain(qa="f/checks/review")
    q = step("a", S.NEEDS_QA, qa_job_id=uuid.uuid4(), result={"value": 1},
             observed=ended("unknown"))
    (check,) = decide(snap(p, q, step("b"), step("c"), step("d"))).of(act.Submit)
    assert check.check and check.job == q.qa_job_id and check.args["output"] == 1


def test_a_refused_submission_fails_the_step_or_the_check() -> None:
    a = step("a", S.DISPATCHED, observed=ended("unknown"))
    s = snap(chain(qa="f/checks/review"), a, step("b"), step("c"), step("d"))
    (submit,) = decide(s).of(act.Submit)
    got = deciding.refused(s, submit, "no such script", misconfigured=True)
    assert got[:2] == [act.CircuitFailed(a.script, "no such script", misconfigured=True),
                       act.Fail(a, "no such script")]
    check = dataclasses.replace(submit, check=True)
    (fail,) = [x for x in deciding.refused(s, check, "no such script") if isinstance(x, act.Fail)]
    assert fail.error_type == "qa" and fail.retry_in is not None
    assert fail.error == "the quality check f/checks/review could not run: no such script"


# -- a person's decisions, and what follows from what ended ----------------------------------


def test_a_failed_dependency_skips_its_dependents_and_the_plan_fails() -> None:
    a = step("a", S.FAILED, error="boom")
    d = step("d", S.COMPLETED)
    got = decide(snap(chain(), a, step("b"), step("c"), d))
    (skip,) = got.of(act.Skip)
    assert sorted(skip.tasks) == ["b", "c"] and skip.reason == "dependency a failed"
    (finish,) = got.of(act.FinishPlan)
    assert not finish.built and finish.error == "1 failed (a), 2 skipped"
    assert finish.counts == {"failed": 1, "skipped": 2, "completed": 1}
    assert got.status is P.FAILED


def test_a_task_a_person_skipped_lets_its_dependents_go_on() -> None:
    a = step("a", S.SKIPPED, decision={"decision": "skip"})
    b = step("b")
    got = decide(snap(chain(), a, b, step("c"), step("d", S.COMPLETED)))
    assert got.of(act.Skip) == [] and got.of(act.MarkReady) == [act.MarkReady((b.id,))]
    every = {t: step(t, S.COMPLETED) for t in "bcd"}
    done = decide(snap(chain(), a, *every.values()))
    (finish,) = done.of(act.FinishPlan)
    assert finish.built and finish.skipped_by_a_person == ("a",) and done.status is P.BUILT


def test_only_blocked_steps_and_what_waits_on_them_left_block_the_plan() -> None:
    a = step("a", S.BLOCKED, question="Which?")
    d = step("d", S.COMPLETED)
    got = decide(snap(chain(), a, step("b"), step("c"), d))
    assert kinds(got) == ["BlockPlan"] and got.status is P.BLOCKED
    # something still runs, or could start: the plan goes on
    running = step("d", S.RUNNING)
    assert decide(snap(chain(), a, step("b"), step("c"), running)).of(act.BlockPlan) == []
    waiting = step("d")
    assert decide(snap(chain(), a, step("b"), step("c"), waiting)).of(act.MarkReady) == [
        act.MarkReady((waiting.id,))]


def test_a_paused_plan_takes_in_what_ended_and_readies_nothing() -> None:
    a = step("a", S.RUNNING, observed=ended(result=1))
    got = decide(snap(chain(), a, step("b"), step("c"), step("d"), status=P.PAUSED))
    assert kinds(got) == ["Complete", "CircuitSucceeded"]
    assert got.settled and got.status is P.PAUSED
    every = [step(t, S.COMPLETED) for t in "abcd"]
    assert decide(snap(chain(), *every, status=P.PAUSED)).actions == ()  # nor finishes


def test_a_cancelled_plan_cancels_its_running_jobs_then_its_pending_steps() -> None:
    a = step("a", S.RUNNING)
    q = step("d", S.NEEDS_QA, qa_job_id=uuid.uuid4())
    got = decide(snap(chain(), a, step("b"), step("c"), q, status=P.CANCELLED))
    assert kinds(got) == ["Cancel", "CancelStep", "Cancel", "CancelStep", "CancelPending"]
    assert got.actions[0] == act.Cancel(a.windmill_job_id, "plan cancelled")
    assert got.actions[2] == act.Cancel(q.qa_job_id, "plan cancelled")
    assert got.status is P.CANCELLED


def test_every_step_ended_well_builds_the_plan_with_its_counts_and_span() -> None:
    every = {t: step(t, S.COMPLETED) for t in "abcd"}
    got = decide(snap(chain(), *every.values()))
    (finish,) = got.of(act.FinishPlan)
    assert finish == act.FinishPlan(True, None, {"completed": 4})
    attempts = [dataclasses.replace(s, started_at=NOW + dt.timedelta(seconds=i),
                                    finished_at=NOW + dt.timedelta(seconds=10 * i + 5))
                for i, s in enumerate(every.values())]
    assert deciding.summary(finish, attempts) == {
        "counts": {"completed": 4}, "attempts": 4, "seconds": 35.0}


def test_a_plan_does_not_end_while_a_step_of_a_task_its_source_removed_runs_on() -> None:
    every = [step(t, S.COMPLETED) for t in "abcd"]
    s = dataclasses.replace(snap(chain(), *every), removed_running=True)
    got = decide(s)
    assert got.actions == () and got.settled and got.status is P.BUILDING


# -- the build follows the schedule the planner predicted ------------------------------------


def _tasks(rng: random.Random) -> list[dict[str, Any]]:
    n = rng.randint(4, 18)
    out = []
    for j in range(n):
        deps = rng.sample(range(j), k=min(j, rng.randint(0, 2)))
        task: dict[str, Any] = {"id": f"t{j}", "estimate": rng.randint(1, 9),
                                "depends_on": [f"t{i}" for i in deps],
                                "priority": rng.choice(["high", "normal", "low"])}
        if rng.random() < 0.4:
            task["solver"] = rng.choice(["angrav", "jules"])
        if rng.random() < 0.1:
            task["parallel"] = False
        out.append(task)
    return out


def _build_alone(p: Plan) -> dict[str, float]:
    """Drive the build's turns and the fleet's dispatch policy for a plan running alone, each
    job taking its estimate (a minute a second): the minute each task started."""
    define = revising.definer(7, p, StepPolicy())
    steps = {t: step(t, solver=r["solver"], script=r["script"])
             for t, r in ((t, define(t)) for t in p.tasks)}
    rank = {t: i for i, t in enumerate(p.priority_order)}
    caps = {n: s.capacity for n, s in p.solvers.items() if s.capacity}
    start: dict[str, float] = {}
    ends: list[tuple[float, str]] = []
    t = 0.0
    for _ in _bounded():
        now = NOW + dt.timedelta(seconds=t)
        d = deciding.decide(Snapshot(7, p, P.BUILDING, steps, now))
        for a in d.actions:  # what the store would do
            if isinstance(a, act.MarkReady):
                for s in steps.values():
                    if s.id in a.step_ids:
                        steps[s.task_id] = dataclasses.replace(s, ready_at=now)
            elif isinstance(a, act.Complete):
                steps[a.step.task_id] = dataclasses.replace(a.step, status=S.COMPLETED,
                                                            observed=None)
        if d.status is P.BUILT:
            return start
        assert d.settled
        active = [s for s in steps.values() if s.active]
        by_solver: dict[str, int] = {}
        for s in active:
            if s.solver:
                by_solver[s.solver] = by_solver.get(s.solver, 0) + 1
        state = sharing.PlanState(
            max_parallel=p.max_parallel, active=len(active), active_by_solver=by_solver,
            alone_active=any(not p.tasks[s.task_id].parallel for s in active), caps=caps)
        ready = [sharing.Candidate(s.id, 7, s.task_id, s.solver,
                                   p.tasks[s.task_id].effective_priority, rank[s.task_id], 0.0,
                                   not p.tasks[s.task_id].parallel)
                 for s in steps.values() if s.status is S.PENDING and s.ready_at is not None]
        for c in sharing.choose(ready, {7: state}, sharing.Fleet(free=10**6), aging=0):
            steps[c.task_id] = dataclasses.replace(steps[c.task_id], status=S.RUNNING,
                                                   started_at=now)
            start[c.task_id] = t
            heapq.heappush(ends, (t + p.tasks[c.task_id].estimate, c.task_id))
        if not ends:
            continue  # the steps readied just now start in the next round
        t, task = heapq.heappop(ends)
        finished = [task]
        while ends and ends[0][0] <= t:
            finished.append(heapq.heappop(ends)[1])
        for f in finished:
            steps[f] = dataclasses.replace(steps[f], observed=ended(result=f))
    raise AssertionError("the build never ended")


def _bounded() -> Iterator[int]:
    return iter(range(10_000))


@pytest.mark.parametrize("seed", range(12))
def test_a_plan_running_alone_starts_its_tasks_when_its_schedule_predicted(seed: int) -> None:
    rng = random.Random(seed)
    p = plan_of(_tasks(rng), max_parallel=rng.randint(1, 4))
    started = _build_alone(p)
    predicted: Mapping[str, float] = {t: slot.start for t, slot in p.schedule.items()}
    assert started == pytest.approx(predicted)
