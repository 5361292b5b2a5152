"""Test solver that ends in a chosen way: records each execution (its args) under record_dir,
then, while fewer than ``fail_times`` executions came before, fails as ``mode`` says."""
from __future__ import annotations

import json
import os
import time


class TransientError(Exception):
    pass


class AgentUnavailable(Exception):
    pass


class SpecificationError(Exception):
    pass


def main(task_id: str, plan_id: int, record_dir: str, mode: str = "error",
         fail_times: int = 0, sleep: float = 0.0, solver: str = "",
         feedback: list | None = None, clarification: dict | None = None,
         down: str = "") -> dict:
    path = os.path.join(record_dir, f"{plan_id}-{task_id}.jsonl")
    before = 0
    if os.path.exists(path):
        with open(path) as fh:
            before = sum(1 for _ in fh)
    with open(path, "a") as fh:
        fh.write(json.dumps({"start": time.time(), "solver": solver, "feedback": feedback,
                             "clarification": clarification}) + "\n")
    if mode == "agent" and solver == down:
        raise AgentUnavailable(f"agent {solver} is not available")
    if mode == "spec" and clarification is None:
        raise SpecificationError("Which database should the migration target?")
    if before < fail_times:
        if mode == "transient":
            raise TransientError(f"{task_id}: flaky network")
        if mode == "timeout":
            time.sleep(sleep)
        if mode == "report":
            return {"status": "error", "error_type": "transient",
                    "message": f"{task_id}: reported a transient error"}
        if mode == "error":
            raise ValueError(f"{task_id}: wrong output {before + 1}")
    return {"task_id": task_id, "executions": before + 1, "solver": solver,
            "clarification": clarification}
