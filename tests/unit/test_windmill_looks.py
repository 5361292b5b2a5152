"""When the Windmill dispatcher looks again: at once while jobs end, less often while they
run quietly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from planfleet.dispatch.windmill import QUIET_CAP, WindmillDispatcher


def dispatcher(poll: float) -> Iterator[WindmillDispatcher]:
    d = WindmillDispatcher(client=None, poll=poll)  # type: ignore[arg-type]  # no request made
    yield d
    d._pool.shutdown()


@pytest.fixture
def looks() -> Iterator[WindmillDispatcher]:
    yield from dispatcher(0.2)


def test_a_look_that_found_an_end_or_a_new_job_is_followed_after_poll(
        looks: WindmillDispatcher) -> None:
    for _ in range(5):
        looks.next_wait(moved=False)
    assert looks.next_wait(moved=True) == 0.2


def test_quiet_looks_wait_twice_as_long_each_time_up_to_the_cap(
        looks: WindmillDispatcher) -> None:
    looks.next_wait(moved=True)
    waits = [looks.next_wait(moved=False) for _ in range(6)]
    assert waits == [0.4, 0.8, QUIET_CAP, QUIET_CAP, QUIET_CAP, QUIET_CAP]


def test_a_poll_longer_than_the_cap_is_kept() -> None:
    for d in dispatcher(5.0):
        assert d.next_wait(moved=True) == 5.0
        assert d.next_wait(moved=False) == 5.0
