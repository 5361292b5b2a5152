"""Which RQ worker records still stand for a live worker (planfleet.queues.live_workers)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

from planfleet.queues import live_workers

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def worker(host: str, pid: int, beat_ago: float | None, ttl: int = 420) -> Any:
    beat = None if beat_ago is None else NOW - dt.timedelta(seconds=beat_ago)
    return SimpleNamespace(hostname=host, pid=pid, last_heartbeat=beat, worker_ttl=ttl)


def test_a_dead_process_of_this_machine_is_dropped_at_once() -> None:
    ws = [worker("here", 1, 5), worker("here", 2, 5)]
    assert live_workers(ws, "here", lambda pid: pid == 1, NOW) == [ws[0]]


def test_another_machines_worker_counts_until_its_heartbeat_is_past_its_ttl() -> None:
    fresh, idle, stale = worker("there", 7, 30), worker("there", 8, 400), worker("there", 9, 500)
    assert live_workers([fresh, idle, stale], "here", lambda pid: False, NOW) == [fresh, idle]


def test_a_naive_heartbeat_is_taken_as_utc() -> None:
    w = worker("there", 7, None)
    w.last_heartbeat = (NOW - dt.timedelta(seconds=1000)).replace(tzinfo=None)
    assert live_workers([w], "here", lambda pid: True, NOW) == []
