"""The dispatch policy's rule for a plan's next ready task, offered in priority order.

One function, :func:`admit`, called by both places that start tasks: the planner's schedule
simulation (:func:`planfleet.planner.schedule.simulate`, which predicts when each task starts)
and the build's dispatch rounds (:func:`planfleet.workers.sharing.choose`, which starts them).
A plan that runs alone therefore starts its tasks when its schedule predicted. The order the
tasks are offered in is each plan's priority order (its schedule's key, the steps' rank); the
fleet's own bounds (free slots, solvers shared by plans) come in through ``solver_full``.

The rule, for the next ready task of a plan:

- :data:`HOLD` — it waits, and so does everything after it in its plan until a task ends: the
  plan runs ``max_parallel`` tasks, a task of it runs alone, or it runs alone itself
  (``parallel: false``) and waits for the plan's other tasks to end (so it cannot starve);
- :data:`PASS` — it waits for its solver (all of its slots busy); the tasks after it may start;
- :data:`START` — it takes a slot;
- :data:`ALONE` — it takes a slot, and nothing else of its plan starts while it runs.
"""

from __future__ import annotations

from typing import Final

START: Final = 0
ALONE: Final = 1
PASS: Final = 2
HOLD: Final = 3


def admit(alone: bool, running: int, limit: int, solver_full: bool, held: bool) -> int:
    """What happens to a plan's next ready task.

    ``alone``: the task runs alone (``parallel: false``); ``running``: tasks of its plan running
    now (those started earlier in the same round included); ``limit``: the plan's
    ``max_parallel``; ``solver_full``: every slot of its solver is busy; ``held``: its plan
    starts nothing more now (a task of it runs alone, or was held earlier in the round).
    """
    # Plain ints and one flat test chain: the planner's search calls this for every task of
    # every schedule it tries, so it stays as cheap as the inline code it replaced.
    if held or running >= limit:
        return HOLD
    if alone:
        return HOLD if running or solver_full else ALONE
    return PASS if solver_full else START
