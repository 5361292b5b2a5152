"""The build worker's job: run a plan's steps event-driven until the plan is built or failed.

Every turn: look at the running steps' jobs and record what ended (a failure gets its next
attempt after a backoff, or fails for good and skips its dependents); then start every ready
task in the plan's priority order while slots are free. A step's job id is written to Postgres
before the job is submitted, and submitting an id twice is a no-op, so a restarted worker
carries on from ``steps`` without running an attempt twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Mapping
from typing import Any

import structlog

from planfleet import models
from planfleet.config import Config
from planfleet.dispatch import Dispatcher, JobState, JobStatus, Submission
from planfleet.schema.repositories import NextAttempt, Store
from planfleet.workers import outcomes, retry, shutdown
from planfleet.workers.circuits import Breakers

log = structlog.get_logger(__name__)
S = models.StepStatus
#: Seconds a step is dispatched before it is recorded as running (a step that ends sooner
#: goes from dispatched straight to its outcome: one statement fewer per short step).
RUNNING_AFTER = 1.0
#: Seconds between a build worker's heartbeats (well under the staleness threshold).
HEARTBEAT_EVERY = 1.0
#: Seconds between looks at the steps while some wait for a person (a decision may come).
BLOCKED_LOOK_EVERY = 1.0


class Build:
    """One build of one claimed plan by one worker."""

    def __init__(
        self, store: Store, dispatcher: Dispatcher, config: Config, record: models.PlanRecord,
        worker: str,
    ) -> None:
        assert record.plan is not None
        self.store, self.dispatcher, self.config = store, dispatcher, config
        self.plan_id = record.id
        self.worker = worker
        doc = record.plan
        self.order: list[str] = doc["priority_order"]
        self.tasks: dict[str, dict[str, Any]] = doc["tasks"]
        self.m: int = doc["max_parallel"]
        self.solvers: dict[str, dict[str, Any]] = doc.get("solvers") or {}
        self.solver_order: list[str] = doc.get("solver_order") or list(self.solvers)
        #: the task file's policy over the fleet's
        self.policy: dict[str, Any] = {
            "max_attempts": config.step_max_attempts, "retry_base": config.step_retry_base,
            "retry_cap": config.step_retry_cap, "timeout_factor": config.timeout_factor,
            "on_exhausted": config.on_exhausted, **(doc.get("policy") or {})}
        self.caps: dict[str, int] = {
            name: spec["capacity"] for name, spec in (doc.get("solvers") or {}).items()
            if spec.get("capacity")
        }
        self.children: dict[str, list[str]] = {t: [] for t in self.tasks}
        for t, task in self.tasks.items():
            for d in task["depends_on"]:
                self.children[d].append(t)
        self.log = log.bind(plan_id=self.plan_id, worker=worker)
        self.breakers = Breakers(store, {task["script"] for task in self.tasks.values()},
                                 threshold=config.circuit_threshold,
                                 cooldown=config.circuit_cooldown)
        #: a submission failed for good since the steps were last read
        self._failed_submit = False

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> models.PlanStatus:
        self._create_steps()
        steps = self._reload()  # a resumed build may find failures not yet followed up
        beat = looked = 0.0
        while True:
            now = time.monotonic()
            if now - beat >= HEARTBEAT_EVERY:
                if not self.store.plans.heartbeat(self.plan_id, self.worker):
                    return self._lost()
                beat = now
            if shutdown.requested():
                return self._hand_back()
            progress, reload = self._collect(steps)
            if reload or self._failed_submit:
                # a failure: new attempts or skips follow, read them from the database
                self._failed_submit = False
                steps = self._reload()
                progress = True
            if all(s.terminal for s in steps.values()):
                return self._finish(steps)
            if any(s.status is S.BLOCKED for s in steps.values()):
                if self._stuck(steps):
                    return self._block()
                if now - looked >= BLOCKED_LOOK_EVERY:  # a person may have decided meanwhile
                    steps, looked = self._reload(), now
            # our own writes are the only changes between turns (a cancel shows in the
            # heartbeat): steps we start are updated in memory, not read again
            if not self._dispatch(steps) and not progress:
                time.sleep(self.config.build_poll)

    def _create_steps(self) -> None:
        """The first attempt of every task (nothing for tasks a previous worker started)."""
        self.store.steps.create(self.plan_id, [
            {"task_id": t, "script": task["script"], "solver": (task["solver"] or [None])[0],
             "args": {**task["args"], "task_id": t, "title": task["title"],
                      "plan_id": self.plan_id, "solver": (task["solver"] or [""])[0]}}
            for t, task in self.tasks.items()
        ])
        self.log.info("build_started", action="build", tasks=len(self.tasks))

    def _collect(self, steps: dict[str, models.Step]) -> tuple[bool, bool]:
        """Record what the running steps' jobs did. Returns (progress, reload): successes are
        applied to ``steps`` in memory; a failure asks for the steps to be read again."""
        active = {s.job: s for s in steps.values() if s.active}
        if not active:
            return False, False
        progress = reload = False
        now = dt.datetime.now(dt.UTC)
        for job_id, status in self.dispatcher.status(list(active)).items():
            step = active[job_id]
            if status.state is JobState.UNKNOWN:
                # written down but never submitted (the worker died in between), or lost by
                # the runner: submit now, under the same id (so at most one job)
                if step.status is S.NEEDS_QA:
                    self._submit_qa(step, job_id)
                else:
                    self._submit([(step, job_id)])
            elif (status.state is JobState.RUNNING and step.status is S.DISPATCHED
                  and step.started_at is not None
                  and (now - step.started_at).total_seconds() >= RUNNING_AFTER):
                if self.store.steps.running(step.id):
                    steps[step.task_id] = dataclasses.replace(step, status=S.RUNNING)
            elif (status.state is JobState.SUCCESS and step.status is S.NEEDS_QA
                  and not _passed(status.result)):
                findings = status.result.get("findings") if isinstance(status.result,
                                                                         dict) else None
                self._failed(step, outcomes.Outcome(
                    "error", "qa", f"the quality check failed: {findings or status.result}",
                    value=status.result), status.link)
                reload = True
            elif (status.state is JobState.SUCCESS and step.status is not S.NEEDS_QA
                  and outcomes.classify(status).status != "error"
                  and self.tasks[step.task_id].get("qa")):
                self._check_quality(steps, step, status)
                progress = True
            elif (status.state is JobState.SUCCESS
                  and outcomes.classify(status).status != "error"):
                result = {"value": status.result, "duration": status.duration,
                          "link": status.link}
                if step.status is S.NEEDS_QA:  # the check passed: the step's own output stays
                    result = {**(step.result or {}), "qa": status.result}
                if self.store.steps.finish(step.id, S.COMPLETED, result=result):
                    steps[step.task_id] = dataclasses.replace(step, status=S.COMPLETED)
                else:
                    reload = True
                self.breakers.succeeded(step.script)
                self.log.info("step_completed", action="build", task_id=step.task_id,
                              step_id=step.id, attempt=step.attempt)
                progress = True
            elif status.done:  # failed, or succeeded reporting an error
                self._failed(step, outcomes.classify(status), status.link)
                reload = True
            elif (step.started_at is not None and (now - step.started_at).total_seconds()
                  > self._timeout(step.task_id, step) + self.config.timeout_grace
                  + (self.config.qa_timeout if step.status is S.NEEDS_QA else 0.0)):
                self.dispatcher.cancel(job_id, "step timeout")
                self._failed(step, outcomes.Outcome(
                    "error", outcomes.TIMEOUT,
                    f"timed out after {self._timeout(step.task_id, step):g} s"), None)
                reload = True
        return progress, reload

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
                      qa=self.tasks[step.task_id]["qa"])
        self._submit_qa(step, qa_job)

    def _submit_qa(self, step: models.Step, qa_job: uuid.UUID) -> None:
        task = self.tasks[step.task_id]
        output = (step.result or {}).get("value")
        args = {"task_id": step.task_id, "plan_id": self.plan_id, "title": task["title"],
                "output": output, "args": dict(step.args)}
        errors = self.dispatcher.submit_many(
            [Submission(qa_job, task["qa"], args, self.config.qa_timeout)])
        exc = errors.get(qa_job)
        if exc is not None and exc.permanent:
            self._failed(step, outcomes.Outcome("error", "qa", f"the quality check {task['qa']} "
                                                f"could not run: {exc}"), None)
            self._failed_submit = True

    def _timeout(self, task_id: str, step: models.Step | None = None) -> float:
        if step is not None and step.timeout:
            return float(step.timeout)
        return float(self.tasks[task_id].get("timeout") or self.config.step_timeout)

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
        max_attempts = (self.tasks[step.task_id].get("max_attempts")
                        or self.policy["max_attempts"])
        decision = retry.decide(step.tries, max_attempts=max_attempts,
                                base=self.policy["retry_base"], cap=self.policy["retry_cap"])
        question = None
        if kind == outcomes.SPECIFICATION:
            question = outcome.question or error
        elif kind == outcomes.AGENT_UNAVAILABLE and (other := self._next_solver(step)):
            solver, script = other
            nxt = NextAttempt(solver=solver, script=script,
                              extra={"feedback": feedback, "solver": solver})
            decision = retry.Decision(retry=True, delay=0.0)  # another agent: at once
        elif kind == outcomes.TIMEOUT and decision.retry:
            longer = min(self._timeout(step.task_id, step) * self.policy["timeout_factor"],
                         self.config.timeout_cap)
            nxt = NextAttempt(timeout=longer, extra={"feedback": feedback})
        if question is None and not decision.retry:
            if self.policy["on_exhausted"] == "fail":
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
        chain: list[str] = list(self.tasks[step.task_id]["solver"] or [])
        if len(chain) <= 1:
            chain = self.solver_order or chain
        if step.solver not in chain or chain.index(step.solver) + 1 >= len(chain):
            return None
        nxt = chain[chain.index(step.solver) + 1]
        script = (self.solvers.get(nxt) or {}).get("script") or self.tasks[step.task_id]["script"]
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
        """Only steps waiting for a person are left: the plan waits, and the worker is free."""
        if self.store.plans.block(self.plan_id, self.worker):
            self.log.info("build_blocked", action="build")
            return models.PlanStatus.BLOCKED
        return self._lost()

    def _reload(self) -> dict[str, models.Step]:
        """The latest steps, after skipping what waits on a task that ended badly."""
        steps = self.store.steps.latest(self.plan_id)
        if self._skip_blocked(steps):
            steps = self.store.steps.latest(self.plan_id)
        return steps

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

    def _dispatch(self, steps: dict[str, models.Step]) -> int:
        """Start ready tasks; ``steps`` is updated with the ones started."""
        running = [s for s in steps.values() if s.active]
        free = self.m - len(running)
        if free <= 0 or any(not self.tasks[s.task_id]["parallel"] for s in running):
            return 0
        busy: dict[str, int] = {}
        for s in running:
            if s.solver:
                busy[s.solver] = busy.get(s.solver, 0) + 1
        now = dt.datetime.now(dt.UTC)
        started: list[tuple[models.Step, uuid.UUID]] = []
        for t in self.order:  # the plan's priority order: the same policy as its schedule
            if free <= 0:
                break
            step = steps[t]
            if step.status is not S.PENDING or (step.not_before and step.not_before > now):
                continue
            if not all(_done(steps[d]) for d in self.tasks[t]["depends_on"]):
                continue
            if not self.tasks[t]["parallel"]:
                if running or started:
                    break  # it runs alone: hold the rest back until it can
                if self.breakers.allows(step.script) and (job := self._claim(steps, step)):
                    started.append((step, job))
                break
            solver = step.solver
            if solver in self.caps and busy.get(solver, 0) >= self.caps[solver]:
                continue
            if not self.breakers.allows(step.script):
                continue  # its script's circuit is open: the step waits
            if job := self._claim(steps, step):
                started.append((step, job))
                free -= 1
                if solver:
                    busy[solver] = busy.get(solver, 0) + 1
        self._submit(started)
        return len(started)

    def _claim(self, steps: dict[str, models.Step], step: models.Step) -> uuid.UUID | None:
        """pending -> dispatched under a new job id, written down before any request."""
        job_id = uuid.uuid4()
        if not self.store.steps.dispatch(step.id, job_id):
            return None  # someone else moved it
        steps[step.task_id] = dataclasses.replace(
            step, status=S.DISPATCHED, windmill_job_id=job_id,
            started_at=dt.datetime.now(dt.UTC))
        return job_id

    def _submit(self, jobs: list[tuple[models.Step, uuid.UUID]]) -> None:
        if not jobs:
            return
        errors = self.dispatcher.submit_many([
            Submission(job_id, step.script, dict(step.args), self._timeout(step.task_id, step))
            for step, job_id in jobs])
        for step, job_id in jobs:
            exc = errors.get(job_id)
            if exc is None:
                self.log.debug("step_dispatched", action="build", task_id=step.task_id,
                               step_id=step.id, attempt=step.attempt, job_id=str(job_id))
            elif exc.permanent:
                self.breakers.failed(step.script, str(exc), misconfigured=exc.misconfigured)
                self.store.steps.finish(step.id, S.FAILED, error=str(exc))
                self._failed_submit = True
                self.log.error("step_dispatch_failed", action="build", task_id=step.task_id,
                               error=str(exc))
            else:  # stays dispatched; submitted again (same id) once the dispatcher says so
                self.log.warning("step_submit_retry", action="build", task_id=step.task_id,
                                 error=str(exc))

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
        self.store.plans.finish(self.plan_id, self.worker, built=built, build=build, error=error)
        status = models.PlanStatus.BUILT if built else models.PlanStatus.FAILED
        self.log.info("build_finished", action="build", status=status, **build)
        return status

    def _drain(self) -> models.PlanStatus:
        """Paused: start nothing new, follow the running steps to their end, then leave."""
        self.log.info("build_pausing", action="build")
        while True:
            steps = self.store.steps.latest(self.plan_id)
            if not any(s.active for s in steps.values()):
                break
            self._collect(steps)
            status = self.store.plans.status(self.plan_id)
            if status is not models.PlanStatus.PAUSED:
                return self._lost() if status is models.PlanStatus.CANCELLED else status
            time.sleep(max(self.config.build_poll, 0.2))
        self.log.info("build_paused", action="build")
        return models.PlanStatus.PAUSED

    def _hand_back(self) -> models.PlanStatus:
        """The worker is stopping: the plan goes back to the queue for the next worker, which
        follows the step jobs still running."""
        if self.store.plans.hand_back(self.plan_id, self.worker):
            self.log.info("build_handed_back", action="build")
            return models.PlanStatus.QUEUED
        return self._lost()

    def _lost(self) -> models.PlanStatus:
        status = self.store.plans.status(self.plan_id)
        if status is models.PlanStatus.PAUSED:
            return self._drain()
        if status is models.PlanStatus.CANCELLED:
            steps = self.store.steps.latest(self.plan_id)
            for s in steps.values():
                if s.active:
                    self.dispatcher.cancel(s.job, "plan cancelled")
                    self.store.steps.finish(s.id, S.CANCELLED, error="plan cancelled")
            self.store.steps.cancel_pending(self.plan_id, "plan cancelled")
            self.log.info("build_cancelled", action="build")
        else:
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
