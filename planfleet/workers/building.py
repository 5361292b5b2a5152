"""A plan's turn: what the build workers do with a plan, a short step at a time.

No process waits on a plan. A turn reads the plan's latest steps, lets
:func:`planfleet.workers.deciding.decide` say what to do — take in what the tracker saw the
plan's jobs end with (a success goes on, or to its quality check; a failure gets its next
attempt after a backoff, is handed to a person, or fails for good and skips its dependents),
resubmit a job that vanished (same id, so at most one job), cancel a job past its timeout,
mark which pending steps have every dependency done — and applies those actions in order.
Which ready steps start, across every plan of the fleet, is decided by
:mod:`planfleet.workers.dispatching` under the fleet's capacity. A step's job id is written to
Postgres before the job is submitted, and submitting an id twice is a no-op, so a turn lost
with its worker is simply taken again. A guarded write that matches nothing (the step moved on
meanwhile) stops the actions there; the turn reads again and decides afresh.

Two turns of one plan never overlap: a turn holds the plan's advisory lock; a turn asked for
while another runs leaves a wish (``plans.turn_wanted``) that makes the running one go round
once more.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import structlog

from planfleet import models
from planfleet.config import Config
from planfleet.dispatch import Dispatcher, Submission
from planfleet.planner.plan import Plan, PlanTask
from planfleet.schema.repositories import Store
from planfleet.workers import deciding, outcomes, revising
from planfleet.workers import turn_actions as act
from planfleet.workers.circuits import Breakers

log = structlog.get_logger(__name__)
S = models.StepStatus
#: Seconds a step is dispatched before it is recorded as running (a step that ends sooner
#: goes from dispatched straight to its outcome: one statement fewer per short step).
RUNNING_AFTER = 1.0
#: Seconds between a flow build's heartbeats (well under the staleness threshold).
HEARTBEAT_EVERY = 1.0
#: Times a turn reads its plan's steps and decides again (each round takes in what ended since
#: the last); past them it asks for another turn rather than hold the plan's lock.
ROUNDS = 8

#: A job's end as the tracker recorded it (and what it records), for the tracker.
job_status = outcomes.job_status
observation = outcomes.observation


class Build:
    """The turns of one plan (and what a flow build shares with them): reads, the decisions
    of :mod:`planfleet.workers.deciding`, and the writes and job requests they call for."""

    def __init__(
        self, store: Store, dispatcher: Dispatcher, config: Config, record: models.PlanRecord,
        worker: str, plan: Plan | None = None, breakers: Breakers | None = None,
    ) -> None:
        assert plan is not None or record.plan is not None
        self.store, self.dispatcher, self.config = store, dispatcher, config
        self.plan_id = record.id
        self.status = record.status
        self.worker = worker
        self.plan = plan or Plan.model_validate(record.plan)
        self.tasks: dict[str, PlanTask] = self.plan.tasks
        self.settings = deciding.Settings.from_config(config)
        self.log = log.bind(plan_id=self.plan_id, worker=worker)
        scripts = {task.script for task in self.tasks.values()}
        if breakers is None:
            breakers = Breakers(store, scripts, threshold=config.circuit_threshold,
                                cooldown=config.circuit_cooldown)
        else:  # shared by a batch of turns
            breakers.cover(scripts)
        self.breakers = breakers

    # -- a turn ---------------------------------------------------------------------------

    def turn(self, steps: Mapping[str, models.Step] | None = None) -> models.PlanStatus:
        """One turn of a plan that moves in turns (building, paused or cancelled): read,
        decide, apply; again while what was applied changed more than the decision saw.
        ``steps``: the plan's latest steps, read a moment ago with other plans' (its first
        read)."""
        if self.status is models.PlanStatus.CANCELLED:
            return self._lost()
        for _ in range(ROUNDS):
            decision = deciding.decide(snap := self._read(steps))
            steps = None
            status = self._apply(snap, decision.actions)
            if status is not None and decision.settled:
                return status
        self.store.plans.want_turn(self.plan_id)  # what ends keeps coming: the next turn goes on
        return self.status

    def start(self) -> bool:
        """queued -> building: the first attempt of every task (nothing for tasks a previous
        run started), then the plan moves in turns."""
        self._create_steps()
        caps = {n: s.capacity for n, s in self.plan.solvers.items() if s.capacity}
        if not self.store.plans.start_turns(self.plan_id, self.plan.max_parallel, caps):
            return False
        self.status = models.PlanStatus.BUILDING
        self.log.info("build_started", action="build", tasks=len(self.tasks))
        return True

    def _create_steps(self) -> None:
        """The first attempt of every task (nothing for tasks a previous worker started)."""
        define = revising.definer(self.plan_id, self.plan, self.settings.policy)
        self.store.steps.create(self.plan_id, [define(t) for t in self.tasks])

    def _read(self, every: Mapping[str, models.Step] | None = None) -> deciding.Snapshot:
        """The latest steps of the plan's tasks (after settling the jobs of steps that count
        for nothing since a revision), as a turn decides on them (``every``: as just read)."""
        if every is None:
            every = self.store.steps.latest(self.plan_id)
        if revising.settle(self.store, every, self.dispatcher, grace=self.config.timeout_grace):
            every = self.store.steps.latest(self.plan_id)
        # a task its source no longer has: its job runs on (on_removed: finish) until it ends
        removed_running = any(s.active for t, s in every.items() if t not in self.tasks)
        steps = {t: s for t, s in every.items() if t in self.tasks}
        return self._snapshot(steps, removed_running=removed_running)

    def _snapshot(self, steps: dict[str, models.Step], status: models.PlanStatus | None = None,
                  *, removed_running: bool = False) -> deciding.Snapshot:
        return deciding.Snapshot(self.plan_id, self.plan, status or self.status, steps,
                                 dt.datetime.now(dt.UTC), self.settings, removed_running)

    # -- applying a decision ---------------------------------------------------------------

    def _apply(self, snap: deciding.Snapshot,
               actions: tuple[act.Action, ...] | list[act.Action]) -> models.PlanStatus | None:
        """Apply ``actions`` in order; the plan's status then, or None when a guarded write of
        a step matched nothing (the rest is left: the caller reads again and decides)."""
        status = self.status
        for action in actions:
            match action:
                case act.Skip(tasks=tasks, cause=cause):
                    skipped = self.store.steps.skip(self.plan_id, list(tasks), action.reason)
                    self.log.info("steps_skipped", action="build", cause=cause, tasks=skipped)
                    if set(skipped) != set(tasks):
                        return None
                case act.Complete(step=step, result=result):
                    if not self.store.steps.finish(step.id, S.COMPLETED, result=result):
                        return None
                case act.NeedsQa(step=step, qa_job=qa_job, result=result):
                    if not self.store.steps.needs_qa(step.id, qa_job, result):
                        return None
                case act.Submit():
                    errors = self.dispatcher.submit_many([Submission(
                        action.job, action.script, dict(action.args), action.timeout)])
                    exc = errors.get(action.job)
                    if exc is not None and exc.permanent and self._apply(snap, deciding.refused(
                            snap, action, str(exc), misconfigured=exc.misconfigured)) is None:
                        return None
                case act.Cancel(job=job, reason=reason):
                    self.dispatcher.cancel(job, reason)
                case act.ClearObserved(step=step):
                    self.store.steps.clear_observed(step.id)
                case act.Fail():
                    if not self.store.steps.finish(
                            action.step.id, S.FAILED, error=action.error, result=action.result,
                            error_type=action.error_type, retry_in=action.retry_in,
                            next_attempt=action.next_attempt):
                        return None
                case act.Block():
                    if not self.store.steps.finish(
                            action.step.id, S.BLOCKED, error=action.error, result=action.result,
                            error_type=action.error_type, question=action.question):
                        return None
                case act.CancelStep(step=step, reason=reason):
                    self.store.steps.finish(step.id, S.CANCELLED, error=reason)
                case act.CancelPending(reason=reason):
                    self.store.steps.cancel_pending(self.plan_id, reason)
                case act.MarkReady(step_ids=ids):
                    self.store.steps.mark_ready(list(ids))
                case act.FinishPlan():
                    status = self._finished(action)
                case act.BlockPlan():
                    status = self._block()
                case act.CircuitFailed(script=script, message=message, misconfigured=bad):
                    self.breakers.failed(script, message, misconfigured=bad)
                case act.CircuitSucceeded(script=script):
                    self.breakers.succeeded(script)
                case act.Event(kind=kind, message=message, step_id=step_id, data=data):
                    self.store.events.add(kind, message, plan_id=self.plan_id, step_id=step_id,
                                          data=None if data is None else dict(data))
                case act.Log(event=event, level=level, fields=fields):
                    getattr(self.log, level)(event, action="build", **fields)
        return status

    def _block(self) -> models.PlanStatus:
        """Only steps waiting for a person are left: the plan waits for a decision."""
        if self.store.plans.block(self.plan_id):
            self.log.info("build_blocked", action="build")
            return models.PlanStatus.BLOCKED
        return self._lost()

    # -- endings ---------------------------------------------------------------------------

    def _finish(self, steps: dict[str, models.Step]) -> models.PlanStatus:
        """Every step ended: the plan is built or failed."""
        return self._finished(deciding.finish(steps))

    def _finished(self, ending: act.FinishPlan) -> models.PlanStatus:
        build = deciding.summary(ending, self.store.steps.all(self.plan_id))
        if not self.store.plans.finish(self.plan_id, built=ending.built, build=build,
                                       error=ending.error):
            return self._lost()
        status = models.PlanStatus.BUILT if ending.built else models.PlanStatus.FAILED
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
            snap = self._snapshot(self.store.steps.latest(self.plan_id), status)
            self._apply(snap, deciding.decide(snap).actions)
        elif status is not models.PlanStatus.PAUSED:
            self.log.warning("build_lost", action="build", status=status)
        return status
