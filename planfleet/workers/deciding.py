"""A plan's turn, decided: what ended, what retries when, what escalates to a person, what is
cancelled, what is ready to compete for a slot.

Pure functions of plain data — the typed plan (:class:`planfleet.planner.plan.Plan`), its
latest steps as read, the fleet's settings and the time — that return the actions of
:mod:`planfleet.workers.turn_actions`, in the order they must take effect. Nothing here reads
or writes: :class:`planfleet.workers.building.Build` reads the steps, calls :func:`decide` and
applies what it returns (procrastinate's ``get_retry_decision`` is the model). Which ready
steps start, under the fleet's capacity and fairness, is :func:`planfleet.workers.sharing.choose`,
the dispatch policy the planner's schedule simulation follows too.

A turn, decided on one snapshot of the plan's steps:

1. pending tasks that wait on a task that ended badly are skipped;
2. each step whose job runs is looked at: what the tracker saw its job end with (a success
   completes it or sends it to its quality check; a failure retries it after a backoff, with a
   longer timeout or on the next solver, or hands it to a person), or its timeout (the job is
   cancelled and the attempt fails); a job the dispatcher does not know is submitted again
   under the same id;
3. when step 2 wrote rows the snapshot cannot show (a retry's next attempt, a check's job),
   the decision is not *settled*: the caller applies it, reads again and decides once more;
4. otherwise, a plan that is building ends (every step ended: built or failed), waits for a
   person (only blocked steps and what waits on them are left), or marks the pending steps
   whose dependencies are all done as ready. A paused plan stops after step 2.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from planfleet import defaults, models
from planfleet.dispatch import JobState
from planfleet.planner.plan import Plan
from planfleet.policy import StepPolicy, effective
from planfleet.schema.repositories import NextAttempt
from planfleet.workers import outcomes, retry
from planfleet.workers import turn_actions as act

if TYPE_CHECKING:
    from planfleet.config import Config

S = models.StepStatus
P = models.PlanStatus
#: Why a cancelled plan's steps end.
PLAN_CANCELLED = "plan cancelled"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The fleet's settings a turn's decisions read."""

    #: the fleet's step policy (a task file's ``policy`` and a task's own go on top)
    policy: StepPolicy = StepPolicy()
    #: seconds past a step's timeout before its job is given up on and cancelled
    timeout_grace: float = defaults.TIMEOUT_GRACE
    #: seconds a quality check may run
    qa_timeout: float = defaults.QA_TIMEOUT
    #: a timed-out step's next timeout is never longer than this
    timeout_cap: float = defaults.TIMEOUT_CAP

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        return cls(policy=config.step_policy(), timeout_grace=config.timeout_grace,
                   qa_timeout=config.qa_timeout, timeout_cap=config.timeout_cap)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What a turn decides on."""

    plan_id: int
    plan: Plan
    #: building, paused or cancelled (a plan in any other status takes no turns)
    status: models.PlanStatus
    #: the latest attempt of each task, by task id
    steps: Mapping[str, models.Step]
    now: dt.datetime
    settings: Settings = Settings()
    #: a step of a task its source no longer has still runs (``on_removed: finish``): the
    #: plan does not end before it does
    removed_running: bool = False

    def policy(self, task_id: str) -> StepPolicy:
        """The task's effective step policy (the fleet's, the file's, the task's own)."""
        task = self.plan.tasks[task_id]
        return effective(self.settings.policy, self.plan.policy, task.max_attempts, task.timeout)

    def timeout(self, step: models.Step) -> float:
        """Seconds the step's attempt may run (its own, when a retry lengthened it)."""
        if step.timeout:
            return float(step.timeout)
        return self.policy(step.task_id).timeout


#: Makes the id of a job about to be written down (uuid4; tests pass their own).
NewJob = Callable[[], uuid.UUID]


def decide(snap: Snapshot, *, new_job: NewJob = uuid.uuid4,
           rng: random.Random | None = None) -> act.TurnDecision:
    """One turn of the plan, decided on ``snap`` (``rng``: the retries' jitter)."""
    if snap.status is P.CANCELLED:
        return act.TurnDecision(tuple(cancel_all(snap.steps)), settled=True, status=P.CANCELLED)
    steps = dict(snap.steps)
    actions: list[act.Action] = []
    for skip in skips(snap.plan, steps):
        actions.append(skip)
        for t in skip.tasks:  # exactly what the guarded write does
            steps[t] = dataclasses.replace(steps[t], status=S.SKIPPED, error=skip.reason)
    settled = True
    for step in [s for s in steps.values() if s.active]:
        done, view = collect(snap, step, new_job=new_job, rng=rng)
        actions += done
        if view is None:
            settled = False
        else:
            steps[step.task_id] = view
    if not settled or snap.status is not P.BUILDING:  # paused: nothing new is readied
        return act.TurnDecision(tuple(actions), settled=settled, status=snap.status)
    ending, status = endings(snap.plan, steps, removed_running=snap.removed_running)
    return act.TurnDecision(tuple(actions + ending), settled=True, status=status)


# -- what ended ---------------------------------------------------------------------------


def collect(snap: Snapshot, step: models.Step, *, new_job: NewJob = uuid.uuid4,
            rng: random.Random | None = None) -> tuple[list[act.Action], models.Step | None]:
    """What to do about a step whose job runs: the actions, and the step once they took
    effect (None: it must be read again; the step itself when nothing is to be done)."""
    if step.observed is None:
        timeout = snap.timeout(step)
        limit = (timeout + snap.settings.timeout_grace
                 + (snap.settings.qa_timeout if step.status is S.NEEDS_QA else 0.0))
        if step.started_at is None or (snap.now - step.started_at).total_seconds() <= limit:
            return [], step
        return [act.Cancel(step.job, "step timeout"), *failed(snap, step, outcomes.Outcome(
            "error", outcomes.TIMEOUT, f"timed out after {timeout:g} s"), None, rng=rng)], None
    status = outcomes.job_status(step.observed)
    if status.state is JobState.UNKNOWN:
        # written down but never submitted (the worker died in between), or lost by the
        # runner: submitted now, under the same id (so at most one job)
        again = (quality_check(snap, step, step.job) if step.status is S.NEEDS_QA
                 else act.Submit(step, step.job, step.script, dict(step.args), snap.timeout(step)))
        return [act.ClearObserved(step), again], None
    succeeded = status.state is JobState.SUCCESS
    if succeeded and step.status is S.NEEDS_QA and not passed(status.result):
        findings = status.result.get("findings") if isinstance(status.result, dict) else None
        return failed(snap, step, outcomes.Outcome(
            "error", "qa", f"the quality check failed: {findings or status.result}",
            value=status.result), status.link, rng=rng), None
    if not (succeeded and outcomes.classify(status).status != "error"):
        # failed, or succeeded reporting an error
        return failed(snap, step, outcomes.classify(status), status.link, rng=rng), None
    task = snap.plan.tasks[step.task_id]
    result = {"value": status.result, "duration": status.duration, "link": status.link}
    if step.status is not S.NEEDS_QA and task.qa:
        return send_to_check(snap, step, result, new_job()), None
    if step.status is S.NEEDS_QA:  # the check passed: the step's own output stays
        result = {**(step.result or {}), "qa": status.result}
    return [
        act.Complete(step, result),
        act.CircuitSucceeded(step.script),
        act.Log("step_completed", "info", {"task_id": step.task_id, "step_id": step.id,
                                           "attempt": step.attempt}),
    ], dataclasses.replace(step, status=S.COMPLETED, result=result)


def send_to_check(snap: Snapshot, step: models.Step, result: dict[str, Any],
                  qa_job: uuid.UUID) -> list[act.Action]:
    """The job succeeded: its output goes to the task's quality check (needs_qa), whose job id
    is written before the check is submitted."""
    checking = dataclasses.replace(step, status=S.NEEDS_QA, qa_job_id=qa_job, result=result)
    return [
        act.NeedsQa(step, qa_job, result),
        act.Log("step_needs_qa", "info", {"task_id": step.task_id, "step_id": step.id,
                                          "qa": snap.plan.tasks[step.task_id].qa}),
        quality_check(snap, checking, qa_job),
    ]


def quality_check(snap: Snapshot, step: models.Step, qa_job: uuid.UUID) -> act.Submit:
    """The submission of a step's quality check: its output, and the args it was given."""
    task = snap.plan.tasks[step.task_id]
    output = (step.result or {}).get("value")
    args = {"task_id": step.task_id, "plan_id": snap.plan_id, "title": task.title,
            "output": output, "args": dict(step.args)}
    return act.Submit(step, qa_job, task.qa or "", args, snap.settings.qa_timeout, check=True)


def refused(snap: Snapshot, submit: act.Submit, error: str, *, misconfigured: bool = False,
            rng: random.Random | None = None) -> list[act.Action]:
    """A submission was refused for good: a step's job fails (its circuit hears of it); a
    check that cannot run fails the attempt like a failed check."""
    step = submit.step
    if submit.check:
        qa = snap.plan.tasks[step.task_id].qa
        return failed(snap, step, outcomes.Outcome(
            "error", "qa", f"the quality check {qa} could not run: {error}"), None, rng=rng)
    return [
        act.CircuitFailed(submit.script, error, misconfigured=misconfigured),
        act.Fail(step, error),
        act.Log("step_dispatch_failed", "error", {"task_id": step.task_id, "error": error}),
    ]


# -- what retries, and what a person decides ----------------------------------------------


def failed(snap: Snapshot, step: models.Step, outcome: outcomes.Outcome, link: str | None, *,
           rng: random.Random | None = None) -> list[act.Action]:
    """A failed attempt, by its class: retried (with feedback, a longer timeout or on the next
    solver), blocked for a person (a question, or the attempts used up), or failed for good."""
    kind = outcome.error_type or outcomes.ERROR
    error = outcome.message or "failed"
    out: list[act.Action] = []
    if kind not in (outcomes.SPECIFICATION, "qa"):  # a question or a verdict: not a fault
        out.append(act.CircuitFailed(step.script, error))
    result = {"value": outcome.value, "link": link}
    feedback = [*(step.args.get("feedback") or []), {
        "attempt": step.attempt, "error_type": kind, "error": error[:2000],
        "result": outcome.value}]
    nxt = NextAttempt(extra={"feedback": feedback})
    policy = snap.policy(step.task_id)
    decision = retry.decide(step.tries, max_attempts=policy.max_attempts,
                            base=policy.retry_base, cap=policy.retry_cap, rng=rng)
    question = None
    if kind == outcomes.SPECIFICATION:
        question = outcome.question or error
    elif kind == outcomes.AGENT_UNAVAILABLE and (other := next_solver(snap.plan, step)):
        solver, script = other
        nxt = NextAttempt(solver=solver, script=script,
                          extra={"feedback": feedback, "solver": solver})
        decision = retry.Decision(retry=True, delay=0.0)  # another agent: at once
    elif kind == outcomes.TIMEOUT and decision.retry:
        longer = min(snap.timeout(step) * policy.timeout_factor, snap.settings.timeout_cap)
        nxt = NextAttempt(timeout=longer, extra={"feedback": feedback})
    ids = {"task_id": step.task_id, "step_id": step.id, "attempt": step.attempt}
    if question is None and not decision.retry:
        if policy.on_exhausted == "fail":
            return [*out, act.Fail(step, error, kind, result),
                    act.Log("step_failed", "warning", {**ids, "error": error[:300],
                                                        "error_type": kind, "retry": False})]
        question = (f"{step.tries} attempts failed (last: {kind}: {error[:300]}). "
                    "Retry (with a note for the solver), skip it, or fail it?")
    if question is not None:
        return [
            *out,
            act.Block(step, question, error, kind, result),
            act.Event("step_blocked", f"{step.task_id} needs a person: {question}",
                      step_id=step.id, data={"task_id": step.task_id, "error_type": kind}),
            act.Log("step_blocked", "warning", {**ids, "error_type": kind,
                                                "question": question[:300]}),
        ]
    return [*out, act.Fail(step, error, kind, result, retry_in=decision.delay, next_attempt=nxt),
            act.Log("step_failed", "warning", {**ids, "error": error[:300], "error_type": kind,
                                                "retry": True,
                                                "delay": round(decision.delay, 3)})]


def next_solver(plan: Plan, step: models.Step) -> tuple[str, str] | None:
    """The solver after this step's one in the task's fallback list (a task naming one solver
    falls back along the task file's ``solvers`` order), and its script."""
    task = plan.tasks[step.task_id]
    chain: list[str] = list(task.solver or [])
    if len(chain) <= 1:
        chain = (plan.solver_order or list(plan.solvers)) or chain
    if step.solver not in chain or chain.index(step.solver) + 1 >= len(chain):
        return None
    nxt = chain[chain.index(step.solver) + 1]
    spec = plan.solvers.get(nxt)
    return nxt, (spec.script if spec else None) or task.script


# -- what follows from what ended ---------------------------------------------------------


def skips(plan: Plan, steps: Mapping[str, models.Step]) -> list[act.Skip]:
    """Pending tasks that wait, directly or not, on a task that ended badly (one skip per
    task that ended badly)."""
    dead = [t for t, s in steps.items()
            if s.status in (S.FAILED, S.SKIPPED, S.CANCELLED) and not done(s)]
    if not dead:
        return []
    kids = children(plan)
    doomed: dict[str, str] = {}
    stack = [(c, t) for t in dead for c in kids[t]]
    while stack:
        t, cause = stack.pop()
        if t in doomed or steps[t].status is not S.PENDING:
            continue
        doomed[t] = cause
        stack += [(c, cause) for c in kids[t]]
    by_cause: dict[str, list[str]] = {}
    for t, cause in doomed.items():
        by_cause.setdefault(cause, []).append(t)
    return [act.Skip(tuple(tasks), cause) for cause, tasks in by_cause.items()]


def endings(plan: Plan, steps: Mapping[str, models.Step], *, removed_running: bool = False
            ) -> tuple[list[act.Action], models.PlanStatus]:
    """A building plan after what ended was taken in: finished, blocked for a person, or its
    newly ready steps marked; and its status then."""
    if all(s.terminal for s in steps.values()) and not removed_running:
        ending = finish(steps)
        return [ending], P.BUILT if ending.built else P.FAILED
    if any(s.status is S.BLOCKED for s in steps.values()) and stuck(plan, steps):
        return [act.BlockPlan()], P.BLOCKED
    ready = [s.id for t, s in steps.items()
             if s.status is S.PENDING and s.ready_at is None
             and all(done(steps[d]) for d in plan.tasks[t].depends_on)]
    return ([act.MarkReady(tuple(ready))] if ready else []), P.BUILDING


def finish(steps: Mapping[str, models.Step]) -> act.FinishPlan:
    """Every step ended: built when every task is done, else failed, with what failed."""
    counts: dict[str, int] = {}
    for s in steps.values():
        counts[s.status.value] = counts.get(s.status.value, 0) + 1
    by_person = tuple(sorted(t for t, s in steps.items() if s.status is S.SKIPPED and done(s)))
    built = all(done(s) for s in steps.values())
    error = None
    if not built:
        failed_ = sorted(t for t, s in steps.items() if s.status is S.FAILED)
        skipped = sorted(t for t, s in steps.items() if s.status is S.SKIPPED and not done(s))
        error = f"{len(failed_)} failed ({', '.join(failed_[:10])}), {len(skipped)} skipped"
    return act.FinishPlan(built, error, counts, by_person)


def summary(ending: act.FinishPlan, every: Sequence[models.Step]) -> dict[str, Any]:
    """The build summary stored with a finished plan (``every``: all attempts of every task)."""
    starts = [s.started_at for s in every if s.started_at]
    ends = [s.finished_at for s in every if s.finished_at]
    build: dict[str, Any] = {
        "counts": dict(ending.counts),
        "attempts": len(every),
        "seconds": (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0,
    }
    if ending.skipped_by_a_person:
        build["skipped_by_a_person"] = list(ending.skipped_by_a_person)
    return build


def stuck(plan: Plan, steps: Mapping[str, models.Step]) -> bool:
    """Nothing runs, and nothing can start until a person decides on a blocked step."""
    if any(s.active for s in steps.values()):
        return False
    blocked = {t for t, s in steps.items() if s.status is S.BLOCKED}
    kids = children(plan)
    waiting: set[str] = set()
    stack = [c for t in blocked for c in kids[t]]
    while stack:
        t = stack.pop()
        if t not in waiting and steps[t].status is S.PENDING:
            waiting.add(t)
            stack += kids[t]
    return all(s.terminal or t in blocked or t in waiting for t, s in steps.items())


def cancel_all(steps: Mapping[str, models.Step], reason: str = PLAN_CANCELLED
               ) -> list[act.Action]:
    """The plan is cancelled: every running job is cancelled before its step ends, then the
    pending steps end."""
    out: list[act.Action] = []
    for s in steps.values():
        if s.active:
            out += [act.Cancel(s.job, reason), act.CancelStep(s, reason)]
    return [*out, act.CancelPending(reason), act.Log("build_cancelled")]


# -- small facts --------------------------------------------------------------------------


def children(plan: Plan) -> dict[str, list[str]]:
    """The tasks that depend on each task."""
    kids: dict[str, list[str]] = {t: [] for t in plan.tasks}
    for t, task in plan.tasks.items():
        for d in task.depends_on:
            kids[d].append(t)
    return kids


def done(step: models.Step) -> bool:
    """Completed, or skipped by a person (its dependents go on as if it were done)."""
    return step.status is S.COMPLETED or (
        step.status is S.SKIPPED and (step.decision or {}).get("decision") == "skip")


def passed(result: Any) -> bool:
    """A quality check's verdict: ``{"passed": true, ...}`` (or a bare ``true``)."""
    if isinstance(result, dict):
        return result.get("passed") is True
    return result is True

