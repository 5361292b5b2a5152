"""Test quality check: passes once the step ran at least ``qa_pass_from`` times (its output's
``executions``), else fails with a finding."""
from __future__ import annotations


def main(task_id: str, output: dict | None = None, args: dict | None = None) -> dict:
    need = int((args or {}).get("qa_pass_from", 1))
    runs = int((output or {}).get("executions", 0))
    if runs >= need:
        return {"passed": True, "findings": []}
    return {"passed": False, "findings": [f"{task_id}: output of run {runs} is incomplete"]}
