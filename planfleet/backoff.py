"""Exponential waits between tries of something that may come back (Postgres, Redis, a
folder): the one helper every retry loop of the services uses.

    waits = Backoff(first=0.5, cap=10.0)
    while True:
        try:
            work(); waits.reset()
        except Unavailable:
            stop.wait(waits.next())

(A step's retries are a decision of the build with jitter and a count, in
:mod:`planfleet.workers.retry`; this is for waiting on a fault to pass.)
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Backoff:
    """``first``, then each wait ``factor`` times the last, never more than ``cap``."""

    first: float
    cap: float
    factor: float = 2.0
    _next: float | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap or self.factor < 1:
            raise ValueError(f"a backoff needs 0 < first <= cap and factor >= 1, got {self}")

    def next(self) -> float:
        """Seconds to wait before the next try."""
        wait = self.first if self._next is None else self._next
        self._next = min(wait * self.factor, self.cap)
        return wait

    def reset(self) -> None:
        """A try went well: the next fault waits ``first`` again."""
        self._next = None
