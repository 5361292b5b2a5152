"""The dispatch rounds' thread: asks never wait for a round, asks made during one are served
by one more, and without the thread a round runs in the asker's thread."""

from __future__ import annotations

import threading
import time

from planfleet.config import Config
from planfleet.workers.dispatching import Dispatching


class Rounds(Dispatching):
    """Dispatching whose round records its thread and can be held mid-round."""

    def __init__(self) -> None:
        super().__init__(store=None, dispatcher=None, config=Config(),  # type: ignore[arg-type]
                         wake=lambda ids: None)
        self.threads: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.done = threading.Semaphore(0)

    def round(self) -> int:
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        self.release.wait(10)
        self.done.release()
        return 0


def test_without_the_thread_a_round_runs_in_the_askers_thread() -> None:
    rounds = Rounds()
    rounds.soon()
    assert rounds.threads == [threading.current_thread().name]


def test_unless_recent_skips_a_round_right_after_one() -> None:
    rounds = Rounds()
    rounds.soon()
    rounds._last = time.monotonic()
    rounds.soon(unless_recent=True)
    assert len(rounds.threads) == 1


def test_asks_during_a_round_are_served_by_one_more_round() -> None:
    rounds = Rounds()
    stop = threading.Event()
    thread = rounds.start(stop)
    try:
        rounds.release.clear()
        rounds.soon()  # returns at once, though the round will block
        assert rounds.entered.wait(5)
        for _ in range(50):  # many asks while the first round runs
            rounds.soon()
        rounds.release.set()
        assert rounds.done.acquire(timeout=5)  # the first round
        assert rounds.done.acquire(timeout=5)  # one more for all the asks made meanwhile
        assert not rounds.done.acquire(timeout=0.3)  # and no other
        assert rounds.threads == ["planfleet-dispatch", "planfleet-dispatch"]
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
