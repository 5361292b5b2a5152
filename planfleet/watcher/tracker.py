"""When to look at a file again: the stability schedule of the watcher (pure, no I/O)."""

from __future__ import annotations

from planfleet.watcher.intake import Seen


class StabilityTracker:
    """Candidates (names that may need recording) and the time each is next due.

    A file is stable once nothing wrote to it, renamed it or changed its metadata for
    ``window`` seconds: its mtime and its ctime are both that old. A writer cannot set ctime,
    so a copy that preserves an old mtime still waits out the window. The reader then checks
    that size and mtime did not move while it read (:func:`~planfleet.watcher.intake.read_stable`).
    """

    def __init__(self, window: float, tick: float) -> None:
        self.window = window
        self.tick = tick
        self._check_at: dict[str, float] = {}
        self._first_seen: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._check_at)

    def __contains__(self, name: str) -> bool:
        return name in self._check_at

    def touch(self, name: str, now: float, *, changed: bool = False) -> None:
        """Look at ``name`` at the next tick; ``changed``: it was just written to, so it
        cannot settle before a full window from now."""
        at = now + self.window if changed else now
        current = self._check_at.get(name)
        self._check_at[name] = at if current is None or changed else min(current, at)
        self._first_seen.setdefault(name, now)

    def forget(self, name: str) -> None:
        self._check_at.pop(name, None)
        self._first_seen.pop(name, None)

    def due(self, now: float) -> list[str]:
        """Names whose time to be looked at has come."""
        return [n for n, t in self._check_at.items() if t <= now]

    def observe(self, name: str, seen: Seen, now: float) -> bool:
        """Note what a look at ``name`` found. True: it is stable and no longer tracked;
        False: it is scheduled for the moment it may become stable."""
        first = self._first_seen.setdefault(name, now)
        quiet_since = seen.quiet_since
        if quiet_since > now + self.window:
            # a timestamp from the future (clock skew): count from when we first saw it
            quiet_since = first
        settled_at = quiet_since + self.window
        if settled_at <= now:
            self.forget(name)
            return True
        self._check_at[name] = max(settled_at, now + self.tick)
        return False
