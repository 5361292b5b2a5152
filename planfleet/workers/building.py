"""A plan's turn: what the build workers do with a plan, a short step at a time.

No process waits on a plan. A turn takes in what the tracker saw the plan's jobs end with (a
success goes on, or to its quality check; a failure gets its next attempt after a backoff, is
handed to a person, or fails for good and skips its dependents), resubmits a job that vanished
(same id, so at most one job), cancels a job past its timeout, then marks which pending steps
have every dependency done. Which of those start, across every plan of the fleet, is decided
by :mod:`planfleet.workers.dispatching` under the fleet's capacity. A step's job id is written
to Postgres before the job is submitted, and submitting an id twice is a no-op, so a turn lost
with its worker is simply taken again.

Two turns of one plan never overlap: a turn holds the plan's advisory lock; a turn asked for
while another runs leaves a wish (``plans.turn_wanted``) that makes the running one go round
once more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import structlog

from planfleet import models
from planfleet.config import Config
from planfleet.dispatch import Dispatcher, JobState, JobStatus, Submission
from planfleet.planner.plan import Plan, PlanTask
from planfleet.policy import StepPolicy, effective
from planfleet.schema.repositories import NextAttempt, Store
from planfleet.workers import outcomes, retry, revising
from planfleet.workers.circuits import Breakers

log = structlog.get_logger(__name__)
S = models.StepStatus
#: Seconds a step is dispatched before it is recorded as running (a step that ends sooner
#: goes from dispatched straight to its outcome: one statement fewer per short step).
RUNNING_AFTER = 1.0
#: Seconds between a flow build's heartbeats (well under the staleness threshold).
HEARTBEAT_EVERY = 1.0


def job_status(observed: Mapping[str, Any]) -> JobStatus:
    """A job's end as the tracker recorded it."""
    return JobStatus(JobState(observed["state"]), result=observed.get("result"),
                     error=observed.get("error"), duration=observed.get("duration"),
                     link=observed.get("link"), error_type=observed.get("error_type"))


def observation(status: JobStatus) -> dict[str, Any]:
    """What the tracker records of a job's end (the inverse of :func:`job_status`)."""
    return {"state": str(status.state), "result": status.result, "error": status.error,
            "duration": status.duration, "link": status.link, "error_type": status.error_type}


class Build:
    """The turns of one plan (and what a flow build shares with them)."""

    def __init__(
        self, store: Store, dispatcher: Dispatcher, config: Config, record: models.PlanRecord,
        worker: str, plan: Plan | None = None,
    ) -> None:
        assert record.plan is not None
        self.store, self.dispatcher, self.config = store, dispatcher, config
        self.plan_id = record.id
        self.status = record.status
        self.worker = worker
        self.plan = plan or Plan.model_validate(record.plan)
        self.tasks: Mapping[str, PlanTask] = self.plan.tasks
        self.solvers = self.plan.solvers
        self.solver_order: list[str] = self.plan.solver_order or list(self.solvers)
        self._fleet_policy = config.step_policy()
        self._policies: dict[str, StepPolicy] = {}
        self._removed_running = False
        self.children: dict[str, list[str]] = {t: [] for t in self.tasks}
        for t, task in self.tasks.items():
            for d in task.depends_on:
                self.children[d].append(t)
        self.log = log.bind(plan_id=self.plan_id, worker=worker)
        self.breakers = Breakers(store, {task.script for task in self.tasks.values()},
                                 threshold=config.circuit_threshold,
                                 cooldown=config.circuit_cooldown)

    def policy(self, task_id: str) -> StepPolicy:
        """The task's effective step policy (the fleet's, the file's, the task's own)."""
        got = self._policies.get(task_id)
        if got is None:
            task = self.tasks[task_id]
            got = self._policies[task_id] = effective(
                self._fleet_policy, self.plan.policy, task.max_attempts, task.timeout)
        return got

    # -- a turn ---------------------------------------------------------------------------

    def turn(self) -> models.PlanStatus:
        """One turn of a plan that moves in turns (building, paused or cancelled)."""
        if self.status is models.PlanStatus.CANCELLED:
            return self._lost()
        steps = self._reload()
        if self._collect(steps):
            steps = self._reload()
        if self.status is not models.PlanStatus.BUILDING:
            return self.status  # paused: running steps end; nothing new is readied
        if all(s.terminal for s in steps.values()) and not self._removed_running:
            return self._finish(steps)
        if any(s.status is S.BLOCKED for s in steps.values()) and self._stuck(steps):
            return self._block()
        self._mark_ready(steps)
        return self.status

    def start(self) -> bool:
        """queued -> building: the first attempt of every task (nothing for tasks a previous
        run started), then the plan moves in turns."""
        self._create_steps()
        caps = {n: s.capacity for n, s in self.solvers.items() if s.capacity}
        if not self.store.plans.start_turns(self.plan_id, self.plan.max_parallel, caps):
            return False
        self.status = models.PlanStatus.BUILDING
        self.log.info("build_started", action="build", tasks=len(self.tasks))
        return True

    def _create_steps(self) -> None:
        """The first attempt of every task (nothing for tasks a previous worker started)."""
        define = revising.definer(self.plan_id, self.plan, self._fleet_policy)
        self.store.steps.create(self.plan_id, [define(t) for t in self.tasks])

    def _mark_ready(self, steps: Mapping[str, models.Step]) -> None:
        """Pending steps whose dependencies are all done compete for slots from now on."""
        self.store.steps.mark_ready([
            s.id for t, s in steps.items()
            if s.status is S.PENDING and s.ready_at is None
            and all(_done(steps[d]) for d in self.tasks[t].depends_on)])

    def _collect(self, steps: dict[str, models.Step]) -> bool:
        """Act on what the tracker saw the running steps' jobs do, and on timeouts. Returns
        whether the steps changed beyond what ``steps`` shows."""
        changed = False
        now = dt.datetime.now(dt.UTC)
        for step in [s for s in steps.values() if s.active]:
            job_id = step.job
            if step.observed is None:
                limit = (self._timeout(step.task_id, step) + self.config.timeout_grace
                         + (self.config.qa_timeout if step.status is S.NEEDS_QA else 0.0))
                if step.started_at is not None and (now - step.started_at).total_seconds() > limit:
                    self.dispatcher.cancel(job_id, "step timeout")
                    self._failed(step, outcomes.Outcome(
                        "error", outcomes.TIMEOUT,
                        f"timed out after {self._timeout(step.task_id, step):g} s"), None)
                    changed = True
                continue
            status = job_status(step.observed)
            if status.state is JobState.UNKNOWN:
                # written down but never submitted (the worker died in between), or lost by
                # the runner: submit now, under the same id (so at most one job)
                self.store.steps.clear_observed(step.id)
                if step.status is S.NEEDS_QA:
                    self._submit_qa(step, job_id)
                else:
                    self._resubmit(step, job_id)
                changed = True
            elif (status.state is JobState.SUCCESS and step.status is S.NEEDS_QA
                  and not _passed(status.result)):
                findings = status.result.get("findings") if isinstance(status.result,
                                                                         dict) else None
                self._failed(step, outcomes.Outcome(
                    "error", "qa", f"the quality check failed: {findings or status.result}",
                    value=status.result), status.link)
                changed = True
            elif (status.state is JobState.SUCCESS and step.status is not S.NEEDS_QA
                  and outcomes.classify(status).status != "error"
                  and self.tasks[step.task_id].qa):
                self._check_quality(steps, step, status)
                changed = True
            elif (status.state is JobState.SUCCESS
                  and outcomes.classify(status).status != "error"):
                result = {"value": status.result, "duration": status.duration,
                          "link": status.link}
                if step.status is S.NEEDS_QA:  # the check passed: the step's own output stays
                    result = {**(step.result or {}), "qa": status.result}
                if self.store.steps.finish(step.id, S.COMPLETED, result=result):
                    steps[step.task_id] = dataclasses.replace(step, status=S.COMPLETED)
                else:
                    changed = True
                self.breakers.succeeded(step.script)
                self.log.info("step_completed", action="build", task_id=step.task_id,
                              step_id=step.id, attempt=step.attempt)
            else:  # failed, or succeeded reporting an error
                self._failed(step, outcomes.classify(status), status.link)
                changed = True
        return changed

    def _resubmit(self, step: models.Step, job_id: uuid.UUID) -> None:
        errors = self.dispatcher.submit_many([
            Submission(job_id, step.script, dict(step.args), self._timeout(step.task_id, step))])
        exc = errors.get(job_id)
        if exc is not None and exc.permanent:
            self.breakers.failed(step.script, str(exc), misconfigured=exc.misconfigured)
            self.store.steps.finish(step.id, S.FAILED, error=str(exc))
            self.log.error("step_dispatch_failed", action="build", task_id=step.task_id,
                           error=str(exc))

    def _check_quality(self, steps: dict[str, models.Step], step: models.Step,
                       status: JobStatus) -> None:
        """The job succeeded: its output goes to the task's quality check (needs_qa)."""
        qa_job = uuid.uuid4()
        result = {"value": status.result, "duration": status.duration, "link": status.link}
        if not self.store.steps.needs_qa(step.id, qa_job, result):
            return
        step = dataclasses.replace(step, status=S.NEEDS_QA, qa_job_id=qa_job, result=result)
        steps[step.task_id] = step
        self.log.info("step_needs_qa", action="build", task_id=step.task_id, step_id=step.id,
                      qa=self.tasks[step.task_id].qa)
        self._submit_qa(step, qa_job)

    def _submit_qa(self, step: models.Step, qa_job: uuid.UUID) -> None:
        task = self.tasks[step.task_id]
        output = (step.result or {}).get("value")
        args = {"task_id": step.task_id, "plan_id": self.plan_id, "title": task.title,
                "output": output, "args": dict(step.args)}
        errors = self.dispatcher.submit_many(
            [Submission(qa_job, task.qa or "", args, self.config.qa_timeout)])
        exc = errors.get(qa_job)
        if exc is not None and exc.permanent:
            self._failed(step, outcomes.Outcome("error", "qa", f"the quality check {task.qa} "
                                                f"could not run: {exc}"), None)

    def _timeout(self, task_id: str, step: models.Step | None = None) -> float:
        if step is not None and step.timeout:
            return float(step.timeout)
        return self.policy(task_id).timeout

    def _failed(self, step: models.Step, outcome: outcomes.Outcome, link: str | None) -> None:
        """Act on a failed attempt by its class: retry (with feedback, a longer timeout or the
        next solver), or block it for a person (a question, or attempts exhausted)."""
        kind = outcome.error_type or outcomes.ERROR
        if kind not in (outcomes.SPECIFICATION, "qa"):  # a question or a verdict: not a fault
            self.breakers.failed(step.script, outcome.message or "failed")
        error = outcome.message or "failed"
        result = {"value": outcome.value, "link": link}
        feedback = [*(step.args.get("feedback") or []), {
            "attempt": step.attempt, "error_type": kind, "error": error[:2000],
            "result": outcome.value}]
        nxt = NextAttempt(extra={"feedback": feedback})
        policy = self.policy(step.task_id)
        decision = retry.decide(step.tries, max_attempts=policy.max_attempts,
                                base=policy.retry_base, cap=policy.retry_cap)
        question = None
        if kind == outcomes.SPECIFICATION:
            question = outcome.question or error
        elif kind == outcomes.AGENT_UNAVAILABLE and (other := self._next_solver(step)):
            solver, script = other
            nxt = NextAttempt(solver=solver, script=script,
                              extra={"feedback": feedback, "solver": solver})
            decision = retry.Decision(retry=True, delay=0.0)  # another agent: at once
        elif kind == outcomes.TIMEOUT and decision.retry:
            longer = min(self._timeout(step.task_id, step) * policy.timeout_factor,
                         self.config.timeout_cap)
            nxt = NextAttempt(timeout=longer, extra={"feedback": feedback})
        if question is None and not decision.retry:
            if policy.on_exhausted == "fail":
                self.store.steps.finish(step.id, S.FAILED, error=error, result=result,
                                        error_type=kind)
                self.log.warning("step_failed", action="build", task_id=step.task_id,
                                 step_id=step.id, attempt=step.attempt, error=error[:300],
                                 error_type=kind, retry=False)
                return
            question = (f"{step.tries} attempts failed (last: {kind}: {error[:300]}). "
                        "Retry (with a note for the solver), skip it, or fail it?")
        if question is not None:
            self.store.steps.finish(step.id, S.BLOCKED, error=error, result=result,
                                    error_type=kind, question=question)
            self.store.events.add("step_blocked", f"{step.task_id} needs a person: {question}",
                                  plan_id=self.plan_id, step_id=step.id,
                                  data={"task_id": step.task_id, "error_type": kind})
            self.log.warning("step_blocked", action="build", task_id=step.task_id,
                             step_id=step.id, attempt=step.attempt, error_type=kind,
                             question=question[:300])
            return
        self.store.steps.finish(step.id, S.FAILED, error=error, result=result,
                                error_type=kind, retry_in=decision.delay, next_attempt=nxt)
        self.log.warning("step_failed", action="build", task_id=step.task_id, step_id=step.id,
                         attempt=step.attempt, error=error[:300], error_type=kind, retry=True,
                         delay=round(decision.delay, 3))

    def _next_solver(self, step: models.Step) -> tuple[str, str] | None:
        """The solver after this step's one in the task's fallback list (a task naming one
        solver falls back along the task file's ``solvers`` order), and its script."""
        chain: list[str] = list(self.tasks[step.task_id].solver or [])
        if len(chain) <= 1:
            chain = self.solver_order or chain
        if step.solver not in chain or chain.index(step.solver) + 1 >= len(chain):
            return None
        nxt = chain[chain.index(step.solver) + 1]
        spec = self.solvers.get(nxt)
        script = (spec.script if spec else None) or self.tasks[step.task_id].script
        return nxt, script

    def _stuck(self, steps: Mapping[str, models.Step]) -> bool:
        """Nothing runs, and nothing can start until a person decides on a blocked step."""
        if any(s.active for s in steps.values()):
            return False
        blocked = {t for t, s in steps.items() if s.status is S.BLOCKED}
        waiting = self._waiting_on(steps, blocked)
        return all(s.terminal or t in blocked or t in waiting for t, s in steps.items())

    def _waiting_on(self, steps: Mapping[str, models.Step], blocked: set[str]) -> set[str]:
        out: set[str] = set()
        stack = [c for t in blocked for c in self.children[t]]
        while stack:
            t = stack.pop()
            if t not in out and steps[t].status is S.PENDING:
                out.add(t)
                stack += self.children[t]
        return out

    def _block(self) -> models.PlanStatus:
        """Only steps waiting for a person are left: the plan waits for a decision."""
        if self.store.plans.block(self.plan_id):
            self.log.info("build_blocked", action="build")
            return models.PlanStatus.BLOCKED
        return self._lost()

    def _reload(self) -> dict[str, models.Step]:
        """The latest steps of the plan's tasks, after skipping what waits on a task that
        ended badly (and settling the jobs of steps that count for nothing since a revision).
        """
        steps = self._latest()
        if self._skip_blocked(steps):
            steps = self._latest()
        return steps

    def _latest(self) -> dict[str, models.Step]:
        every = self.store.steps.latest(self.plan_id)
        if revising.settle(self.store, every):
            every = self.store.steps.latest(self.plan_id)
        # a task its source no longer has: its job runs on (on_removed: finish) until it ends
        self._removed_running = any(s.active for t, s in every.items() if t not in self.tasks)
        return {t: s for t, s in every.items() if t in self.tasks}

    def _skip_blocked(self, steps: Mapping[str, models.Step]) -> bool:
        """Skip pending tasks that wait, directly or not, on a task that ended badly."""
        dead = [t for t, s in steps.items()
                if s.status in (S.FAILED, S.SKIPPED, S.CANCELLED) and not _done(s)]
        doomed: dict[str, str] = {}
        stack = [(c, t) for t in dead for c in self.children[t]]
        while stack:
            t, cause = stack.pop()
            if t in doomed or steps[t].status is not S.PENDING:
                continue
            doomed[t] = cause
            stack += [(c, cause) for c in self.children[t]]
        if not doomed:
            return False
        by_cause: dict[str, list[str]] = {}
        for t, cause in doomed.items():
            by_cause.setdefault(cause, []).append(t)
        for cause, tasks in by_cause.items():
            skipped = self.store.steps.skip(self.plan_id, tasks, f"dependency {cause} failed")
            self.log.info("steps_skipped", action="build", cause=cause, tasks=skipped)
        return True

    # -- endings ---------------------------------------------------------------------------

    def _finish(self, steps: Mapping[str, models.Step]) -> models.PlanStatus:
        counts: dict[str, int] = {}
        for s in steps.values():
            counts[s.status] = counts.get(s.status, 0) + 1
        every = self.store.steps.all(self.plan_id)
        starts = [s.started_at for s in every if s.started_at]
        ends = [s.finished_at for s in every if s.finished_at]
        build = {
            "counts": counts,
            "attempts": len(every),
            "seconds": (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0,
        }
        skipped_by_person = sorted(t for t, s in steps.items()
                                   if s.status is S.SKIPPED and _done(s))
        if skipped_by_person:
            build["skipped_by_a_person"] = skipped_by_person
        built = all(_done(s) for s in steps.values())
        error = None
        if not built:
            failed = sorted(t for t, s in steps.items() if s.status is S.FAILED)
            skipped = sorted(t for t, s in steps.items() if s.status is S.SKIPPED and not _done(s))
            error = f"{len(failed)} failed ({', '.join(failed[:10])}), {len(skipped)} skipped"
        if not self.store.plans.finish(self.plan_id, built=built, build=build, error=error):
            return self._lost()
        status = models.PlanStatus.BUILT if built else models.PlanStatus.FAILED
        self.log.info("build_finished", action="build", status=status, **build)
        return status

    def _hand_back(self) -> models.PlanStatus:
        """The worker is stopping: the plan goes back to the queue for the next worker, which
        follows the step jobs still running."""
        if self.store.plans.hand_back(self.plan_id, self.worker):
            self.log.info("build_handed_back", action="build")
            return models.PlanStatus.QUEUED
        return self._lost()

    def _lost(self) -> models.PlanStatus:
        """The plan is no longer building: cancelled (its running jobs are cancelled), or
        moved on by someone else."""
        status = self.store.plans.status(self.plan_id)
        if status is models.PlanStatus.CANCELLED:
            steps = self.store.steps.latest(self.plan_id)
            for s in steps.values():
                if s.active:
                    self.dispatcher.cancel(s.job, "plan cancelled")
                    self.store.steps.finish(s.id, S.CANCELLED, error="plan cancelled")
            self.store.steps.cancel_pending(self.plan_id, "plan cancelled")
            self.log.info("build_cancelled", action="build")
        elif status is not models.PlanStatus.PAUSED:
            self.log.warning("build_lost", action="build", status=status)
        return status


def _done(step: models.Step) -> bool:
    """Completed, or skipped by a person (its dependents go on as if it were done)."""
    return step.status is S.COMPLETED or (
        step.status is S.SKIPPED and (step.decision or {}).get("decision") == "skip")


def _passed(result: Any) -> bool:
    """A quality check's verdict: ``{"passed": true, ...}`` (or a bare ``true``)."""
    if isinstance(result, dict):
        return result.get("passed") is True
    return result is True
