"""Plans a YouTrack project's open issues with planfleet and dispatches the tasks that can start
now, up to ``max_parallel``, as jobs of the solver script; returns ``{dispatched, deferred}``.

Runs on a schedule (every 15 minutes). Each run plans afresh from YouTrack, so solver agents
should move an issue out of the query (e.g. set it In Progress) when they take it, and the
solver script must be idempotent. Needs the ``planfleet`` package on the Windmill worker
(a worker image with it installed, or a ``# requirements:`` line naming your package index).
"""

import json

import wmill

from planfleet import youtrack
from planfleet.planner import plan_bytes


def main(
    youtrack_url: str,
    youtrack_token: str,
    project: str,
    query: str = "",
    max_parallel: int = 3,
    solver_script: str = "f/planner/solver_dispatch",
) -> dict:
    issues = youtrack.fetch_issues(youtrack_url, youtrack_token, project, query or None)
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
