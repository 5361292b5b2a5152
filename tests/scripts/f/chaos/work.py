"""Chaos solver: sleeps a random while, fails transiently now and then, and records each
execution (its job id, whether it succeeded) in the ``chaos_executions`` table of ``dsn``."""
from __future__ import annotations

import os
import random
import time

import psycopg


def main(task_id: str, plan_id: int, dsn: str, sleep_max: float = 0.2,
         fail_rate: float = 0.1) -> dict:
    job_id = os.path.basename(os.getcwd())  # the local runner runs each job in its folder
    time.sleep(random.uniform(0, sleep_max))
    ok = random.random() >= fail_rate
    with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
        conn.execute("INSERT INTO chaos_executions (plan_id, task_id, job_id, success) "
                     "VALUES (%s, %s, %s, %s)", (plan_id, task_id, job_id, ok))
    if not ok:
        raise RuntimeError(f"{task_id}: transient failure")
    return {"task_id": task_id, "job_id": job_id}
