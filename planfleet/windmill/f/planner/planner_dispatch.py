"""Plans a YouTrack project's open issues with planfleet and dispatches the tasks that can start
now, up to ``max_parallel``, as jobs of the solver script; returns ``{dispatched, deferred}``.

Runs on a schedule (every 15 minutes). Each run plans afresh from YouTrack, so solver agents
should move an issue out of the query (e.g. set it In Progress) when they take it, and the
solver script must be idempotent. Needs the ``planfleet`` package on the Windmill worker
(a worker image with it installed, or a ``# requirements:`` line naming your package index).

Where YouTrack is and the token to read it are the fleet's configuration, never arguments:
any task file may name this script with arguments of its choosing, and must not make the fleet
fetch a URL it picked. They come from the worker's environment (``YOUTRACK_URL``,
``YOUTRACK_TOKEN``, ``PLANFLEET_SOLVER_SCRIPT``) or else from the Windmill variables
``f/planner/youtrack_url`` and ``f/planner/youtrack_token``.
"""

import json
import os

import wmill

from planfleet import youtrack
from planfleet.planner import plan_bytes

DEFAULT_SOLVER_SCRIPT = "f/planner/solver_dispatch"


def _setting(env: str, variable: str | None) -> str | None:
    """A connection setting: the worker's environment, else a Windmill variable."""
    value = os.environ.get(env)
    getter = getattr(wmill, "get_variable", None)
    if not value and variable and getter is not None:
        try:
            value = getter(variable)
        except Exception:  # noqa: BLE001 - an unset variable is reported below
            value = None
    return value or None


def _required(env: str, variable: str) -> str:
    value = _setting(env, variable)
    if not value:
        raise RuntimeError(f"{env} is not configured: set the Windmill variable {variable} "
                           f"or the worker's environment variable {env}")
    return value


def main(
    project: str,
    query: str = "",
    max_parallel: int = 3,
) -> dict:
    url = _required("YOUTRACK_URL", "f/planner/youtrack_url")
    token = _required("YOUTRACK_TOKEN", "f/planner/youtrack_token")
    solver_script = _setting("PLANFLEET_SOLVER_SCRIPT", None) or DEFAULT_SOLVER_SCRIPT
    issues = youtrack.fetch_issues(url, token, project, query or None)
    if not issues:
        return {"dispatched": [], "deferred": [], "issues": 0}
    plan = plan_bytes(json.dumps(issues).encode(), "youtrack.json", max_parallel=max_parallel)
    now = plan.immediate_batch[:max_parallel]
    dispatched = []
    for task_id in now:
        task = plan.tasks[task_id]
        job_id = wmill.run_script_by_path_async(solver_script, args={
            **task.args, "task_id": task_id, "title": task.title,
            "solver": task.solver[0] if task.solver else "",
        })
        dispatched.append({"task_id": task_id, "job_id": str(job_id)})
    started = set(now)
    return {
        "dispatched": dispatched,
        "deferred": [t for t in plan.priority_order if t not in started],
        "issues": len(issues),
        "makespan": plan.makespan,
        "critical_path": plan.critical_path,
    }
