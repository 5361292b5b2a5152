"""The poison-pill rule of a job: when an unexpected error (or a worker's death) ends a job
over and over, the input or plan it works on is failed with that error instead of being
tried for ever. A pure decision; the worker applies it."""

from __future__ import annotations

import dataclasses

from planfleet import exceptions

#: Not the input's fault: the fleet's (retried by RQ and the reconciler however often), or a
#: record that moved on meanwhile (another job holds it now: nothing to fail).
NOT_POISON: tuple[type[BaseException], ...] = (
    exceptions.DatabaseUnavailable, exceptions.QueueUnavailable, exceptions.InvalidTransition)
#: Longest error message kept with the failed record.
MAX_MESSAGE = 2000


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``fail``: give up with ``error``; otherwise let the job fail and be tried again."""

    fail: bool
    error: str = ""


def after_error(exc: BaseException, attempts: int, max_attempts: int) -> Verdict:
    """What to do after attempt number ``attempts`` ended with ``exc``."""
    if isinstance(exc, NOT_POISON) or attempts < max_attempts:
        return Verdict(fail=False)
    text = f"{type(exc).__name__}: {exc}".replace("\x00", "\\x00")
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    return Verdict(fail=True, error=f"failed {attempts} times with an unexpected error: {text}")


def before_start(attempts: int, max_attempts: int) -> Verdict:
    """Attempt number ``attempts`` is about to start: attempts that never ended (the worker
    was killed, ran out of memory) count too, with a margin for transient faults."""
    limit = 3 * max_attempts
    if attempts <= limit:
        return Verdict(fail=False)
    return Verdict(fail=True, error=f"started {attempts - 1} times without finishing (the "
                   "worker died or was stopped each time); not tried again")
