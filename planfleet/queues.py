"""RQ transport: the two queues and the jobs they carry. Payloads are ids only.

Redis holds only "work to look at": a lost or doubled job is harmless because every job
claims its row in Postgres with a guarded transition before acting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
from collections.abc import Callable, Sequence
from typing import Any

import redis
import rq
from rq.serializers import JSONSerializer

from planfleet import defaults, exceptions, processes

#: Dotted paths of the job functions, so enqueuers need not import the workers.
PLAN_JOB = "planfleet.workers.jobs.plan_input"
BUILD_JOB = "planfleet.workers.jobs.build_plan"
TURNS_JOB = "planfleet.workers.jobs.build_plans"


def _shown(payload: Any) -> str:
    """A job's argument as its description shows it (a long list of ids cut short)."""
    if isinstance(payload, list) and len(payload) > 5:
        return f"[{', '.join(map(str, payload[:5]))}, … {len(payload)} plans]"
    return str(payload)


def connect(url: str) -> redis.Redis:
    """A Redis client for ``url`` (``redis://`` or ``unix://``)."""
    return redis.Redis.from_url(url, health_check_interval=30)


def turn_queue(build_queue: str) -> str:
    """The queue of plans' turns beside ``build_queue`` (build workers take its jobs first)."""
    return f"{build_queue}_turns"


class Queues:
    """Enqueues plan and build jobs on RQ with the JSON serializer."""

    def __init__(
        self,
        connection: redis.Redis,
        *,
        plan_queue: str = defaults.PLAN_QUEUE,
        build_queue: str = defaults.BUILD_QUEUE,
    ) -> None:
        self.connection = connection
        self.plan = rq.Queue(plan_queue, connection=connection, serializer=JSONSerializer)
        self.build = rq.Queue(build_queue, connection=connection, serializer=JSONSerializer)
        self.turns = rq.Queue(turn_queue(build_queue), connection=connection,
                              serializer=JSONSerializer)

    @staticmethod
    def _retry() -> rq.Retry:
        return rq.Retry(max=defaults.JOB_RETRY_MAX, interval=list(defaults.JOB_RETRY_INTERVALS))

    def _enqueue(
        self, queue: rq.Queue, func: str, payloads: Sequence[Any], timeout: int,
    ) -> list[str]:
        """One job of ``func`` per payload (its one argument: an id, or a list of ids)."""
        if not payloads:
            return []
        datas = [
            rq.Queue.prepare_data(
                func,
                args=(x,),
                timeout=timeout,
                result_ttl=defaults.JOB_RESULT_TTL,
                retry=self._retry(),
                description=f"{func.rsplit('.', 1)[-1]}({_shown(x)})",
            )
            for x in payloads
        ]
        try:
            with self.connection.pipeline() as pipe:
                jobs = queue.enqueue_many(datas, pipeline=pipe)
                pipe.execute()
        except redis.RedisError as exc:
            raise exceptions.QueueUnavailable(f"Redis is not reachable: {exc}") from exc
        return [job.id for job in jobs]

    def enqueue_plans(self, input_ids: Sequence[int]) -> list[str]:
        """Enqueue ``plan_input(id)`` for each input; returns the RQ job ids."""
        return self._enqueue(self.plan, PLAN_JOB, input_ids, defaults.PLAN_JOB_TIMEOUT)

    def enqueue_builds(self, plan_ids: Sequence[int]) -> list[str]:
        """Enqueue ``build_plan(id)`` for each plan; returns the RQ job ids."""
        return self._enqueue(self.build, BUILD_JOB, plan_ids, defaults.BUILD_JOB_TIMEOUT)

    def enqueue_turns(self, plan_ids: Sequence[int]) -> list[str]:
        """Enqueue the plans' turns, up to :data:`~planfleet.defaults.TURN_BATCH` plans a job
        (``build_plans(ids)``), on the turn queue, which build workers empty before they take
        a build job (what ended is acted on first, not after a burst of new plans) and in the
        order asked (the oldest ask first, however many come after); returns the RQ job ids."""
        ids = list(plan_ids)
        return self._enqueue(self.turns, TURNS_JOB, [
            ids[k:k + defaults.TURN_BATCH] for k in range(0, len(ids), defaults.TURN_BATCH)],
            defaults.TURN_JOB_TIMEOUT)


@dataclasses.dataclass(frozen=True)
class QueueStats:
    name: str
    #: jobs waiting
    depth: int
    started: int
    failed: int
    #: jobs waiting for a retry or a scheduled time
    scheduled: int
    workers: int
    #: workers running a job now
    busy: int


def live_workers(workers: Sequence[rq.Worker], hostname: str, alive: Callable[[int], bool],
                 now: dt.datetime) -> list[rq.Worker]:
    """The workers that still live: RQ keeps a killed worker's record until its TTL ends
    (minutes). A worker of this machine whose process is gone is dead at once; another
    machine's is dead when its heartbeat is older than its TTL."""
    out = []
    for w in workers:
        if w.hostname == hostname and w.pid and not alive(w.pid):
            continue
        beat = w.last_heartbeat
        if beat is not None:
            beat = beat if beat.tzinfo else beat.replace(tzinfo=dt.UTC)
            if (now - beat).total_seconds() > w.worker_ttl + 60:
                continue
        out.append(w)
    return out


def stats(queue: rq.Queue) -> QueueStats:
    """What RQ knows about ``queue``: waiting, started, failed and scheduled jobs, workers."""
    try:
        workers = live_workers(rq.Worker.all(queue=queue), socket.gethostname(),
                               processes.alive, dt.datetime.now(dt.UTC))
        return QueueStats(
            name=queue.name, depth=queue.count,
            # cleanup=False: a registry's cleanup fails abandoned jobs, not a reader's business
            started=queue.started_job_registry.get_job_count(cleanup=False),
            failed=queue.failed_job_registry.get_job_count(cleanup=False),
            scheduled=queue.scheduled_job_registry.get_job_count(cleanup=False),
            workers=len(workers), busy=sum(1 for w in workers if w.get_state() == "busy"))
    except redis.RedisError as exc:
        raise exceptions.QueueUnavailable(f"Redis is not reachable: {exc}") from exc
