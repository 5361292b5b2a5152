"""Hand-back on shutdown: a build worker asked to stop (SIGTERM, a warm shutdown) tells its work
horse with SIGUSR1; the build in the horse then returns its plan to the queue at the next turn
instead of running it to the end (a build can take hours), and its running step jobs go on
and are adopted by the next worker."""

from __future__ import annotations

import signal
import threading

_requested = threading.Event()


def install() -> None:
    """Route SIGUSR1 to the hand-back flag (inherited by forked work horses)."""
    signal.signal(signal.SIGUSR1, lambda *_: _requested.set())


def requested() -> bool:
    return _requested.is_set()


def request() -> None:
    """Ask for the hand-back in this very process."""
    _requested.set()
