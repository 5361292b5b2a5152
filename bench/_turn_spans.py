"""A build worker that writes down when each of its plans' turns began and ended, for
bench/fleet.py to check that no two turns of one plan ever ran at once, across processes.

    rq worker build_queue --worker-class _turn_spans.SpanningBuildWorker   (bench/ on the path)

Each turn appends ``plan_id start end`` (wall-clock seconds, taken while the turn holds its
plan's lock) to ``$PLANFLEET_BENCH_SPANS.<pid>``. Measurement only: the product is unchanged.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
import time
from typing import Any

from planfleet.workers import turns
from planfleet.workers.worker import BuildWorker

_lock = threading.Lock()
_lines: list[str] = []


def _flush() -> None:
    with _lock:
        if _lines:
            with open(f"{os.environ['PLANFLEET_BENCH_SPANS']}.{os.getpid()}", "a") as out:
                out.writelines(_lines)
            _lines.clear()


def _spanned(one: Any) -> Any:
    @functools.wraps(one)
    def wrapper(rt: Any, head: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return one(rt, head, *args, **kwargs)
        finally:
            line = f"{head.id} {start:.6f} {time.time():.6f}\n"
            with _lock:
                _lines.append(line)
            if len(_lines) >= 1000:
                _flush()

    return wrapper


class SpanningBuildWorker(BuildWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not getattr(turns._one, "__wrapped__", None):
            turns._one = _spanned(turns._one)  # type: ignore[assignment]
            atexit.register(_flush)
        super().__init__(*args, **kwargs)


def overlaps(paths: list[str]) -> tuple[int, int]:
    """(turns, pairs of one plan's turns that overlapped) in the span files."""
    spans: dict[int, list[tuple[float, float]]] = {}
    count = 0
    for path in paths:
        with open(path) as f:
            for line in f:
                plan, a, b = line.split()
                spans.setdefault(int(plan), []).append((float(a), float(b)))
                count += 1
    bad = 0
    for ss in spans.values():
        ss.sort()
        end = float("-inf")
        for a, b in ss:
            if a < end:
                bad += 1
            end = max(end, b)
    return count, bad
