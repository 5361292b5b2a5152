"""Test solver: records each execution (start, end, job) under record_dir, sleeps, and fails
while `fail_times` earlier executions of the task have not happened yet, or while the file
`<record_dir>/<task_id>.fail` exists."""
from __future__ import annotations

import json
import os
import time


def main(task_id: str, plan_id: int, record_dir: str, sleep: float = 0.05,
         fail_times: int = 0) -> dict:
    path = os.path.join(record_dir, f"{plan_id}-{task_id}.jsonl")
    before = 0
    if os.path.exists(path):
        with open(path) as fh:
            before = sum(1 for _ in fh)
    start = time.time()
    time.sleep(sleep)
    end = time.time()
    with open(path, "a") as fh:
        fh.write(json.dumps({"start": start, "end": end, "pid": os.getpid(), "sleep": sleep}) + "\n")
    if before < fail_times:
        raise RuntimeError(f"{task_id}: planned failure {before + 1} of {fail_times}")
    if os.path.exists(os.path.join(record_dir, f"{task_id}.fail")):
        raise RuntimeError(f"{task_id}: told to fail")
    return {"task_id": task_id, "executions": before + 1}
