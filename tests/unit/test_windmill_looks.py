"""When the Windmill dispatcher looks again: at once while jobs end, less often while they
run quietly."""

from __future__ import annotations

from planfleet.dispatch.windmill import QUIET_CAP, next_look


def test_a_look_that_found_an_end_or_a_new_job_is_followed_after_poll() -> None:
    assert next_look(QUIET_CAP, moved=True, poll=0.2) == 0.2


def test_quiet_looks_wait_twice_as_long_each_time_up_to_the_cap() -> None:
    waits, wait = [], 0.2
    for _ in range(6):
        wait = next_look(wait, moved=False, poll=0.2)
        waits.append(wait)
    assert waits == [0.4, 0.8, QUIET_CAP, QUIET_CAP, QUIET_CAP, QUIET_CAP]


def test_a_poll_longer_than_the_cap_is_kept() -> None:
    assert next_look(5.0, moved=False, poll=5.0) == 5.0
    assert next_look(5.0, moved=True, poll=5.0) == 5.0
