"""Revision benchmark: a large plan, half done, revised by a new version of its source.

A plan of ``--tasks`` tasks (chains of ten) is building with half of its tasks completed; a new
version changes the args of ``--changes`` tasks not yet done, adds as many and removes as many.
Reports the time to apply the revision (read, decide, write in one transaction, the plan's own
document typed already as in a turn; aim <= 1 s), the step
rows it wrote (aim: only the changed, added and removed ones: no statement touches the
unchanged steps), and, as the baseline measured in the same process, the time to start the new
version as a plan of its own (its steps created), the way a changed file was handled before.

    .venv/bin/python bench/revise.py [--tasks 10000 --changes 100]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _common  # noqa: E402

from planfleet import logs, queues  # noqa: E402
from planfleet.config import Config  # noqa: E402
from planfleet.dispatch import JobState, JobStatus  # noqa: E402
from planfleet.runtime import Runtime  # noqa: E402
from planfleet.schema.repositories import FileVersion, Store  # noqa: E402
from planfleet.workers import planning, revising, turns  # noqa: E402
from planfleet.workers.building import Build  # noqa: E402


class Quiet:
    """A dispatcher that does nothing (the benchmark measures Postgres and the decision)."""

    def submit(self, *args: Any) -> None: ...
    def submit_many(self, jobs: Any) -> dict[Any, Any]:
        return {}
    def status(self, job_ids: Any) -> dict[Any, JobStatus]:
        return {j: JobStatus(JobState.RUNNING) for j in job_ids}
    def cancel(self, job_id: Any, reason: str) -> None: ...
    def close(self) -> None: ...


def task_file(tasks: list[dict[str, Any]]) -> bytes:
    return yaml.safe_dump({"project": "big", "max_parallel": 50, "tasks": tasks},
                          sort_keys=False).encode()


def version(n: int, changes: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first version (``n`` tasks in chains of ten), and the second: the args of
    ``changes`` tasks of the second half changed, as many added and removed there."""
    def task(i: int) -> dict[str, Any]:
        t: dict[str, Any] = {"id": f"T{i:05d}", "title": f"Task {i}", "estimate": 10,
                             "script": "f/test/work", "args": {"n": i}}
        if i % 10:
            t["depends_on"] = [f"T{i - 1:05d}"]
        return t

    first = [task(i) for i in range(n)]
    second = [dict(t, args=dict(t["args"])) for t in first]
    half = n // 2
    # removed: the last task of chains of the second half (nothing depends on it)
    removed = {f"T{i:05d}" for i in range(half + 9, n, 10)[:changes]}
    changed = [t for t in second[half:] if t["id"] not in removed and t["id"][-1] == "3"]
    for t in changed[:changes]:
        t["args"]["n"] = -t["args"]["n"]
    second = [t for t in second if t["id"] not in removed]
    second += [{"id": f"N{i:05d}", "title": f"New {i}", "estimate": 5, "script": "f/test/work",
                "depends_on": [f"T{half + 10 * i:05d}"]} for i in range(changes)]
    return first, second


def record(rt: Runtime, content: bytes, k: int) -> int:
    (out,) = rt.store.inputs.record_files("/bench", [FileVersion(
        "big.yaml", len(content), k, hashlib.sha256(content).hexdigest(), content)], queue=True)
    assert out.input_id is not None
    return out.input_id


def step_versions(url: str, plan_id: int) -> dict[int, str]:
    """Every step row of the plan and the transaction that last wrote it."""
    with psycopg.connect(url) as conn:
        return {r[0]: str(r[1]) for r in conn.execute(
            "SELECT id, xmin FROM steps WHERE plan_id = %s", (plan_id,))}


def run(args: argparse.Namespace) -> dict[str, Any]:
    first, second = version(args.tasks, args.changes)
    with _common.scratch_database("planfleet_bench_revise") as url, \
            _common.scratch_redis() as rurl:
        config = Config(database_url=url, redis_url=rurl, scripts_dir=ROOT / "tests" / "scripts")
        store = Store.from_url(url)
        rt = Runtime(config=config, store=store, queues=queues.Queues(queues.connect(rurl)))
        store.settings.update(auto_build=True)
        plan_id = planning.plan_input(rt, record(rt, task_file(first), 1), "bench")
        assert plan_id is not None
        record_ = store.plans.get(plan_id)
        Build(store, Quiet(), config, record_, "bench").start()
        with psycopg.connect(url) as conn:  # half of it done
            conn.execute("UPDATE steps SET status = 'completed', windmill_job_id = gen_random_uuid(),"
                         " started_at = now(), finished_at = now(), result = '{}'"
                         " WHERE plan_id = %s AND task_id < %s",
                         (plan_id, f"T{args.tasks // 2:05d}"))
        assert planning.plan_input(rt, record(rt, task_file(second), 2), "bench") == plan_id
        before = step_versions(url, plan_id)
        current = store.plans.get(plan_id)
        old = turns.typed_plan(current)  # as a turn has it: typed once per process
        started = time.perf_counter()
        applied = revising.apply(rt, current, Quiet(), old)
        apply_s = time.perf_counter() - started
        assert applied
        after = step_versions(url, plan_id)
        written = sum(1 for i, x in after.items() if before.get(i) != x)
        diff = store.revisions.of_plan(plan_id)[-1].diff or {}
        # the baseline: the new version as a plan of its own, its steps created
        input_id = record(rt, task_file(second + [{"id": "X", "script": "f/test/work",
                                                    "title": "make it new"}]), 3)
        store.plans.cancel(plan_id, "bench")
        started = time.perf_counter()
        new_id = planning.plan_input(rt, input_id, "bench")
        assert new_id is not None and new_id != plan_id
        Build(store, Quiet(), config, store.plans.get(new_id), "bench").start()
        baseline_s = time.perf_counter() - started
        store.close()
    unchanged = args.tasks - 2 * args.changes
    return {"tasks": args.tasks, "changed": len(diff.get("changed", [])),
            "added": len(diff.get("added", [])), "removed": len(diff.get("removed", [])),
            "kept": len(diff.get("kept", [])), "apply_s": round(apply_s, 3),
            "rows_written": written, "unchanged_rows_written": max(0, written - 3 * args.changes),
            "unchanged": unchanged, "new_plan_s": round(baseline_s, 3),
            "apply_vs_new_plan": round(apply_s / baseline_s, 3)}


def main() -> int:
    logs.configure("auto", logging.WARNING)  # the report, not the fleet's info lines
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--changes", type=int, default=100)
    out = run(ap.parse_args())
    print(json.dumps(out, indent=1))
    print(f"revision applied in {out['apply_s']} s (aim 1 s), {out['apply_vs_new_plan']}x the "
          f"time to start the version as a new plan; {out['rows_written']} step rows written "
          f"({out['unchanged_rows_written']} of the {out['unchanged']} unchanged)")
    return 0 if out["unchanged_rows_written"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
