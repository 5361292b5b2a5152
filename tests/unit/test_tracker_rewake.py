"""How often the tracker asks again for a turn that has not come."""

from __future__ import annotations

from planfleet.workers.tracker import REWAKE, REWAKE_CAP, _due


def test_a_turn_not_taken_is_asked_for_again_at_doubling_intervals_up_to_a_cap() -> None:
    woken: dict[int, tuple[float, float]] = {}
    assert not _due(woken, 7, 100.0)  # first seen: it was just asked for
    asked = [t for t in [100.0 + x / 10 for x in range(0, 3000)] if _due(woken, 7, t)]
    gaps = [round(b - a, 1) for a, b in zip([100.0, *asked], asked, strict=False)]
    assert gaps[:5] == [REWAKE, REWAKE * 2, REWAKE * 4, REWAKE * 8, REWAKE * 16]
    assert max(gaps) == REWAKE_CAP and gaps[-1] == REWAKE_CAP
