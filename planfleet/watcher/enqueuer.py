"""Enqueuing plan jobs for recorded inputs, in a process of its own.

RQ's enqueue is CPU-bound Python (about a quarter of a millisecond a job). In a thread of the
watcher it would compete with the recording loop for the GIL; in a child process it runs on
another core while the watcher records the next files. Inputs are committed as ``queued``
before their ids are handed over, so ids lost with a dead child are enqueued again by the
reconciler.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import structlog

from planfleet import defaults, exceptions, logs

log = structlog.get_logger(__name__)


def _serve(redis_url: str, plan_queue: str, build_queue: str, inbox: Any, fmt: str) -> None:
    from planfleet import queues

    logs.configure(fmt)
    qs = queues.Queues(queues.connect(redis_url), plan_queue=plan_queue, build_queue=build_queue)
    done = False
    while not done:
        try:
            batch = inbox.get()
        except (EOFError, OSError):
            return  # the watcher is gone
        ids: list[int] = []
        while batch is not None:
            ids += batch
            if inbox.empty():
                break
            batch = inbox.get()
        done = batch is None
        for start in range(0, len(ids), defaults.RECORD_BATCH):
            chunk = ids[start : start + defaults.RECORD_BATCH]
            try:
                qs.enqueue_plans(chunk)
            except exceptions.QueueUnavailable as exc:
                # the inputs stay `queued` in Postgres; the reconciler enqueues them again
                log.error("enqueue_failed", action="enqueue", input_ids=chunk, error=str(exc))
            except Exception:  # noqa: BLE001 - the process must outlive any fault
                log.exception("enqueue_crashed", action="enqueue", input_ids=chunk)


class Enqueuer:
    """Hands input ids to the enqueuing child process (started again if it died)."""

    def __init__(self, redis_url: str, plan_queue: str, build_queue: str, log_format: str) -> None:
        self._args = (redis_url, plan_queue, build_queue)
        self._fmt = log_format
        self._ctx = multiprocessing.get_context("spawn")
        self._inbox: Any = None
        self._proc: Any = None
        self._start()

    def _start(self) -> None:
        self._inbox = self._ctx.SimpleQueue()
        self._proc = self._ctx.Process(
            target=_serve, args=(*self._args, self._inbox, self._fmt),
            name="planfleet-enqueuer", daemon=True,
        )
        self._proc.start()

    def submit(self, ids: list[int]) -> None:
        if not self._proc.is_alive():
            log.warning("enqueuer_restarted", action="enqueue")
            self._start()
        self._inbox.put(ids)

    def close(self) -> None:
        """Enqueue what was handed over, then stop the child."""
        if self._proc.is_alive():
            self._inbox.put(None)
            self._proc.join(timeout=60)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._inbox.close()
