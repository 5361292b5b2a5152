"""Hands a planfleet task to the solver agent named in its args and returns what it did.

This demo version records the hand-off and returns it. It is idempotent: Windmill (after a
zombie restart) and the local runner (after a crash) may run the same job twice, so running it
again for the same task gives the same result and does no new harm. A real solver must keep
that property, for example by keying its side effects on (plan_id, task_id).
"""

import time


def main(
    task_id: str,
    title: str = "",
    plan_id: int = 0,
    solver: str = "",
    issue_id: str = "",
    work_seconds: float = 0.0,
) -> dict:
    if work_seconds > 0:
        time.sleep(work_seconds)
    return {
        "status": "ok",
        "task_id": task_id,
        "plan_id": plan_id,
        "solver": solver or "default",
        "issue_id": issue_id or task_id,
        "summary": f"dispatched {task_id}: {title}".strip(),
    }
