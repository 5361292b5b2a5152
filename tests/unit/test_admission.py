"""The dispatch policy's rule for a plan's next ready task."""

from __future__ import annotations

import pytest

from planfleet.admission import ALONE, HOLD, PASS, START, admit


@pytest.mark.parametrize(
    ("alone", "running", "limit", "solver_full", "held", "verdict"),
    [
        (False, 0, 2, False, False, START),
        (False, 1, 2, False, False, START),
        # its solver is all busy: it waits, the next task may pass
        (False, 1, 2, True, False, PASS),
        # the plan runs max_parallel tasks: nothing more of it starts
        (False, 2, 2, False, False, HOLD),
        (False, 2, 2, True, False, HOLD),
        # a task of the plan runs alone (or the plan was held this round)
        (False, 0, 2, False, True, HOLD),
        # parallel: false starts only into an empty plan, and then holds the rest back ...
        (True, 0, 2, False, False, ALONE),
        # ... and while it waits for the plan to empty, nothing passes it
        (True, 1, 2, False, False, HOLD),
        (True, 0, 2, True, False, HOLD),
        (True, 0, 1, False, True, HOLD),
    ])
def test_the_rule(alone: bool, running: int, limit: int, solver_full: bool, held: bool,
                  verdict: int) -> None:
    assert admit(alone, running, limit, solver_full, held) == verdict
