"""The retry policy of a step: a pure decision the build worker persists."""

from __future__ import annotations

import dataclasses
import random


@dataclasses.dataclass(frozen=True)
class Decision:
    retry: bool
    delay: float = 0.0


def decide(
    tries: int, *, max_attempts: int, base: float, cap: float, rng: random.Random | None = None
) -> Decision:
    """After the ``tries``-th failed attempt: retry after ``base * 2**(tries-1)`` seconds
    (capped) with ±20 % jitter, while attempts remain."""
    if tries >= max_attempts:
        return Decision(retry=False)
    delay = min(cap, base * 2 ** (tries - 1))
    jitter = (rng or random).uniform(0.8, 1.2)
    return Decision(retry=True, delay=delay * jitter)
