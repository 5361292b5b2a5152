"""Flow build mode: the whole plan runs as one Windmill flow job.

The plan's OpenFlow export (one ``branchall`` per wave, a ``script`` module per task, with
Windmill doing the per-module retries and timeouts) is created or updated at
``f/planfleet/plan_<id>`` and run under a job id written to ``plans.flow_job_id`` first (so a
restarted worker adopts the run instead of starting another). The steps follow the flow job's
``flow_status``: wave ``i`` is module ``i``; its ``flow_jobs[k]`` is the branch job of the
wave's ``k``-th task, and ``flow_jobs_success[k]`` its outcome.

Per-step jobs (the default mode) start each task the moment its dependencies are done; a flow
waits for a whole wave. A flow is one unit in Windmill's UI (one run, one graph, one place to
cancel), which some teams prefer for audits.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import structlog

from planfleet import models
from planfleet.config import Config
from planfleet.dispatch import DispatchError, JobStatus, Submission
from planfleet.dispatch.windmill_api import WindmillClient
from planfleet.planner.flow import to_windmill_flow
from planfleet.planner.plan import Plan
from planfleet.schema.repositories import Store
from planfleet.workers import shutdown
from planfleet.workers.building import HEARTBEAT_EVERY, Build

log = structlog.get_logger(__name__)
S = models.StepStatus


class _NoDispatch:
    """Flow builds start no step jobs of their own: Windmill runs them inside the flow."""

    def _refuse(self, *args: Any) -> Any:
        raise AssertionError("a flow build dispatches no step jobs")

    submit = cancel = _refuse

    def submit_many(self, jobs: Sequence[Submission]) -> dict[uuid.UUID, DispatchError | None]:
        return self._refuse(jobs)  # type: ignore[no-any-return]

    def status(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, JobStatus]:
        return self._refuse(job_ids)  # type: ignore[no-any-return]

    def close(self) -> None:
        pass


class FlowBuild(Build):
    def __init__(self, store: Store, client: WindmillClient, config: Config,
                 record: models.PlanRecord, worker: str) -> None:
        super().__init__(store, _NoDispatch(), config, record, worker)
        self.client = client
        assert record.plan is not None
        self.plan = Plan.model_validate(record.plan)
        self.path = f"{config.windmill_flow_folder.rstrip('/')}/plan_{self.plan_id}"

    def run(self) -> models.PlanStatus:
        self._create_steps()
        job_id = self.store.plans.flow_job(self.plan_id)
        if job_id is None:
            job_id = uuid.uuid4()
            if not self.store.plans.set_flow_job(self.plan_id, self.worker, job_id):
                return self._lost()
        flow = to_windmill_flow(self.plan, plan_id=self.plan_id,
                                fleet=self.config.step_policy())
        started = False
        beat = 0.0
        delay = self.config.windmill_retry_base
        while True:
            now = time.monotonic()
            if now - beat >= HEARTBEAT_EVERY:
                if not self.store.plans.heartbeat(self.plan_id, self.worker):
                    return self._lost(job_id)
                beat = now
            if shutdown.requested():
                return self._hand_back()  # the flow runs on in Windmill; the next worker follows it
            try:
                if not started:
                    self.client.deploy_flow(self.path, flow)
                    created = self.client.run_flow(job_id, self.path, {})
                    self.log.info("flow_started", action="build", path=self.path,
                                  job_id=str(job_id), adopted=not created)
                    started = True
                job = self.client.get_job(job_id)
                if job is None:  # the id was written but the run never reached Windmill
                    started = False
                    continue
                if self._follow(job):
                    return self._finish(self.store.steps.latest(self.plan_id))
                delay = self.config.windmill_retry_base
                time.sleep(self.config.windmill_poll)
            except DispatchError as exc:
                if exc.permanent:
                    return self._fail_all(str(exc))
                self.log.warning("flow_retry", action="build", error=str(exc), delay=delay)
                time.sleep(delay)
                delay = min(delay * 2, self.config.windmill_retry_cap)

    def _follow(self, job: dict[str, Any]) -> bool:
        """Bring the steps up to the flow job's status; True once the flow job completed."""
        steps = self.store.steps.latest(self.plan_id)
        modules = (job.get("flow_status") or {}).get("modules") or []
        for wave, module in zip(self.plan.batches, modules, strict=False):
            subs = module.get("flow_jobs") or []
            outcomes = module.get("flow_jobs_success") or []
            for k, (task_id, sub) in enumerate(zip(wave, subs, strict=False)):
                step = steps[task_id]
                if step.status is S.PENDING:
                    if not self.store.steps.dispatch(step.id, sub):
                        continue
                    self.store.steps.running([step.id])
                elif step.terminal:
                    continue
                outcome = outcomes[k] if k < len(outcomes) else None
                if outcome is None:
                    continue
                link = self.client.job_link(sub)
                got = self.client.result_maybe(uuid.UUID(sub))
                if outcome:
                    self.store.steps.finish(step.id, S.COMPLETED,
                                            result={"value": got.get("result"), "link": link})
                else:
                    self.store.steps.finish(step.id, S.FAILED, error=_error(got.get("result")),
                                            result={"value": got.get("result"), "link": link})
        if job.get("type") != "CompletedJob":
            return False
        pending = [t for t, s in self.store.steps.latest(self.plan_id).items()
                   if s.status is S.PENDING]
        if pending:
            reason = ("flow cancelled" if job.get("canceled")
                      else "flow ended before this task's wave")
            self.store.steps.skip(self.plan_id, pending, reason)
        return True

    def _fail_all(self, error: str) -> models.PlanStatus:
        self.log.error("flow_dispatch_failed", action="build", error=error)
        pending = [t for t, s in self.store.steps.latest(self.plan_id).items()
                   if s.status is S.PENDING]
        self.store.steps.skip(self.plan_id, pending, error)
        self.store.plans.finish(self.plan_id, built=False, build={}, error=error)
        return models.PlanStatus.FAILED

    def _lost(self, job_id: Any = None) -> models.PlanStatus:
        status = self.store.plans.status(self.plan_id)
        if status is models.PlanStatus.CANCELLED and job_id is not None:
            try:
                self.client.cancel(uuid.UUID(str(job_id)), "plan cancelled")
            except DispatchError as exc:
                self.log.warning("flow_cancel_failed", action="build", error=str(exc))
            for s in self.store.steps.latest(self.plan_id).values():
                if s.active:
                    self.store.steps.finish(s.id, S.CANCELLED, error="plan cancelled")
            self.store.steps.cancel_pending(self.plan_id, "plan cancelled")
            self.log.info("build_cancelled", action="build")
            return status
        return super()._lost()


def _error(result: Any) -> str:
    if isinstance(result, dict) and isinstance(result.get("error"), dict):
        err = result["error"]
        return f"{err.get('name')}: {err.get('message')}"
    return f"failed: {str(result)[:500]}"
