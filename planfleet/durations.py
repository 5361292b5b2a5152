"""Durations: two kinds, named by what they measure, and one way of showing them.

- **Work** (a task's ``estimate``): working time, as issue trackers count it — a day is 8
  hours, a week 5 days. A bare number is minutes. :func:`parse_work_minutes`.
- **Wall-clock** (a task's ``timeout``, ``planfleet prune --older-than``, any age or wait): a
  day is 24 hours, a week 7 days. A bare number is seconds. :func:`parse_wall_seconds`.

Both read ``2w``, ``1d``, ``1h30m``, ``90m``, ``90 min``, ``45s``, ``1.5h``. Every duration
planfleet shows (CLI, web UI, charts) goes through :func:`format_seconds`: ``45s``, ``12m``,
``1h30m``, ``10h``, ``50h`` — hours at most, so a shown "day" never means two things.
Planner times (schedule, makespan, lower bound) are minutes; API fields say their unit in
their name (``makespan_minutes``, ``duration_seconds``).
"""

from __future__ import annotations

import math
import re
from typing import Any

_DURATION = re.compile(
    r"^\s*(?:(?P<w>\d+(?:\.\d+)?)\s*w(?:eeks?|ks?)?)?\s*"
    r"(?:(?P<d>\d+(?:\.\d+)?)\s*d(?:ays?)?)?\s*"
    r"(?:(?P<h>\d+(?:\.\d+)?)\s*h(?:ours?|rs?)?)?\s*"
    r"(?:(?P<m>\d+(?:\.\d+)?)\s*m(?:in|ins|inutes?)?)?\s*"
    r"(?:(?P<s>\d+(?:\.\d+)?)\s*s(?:ec|ecs|econds?)?)?\s*$",
    re.IGNORECASE,
)
_BARE = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")

#: Seconds per unit in working time (estimates).
WORK_UNITS = {"w": 5 * 8 * 3600, "d": 8 * 3600, "h": 3600, "m": 60, "s": 1}
#: Seconds per unit in wall-clock time (timeouts, ages).
WALL_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def _seconds(value: Any, units: dict[str, int], bare: float, what: str) -> float:
    """Seconds from a number (in ``bare`` seconds) or a duration string."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what} must be a number or a duration like '2h', got {value!r}")
    if isinstance(value, str) and not _BARE.match(value):
        m = _DURATION.match(value)
        if not value.strip() or m is None or not any(m.groupdict().values()):
            raise ValueError(f"{what} {value!r} is not a number or a duration like '2h'")
        seconds = sum(float(v) * units[k] for k, v in m.groupdict().items() if v)
    else:
        seconds = float(value) * bare
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be finite and >= 0, got {value!r}")
    return seconds


def parse_work_minutes(value: Any, what: str = "estimate") -> float:
    """Minutes of working time (a day is 8 hours); a bare number is minutes."""
    return _seconds(value, WORK_UNITS, 60, what) / 60


def parse_wall_seconds(value: Any, what: str = "duration") -> float:
    """Seconds of wall-clock time (a day is 24 hours); a bare number is seconds."""
    return _seconds(value, WALL_UNITS, 1, what)


def format_seconds(seconds: float | None) -> str:
    """``0.25s``, ``45s``, ``12m``, ``12m30s``, ``1h30m``, ``10h``, ``50h`` ('' for None)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 1 and seconds != 0 else f"{seconds:.3g}s"
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m" if m else f"{h}h"
    return f"{m}m{s}s" if s else f"{m}m"


def format_minutes(minutes: float | None) -> str:
    """A duration in minutes (the planner's unit), shown as :func:`format_seconds` does."""
    return "" if minutes is None else format_seconds(minutes * 60)
