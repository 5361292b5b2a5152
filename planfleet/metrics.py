"""Prometheus metrics, derived at scrape time from Postgres (the truth) and RQ's Redis keys.

Nothing is counted in process memory, so the numbers are the same whichever API process is
scraped and however many workers run. Counters are totals over the rows kept (pruning old
records lowers them, which Prometheus reads as a counter reset).
"""

from __future__ import annotations

from collections.abc import Iterator

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from planfleet import exceptions, models, queues
from planfleet.runtime import Runtime
from planfleet.schema.repositories import Store

log = structlog.get_logger(__name__)
#: Upper bounds (seconds) of the step duration histogram.
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0)
_CIRCUIT_STATES = ("closed", "open", "half_open")


class FleetCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        store = self.rt.store
        inputs = GaugeMetricFamily("planfleet_inputs", "Inputs by status.", labels=["status"])
        counts = store.inputs.counts()
        for status in models.InputStatus:
            inputs.add_metric([status.value], counts.get(status.value, 0))
        yield inputs
        plans = GaugeMetricFamily("planfleet_plans", "Plans by status.", labels=["status"])
        plan_counts = store.plans.counts()
        for pstatus in models.PlanStatus:
            plans.add_metric([pstatus.value], plan_counts.get(pstatus.value, 0))
        yield plans
        step_counts = store.metrics.step_counts()
        steps = GaugeMetricFamily("planfleet_steps", "Step attempts by status.", labels=["status"])
        for sstatus in models.StepStatus:
            steps.add_metric([sstatus.value], step_counts.get(sstatus.value, 0))
        yield steps

        jobs = CounterMetricFamily("planfleet_jobs", "Finished jobs by type and outcome.",
                                   labels=["type", "status"])
        for kind, outcomes, found in (
                ("plan", ("planned", "failed"), counts),
                ("build", ("built", "failed", "cancelled"), plan_counts),
                ("step", ("completed", "failed", "skipped", "cancelled"), step_counts)):
            for outcome in outcomes:
                jobs.add_metric([kind, outcome], found.get(outcome, 0))
        yield jobs

        totals = store.metrics.totals()
        buckets = [(str(le), n) for le, n in store.metrics.step_durations(DURATION_BUCKETS)]
        buckets.append(("+Inf", totals["finished"]))
        hist = HistogramMetricFamily("planfleet_job_duration_seconds",
                                     "Seconds from dispatch to outcome of step attempts.",
                                     labels=["type"])
        hist.add_metric(["step"], buckets, sum_value=totals["seconds"])
        yield hist
        retries = CounterMetricFamily("planfleet_retries", "Step attempts after the first.")
        retries.add_metric([], totals["retries"])
        yield retries
        cycles = CounterMetricFamily("planfleet_dag_cycles_detected",
                                     "Task files refused for a dependency cycle.")
        cycles.add_metric([], totals["cycles"])
        yield cycles

        state = GaugeMetricFamily("planfleet_circuit_state",
                                  "1 for the state each script's circuit is in.",
                                  labels=["script", "state"])
        failures = GaugeMetricFamily("planfleet_circuit_failures",
                                     "Consecutive failures of a script.", labels=["script"])
        for c in store.circuits.all():
            for s in _CIRCUIT_STATES:
                state.add_metric([c.script, s], 1 if c.state == s else 0)
            failures.add_metric([c.script], c.failures)
        yield state
        yield failures
        yield from self._fleet(store)

        yield from self._queues()

    def _fleet(self, store: Store) -> Iterator[Metric]:
        capacity = GaugeMetricFamily("planfleet_solver_capacity",
                                     "Steps a solver may run at once, fleet-wide.",
                                     labels=["solver"])
        busy = GaugeMetricFamily("planfleet_solver_busy", "Steps a solver runs now.",
                                 labels=["solver"])
        waiting = GaugeMetricFamily("planfleet_tasks_waiting",
                                    "Ready steps waiting for a slot, by solver.",
                                    labels=["solver"])
        for row in store.fleet.solvers():
            capacity.add_metric([row["name"]], row["capacity"])
            busy.add_metric([row["name"]], row["busy"])
            waiting.add_metric([row["name"]], row["waiting"])
        yield capacity
        yield busy
        yield waiting
        building = GaugeMetricFamily("planfleet_plans_building", "Plans moving in turns now.")
        building.add_metric([], store.plans.counts().get("building", 0))
        yield building

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("planfleet_queue_depth", "Jobs waiting in a queue.",
                                  labels=["queue"])
        started = GaugeMetricFamily("planfleet_queue_started", "Jobs being worked on.",
                                    labels=["queue"])
        failed = GaugeMetricFamily("planfleet_queue_failed", "Jobs in RQ's failed registry.",
                                   labels=["queue"])
        workers = GaugeMetricFamily("planfleet_workers", "Workers listening on a queue.",
                                    labels=["queue"])
        active = GaugeMetricFamily("planfleet_worker_active", "Workers running a job now.",
                                   labels=["queue"])
        up = GaugeMetricFamily("planfleet_redis_up", "1 when Redis answered this scrape.")
        try:
            for q in (self.rt.queues.plan, self.rt.queues.build, self.rt.queues.turns):
                st = queues.stats(q)
                depth.add_metric([q.name], st.depth)
                started.add_metric([q.name], st.started)
                failed.add_metric([q.name], st.failed)
                workers.add_metric([q.name], st.workers)
                active.add_metric([q.name], st.busy)
            up.add_metric([], 1)
        except exceptions.QueueUnavailable as exc:
            log.warning("metrics_redis_unavailable", error=str(exc))
            up.add_metric([], 0)
        yield from (depth, started, failed, workers, active, up)


def registry(rt: Runtime) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FleetCollector(rt))
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    """The metrics in Prometheus' text format."""
    return generate_latest(reg)
