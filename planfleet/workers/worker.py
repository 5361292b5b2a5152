"""The RQ worker class of the fleet: an ``rq.Worker`` that does the expensive start-up once,
survives Redis outages, and hands builds back on a warm shutdown.

RQ forks a work horse per job. Without this class every horse would import the planner
(networkx), configure logging and check the migrations anew — a few hundred milliseconds per
job. Here the parent does it once and each horse inherits it through fork.

RQ's work loop quits on an unexpected error — most often Redis going away (a restart, a
network cut); under ``planfleet up`` one exiting process stops the whole fleet. This class
waits for Redis to answer and works again instead (with a backoff if the loop keeps ending):
jobs lost with Redis are re-enqueued from Postgres by the reconciler.

On a warm shutdown (SIGTERM) it also asks the running horse to hand its build back (see
:mod:`planfleet.workers.shutdown`) rather than waiting for the whole plan to be built.

    rq worker plan_queue --worker-class planfleet.workers.worker.Worker --serializer json
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import redis
import rq
import structlog
from rq.defaults import DEFAULT_WORKER_TTL
from rq.job import Job
from rq.worker import WorkerStatus

from planfleet.backoff import Backoff
from planfleet.queues import turn_queue
from planfleet.workers import jobs, shutdown

log = structlog.get_logger(__name__)


#: Seconds between RQ's maintenance passes (600 by default), which also restart a scheduler
#: that died (killed with its worker, or lost with Redis): retries wait at most this long.
MAINTENANCE_INTERVAL = 30


class Worker(rq.Worker):
    #: it takes plans' turns (a build worker): its Postgres pool serves its turn threads
    TURNS = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL)
        super().__init__(*args, **kwargs)
        shutdown.install()
        jobs.preload(turns=self.TURNS)

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            try:
                os.kill(self.horse_pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass

    def work(self, *args: Any, **kwargs: Any) -> bool:
        worked = False
        waits = Backoff(first=0.5, cap=30.0)
        while True:
            started = time.monotonic()
            try:
                worked = super().work(*args, **kwargs) or worked
            except redis.exceptions.ConnectionError as exc:
                log.warning("worker_teardown_failed", error=str(exc))
            if kwargs.get("burst") or self._stop_requested or self._shutdown_requested_date:
                return worked
            # RQ's loop ended on an error (it logged it): most often Redis went away. Work
            # again once Redis answers, backing off if the loop keeps ending at once.
            if time.monotonic() - started > 60:
                waits.reset()
            delay = waits.next()
            log.warning("worker_loop_restarting", worker=self.name, wait=delay)
            time.sleep(delay)
            self._wait_for_redis()

    def _redis_answers(self) -> bool:
        try:
            return bool(self.connection.ping())
        except redis.exceptions.RedisError:
            return False

    def _wait_for_redis(self) -> None:
        waits = Backoff(first=0.5, cap=10.0)
        while not self._redis_answers():
            delay = waits.next()
            log.warning("waiting_for_redis", worker=self.name, wait=delay)
            time.sleep(delay)
        if self.horse_pid:
            # a job that was running goes on in its horse: let it end before taking another
            try:
                os.waitpid(self.horse_pid, 0)
            except ChildProcessError:
                pass
            self._horse_pid = 0
        try:
            self.register_death()  # the old registration, if Redis kept it
        except redis.exceptions.RedisError:
            pass
        log.info("redis_back", worker=self.name)


def _name(queue: str | rq.Queue) -> str:
    return queue if isinstance(queue, str) else queue.name


def _turns_of(queue: str | rq.Queue) -> str | rq.Queue:
    """The turn queue beside a build queue (a name for a name, a queue for a queue)."""
    if isinstance(queue, str):
        return turn_queue(queue)
    return rq.Queue(turn_queue(queue.name), connection=queue.connection,
                    serializer=queue.serializer)


class BuildWorker(Worker):
    """The build worker: runs plans' turns in its own process (a turn is short, so no work
    horse is forked for it, as rq's ``SimpleWorker``), the fleet's tracker in a thread
    (one build worker of the fleet tracks at a time), and its dispatch rounds in another (a
    batch of turns asks for a round and the next job's turns go on meanwhile).

        rq worker build_queue --worker-class planfleet.workers.worker.BuildWorker --serializer json
    """

    TURNS = True

    def __init__(self, queues: Any, *args: Any, **kwargs: Any) -> None:
        # each build queue's turn queue first: turns before new builds, in the order asked
        given = list(queues) if isinstance(queues, (list, tuple)) else [queues]
        names = {_name(q) for q in given}
        first = [t for t in (_turns_of(q) for q in given) if _name(t) not in names]
        super().__init__(first + given, *args, **kwargs)
        self._tracking = threading.Event()
        self._threads: list[threading.Thread] | None = None

    def execute_job(self, job: Job, queue: rq.Queue) -> None:
        self.prepare_execution(job)
        self.perform_job(job, queue)
        self.set_state(WorkerStatus.IDLE)

    def get_heartbeat_ttl(self, job: Job) -> int:
        if job.timeout == -1:
            return DEFAULT_WORKER_TTL
        return int(job.timeout or DEFAULT_WORKER_TTL) + 60

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        shutdown.request()  # a flow build in this very process hands its plan back

    def work(self, *args: Any, **kwargs: Any) -> bool:
        if self._threads is None and not kwargs.get("burst"):
            self._threads = jobs.start_threads(self._tracking)
        try:
            return super().work(*args, **kwargs)
        finally:
            self._tracking.set()
