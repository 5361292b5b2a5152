from __future__ import annotations

import pytest

from planfleet.backoff import Backoff


def test_doubles_up_to_the_cap_and_starts_over_after_reset():
    b = Backoff(first=0.5, cap=10.0)
    assert [b.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    b.reset()
    assert [b.next() for _ in range(2)] == [0.5, 1.0]


def test_factor():
    b = Backoff(first=0.05, cap=0.5, factor=3)
    assert [round(b.next(), 3) for _ in range(4)] == [0.05, 0.15, 0.45, 0.5]


@pytest.mark.parametrize("kwargs", [{"first": 0, "cap": 1}, {"first": 2, "cap": 1},
                                    {"first": 1, "cap": 2, "factor": 0.5}])
def test_refuses_nonsense(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)
