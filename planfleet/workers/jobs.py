"""RQ entry points. Payloads are ids; everything else is read from Postgres.

Each worker process opens its runtime (pool, Redis client, dispatcher) once and reuses it for
every job it runs; the pool is rebuilt in a forked work horse (see
:class:`planfleet.schema.connector.Database`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import socket
import threading
from collections.abc import Sequence

import rq
import structlog

from planfleet import defaults, logs, models
from planfleet.config import Config
from planfleet.dispatch import Dispatcher, Locked
from planfleet.dispatch.local import LocalDispatcher
from planfleet.dispatch.windmill import WindmillDispatcher
from planfleet.dispatch.windmill_api import WindmillClient
from planfleet.exceptions import ConfigurationError
from planfleet.runtime import Runtime, open_runtime
from planfleet.workers import tracker as tracking
from planfleet.workers.dispatching import Dispatching
from planfleet.workers.tracker import Tracker

log = structlog.get_logger(__name__)
_runtime: Runtime | None = None
_prepared = False


def preload(*, turns: bool = False) -> None:
    """Do once, before forking work horses: logging, migrations, heavy imports. ``turns``: a
    build worker's process, whose Postgres pool serves its turn threads and its tracker."""
    global _prepared
    if _prepared:
        return
    import planfleet.planner  # noqa: F401
    import planfleet.workers.building  # noqa: F401
    import planfleet.workers.planning  # noqa: F401
    from planfleet.schema import migrate

    config = Config()
    logs.configure(config.log_format)
    migrate.wait_until_ready(config.database_url)  # a worker waits for Postgres, never exits
    if config.dispatch == "local":
        from planfleet.dispatch import local

        local.start_shared_executor(config.scripts_dir)
    _prepared = True
    # built here, inherited by every forked work horse; connections open lazily (and anew
    # after a fork: the Postgres pool and redis-py both check the pid)
    global _runtime
    _runtime = open_runtime(config, apply_migrations=False,
                            pool_max=config.turn_threads + 3 if turns else None)


def runtime() -> Runtime:
    """This process's runtime, opened on first use (a cache, not a configuration point)."""
    global _runtime
    if _runtime is None:
        config = Config()
        if not _prepared:
            logs.configure(config.log_format)
        _runtime = open_runtime(config, apply_migrations=not _prepared)
    return _runtime


def windmill_client(config: Config) -> WindmillClient:
    """The worker's Windmill client, from WINDMILL_URL / WINDMILL_TOKEN / WINDMILL_WORKSPACE."""
    if not config.windmill_url or not config.windmill_token:
        raise ConfigurationError(
            "dispatch 'windmill' needs WINDMILL_URL and WINDMILL_TOKEN to be set")
    return WindmillClient(config.windmill_url, config.windmill_token,
                          config.windmill_workspace, concurrency=config.windmill_concurrency,
                          timeout=config.windmill_timeout)


def make_dispatcher(config: Config) -> Dispatcher:
    if config.dispatch == "windmill":
        return WindmillDispatcher(
            windmill_client(config), poll=config.windmill_poll,
            check_after=config.windmill_check_after, retry_base=config.windmill_retry_base,
            retry_cap=config.windmill_retry_cap, concurrency=config.windmill_concurrency)
    return LocalDispatcher(config.scripts_dir, config.state_dir.resolve() / "runner" / "jobs")


def _job_id() -> str:
    job = rq.get_current_job()
    return job.id if job is not None else f"direct-{os.getpid()}"


def plan_input(input_id: int) -> int | None:
    """RQ job: plan input ``input_id``."""
    from planfleet.workers import planning

    return planning.plan_input(runtime(), input_id, _job_id())


def build_plan(plan_id: int) -> str | None:
    """RQ job: a turn of plan ``plan_id`` (in flow mode: follow its flow run to the end)."""
    rt = runtime()
    worker = f"{socket.gethostname()}:{_job_id()}"
    if rt.config.build_mode == "flow":
        return _build_flow_job(rt, plan_id, worker)
    from planfleet.workers import turns

    try:
        build = fleet()
    except ConfigurationError as exc:
        _misconfigured(rt, plan_id, str(exc))
        return None
    # a burst of new plans starts together without this job: the tracker asks for the
    # first turns of queued plans, a batch at a time, on the turn queue
    status = turns.take(rt, [plan_id], build.dispatcher, build.dispatching, worker).get(plan_id)
    return None if status is None else str(status)


def ask_turns(rt: Runtime, plan_ids: Sequence[int]) -> None:
    """Ask for the plans' turns: their wishes in Postgres, then a ``build_plans`` job (a plan
    asked for again before its turn came is turned once: the later jobs find no wish)."""
    rt.store.plans.want_turns(plan_ids)
    rt.queues.enqueue_turns(plan_ids)


def build_plans(plan_ids: list[int]) -> dict[str, int]:
    """RQ job: turns of several plans (what the tracker saw end), in up to ``turn_threads``
    batches side by side, then one dispatch round for the fleet. Only plans that still
    want a turn are turned (all of them when RQ runs the job again after an error). In flow
    mode each plan gets its own ``build_plan`` job (a flow build follows its run to the
    end)."""
    rt = runtime()
    if rt.config.build_mode == "flow":
        rt.queues.enqueue_builds(plan_ids)
        return {"plans": len(plan_ids)}
    from planfleet.workers import turns

    try:
        f = fleet()
    except ConfigurationError as exc:
        for plan_id in plan_ids:
            _misconfigured(rt, plan_id, str(exc))
        return {"plans": 0}
    worker = f"{socket.gethostname()}:{_job_id()}"
    job = rq.get_current_job()
    retried = job is not None and job.retries_left is not None and (
        job.retries_left < defaults.JOB_RETRY_MAX)
    if not retried:
        plan_ids = rt.store.plans.turns_wanted(plan_ids)
    futures = [_turn_pool(rt.config.turn_threads).submit(
        turns.take, rt, batch, f.dispatcher, f.dispatching, worker, round_after=False,
        ask=retried) for batch in batches(plan_ids, rt.config.turn_threads)]
    errors = [err for fut in futures if (err := fut.exception()) is not None]
    f.dispatching.soon()
    if errors:
        raise errors[0]  # RQ retries the batch: a turn taken again finds nothing to redo
    return {"plans": len(plan_ids)}


#: Fewest plans a thread's batch of turns is given (a batch's fixed cost is a few statements).
BATCH_MIN = 8


def batches(plan_ids: Sequence[int], threads: int) -> list[list[int]]:
    """The plans dealt to at most ``threads`` batches of at least :data:`BATCH_MIN`."""
    n = max(1, min(threads, len(plan_ids) // BATCH_MIN))
    return [list(plan_ids[i::n]) for i in range(n) if plan_ids[i::n]]


_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _turn_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """This process's threads for turns (made on first use)."""
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="turn")
    return _pool


def _misconfigured(rt: Runtime, plan_id: int, error: str) -> None:
    rt.store.plans.start_turns(plan_id, 1, {})  # queued -> building, so that it can fail
    rt.store.plans.finish(plan_id, built=False, build={}, error=error)
    log.error("build_misconfigured", action="build", plan_id=plan_id, error=error)


@dataclasses.dataclass
class Fleet:
    """What this process's turns and its tracker share: one dispatcher, its dispatch rounds."""

    dispatcher: Dispatcher
    dispatching: Dispatching
    tracker: Tracker


_fleet: Fleet | None = None


def fleet() -> Fleet:
    """This process's dispatcher, dispatch rounds and tracker (made on first use)."""
    global _fleet
    if _fleet is None:
        rt = runtime()
        made = make_dispatcher(rt.config)
        # the Windmill dispatcher guards its own bookkeeping (its requests overlap); the
        # local one is called by one thread at a time
        dispatcher = made if getattr(made, "thread_safe", False) else Locked(made)
        wake = functools.partial(ask_turns, rt)
        dispatching = Dispatching(rt.store, dispatcher, rt.config, wake)
        _fleet = Fleet(dispatcher, dispatching,
                       Tracker(rt.store, dispatcher, rt.config, dispatching, wake))
    return _fleet


def start_threads(stop: threading.Event) -> list[threading.Thread]:
    """Run the fleet's tracker and this process's dispatch rounds in threads of this (build
    worker) process until ``stop`` is set; none when the build mode has no steps to track."""
    rt = runtime()
    if rt.config.build_mode == "flow":
        return []
    try:
        f = fleet()
    except ConfigurationError as exc:
        log.error("tracker_misconfigured", error=str(exc))
        return []
    tracker = threading.Thread(
        target=tracking.run, args=(f.tracker, rt.config.database_url, stop, rt.config.build_poll),
        name="planfleet-tracker", daemon=True)
    tracker.start()
    return [tracker, f.dispatching.start(stop)]


def _build_flow_job(rt: Runtime, plan_id: int, worker: str) -> str | None:
    record = rt.store.plans.claim(plan_id, worker, rt.config.build_stale)
    if record is None:
        log.info("build_skipped", action="build", plan_id=plan_id, reason="not queued")
        return None
    try:
        return _build_flow(rt, record, worker)
    except ConfigurationError as exc:
        rt.store.plans.finish(plan_id, built=False, build={}, error=str(exc))
        log.error("build_misconfigured", action="build", plan_id=plan_id, error=str(exc))
        return None


def _after(rt: Runtime, plan_id: int, status: models.PlanStatus) -> str:
    if status is models.PlanStatus.QUEUED:
        rt.queues.enqueue_builds([plan_id])  # handed back: for the next worker
    return str(status)


def _build_flow(rt: Runtime, record: models.PlanRecord, worker: str) -> str:
    from planfleet.workers.flow_building import FlowBuild

    if rt.config.dispatch != "windmill":
        raise ConfigurationError("build mode 'flow' needs PLANFLEET_DISPATCH=windmill")
    client = windmill_client(rt.config)
    try:
        return _after(rt, record.id,
                      FlowBuild(rt.store, client, rt.config, record, worker).run())
    finally:
        client.close()
