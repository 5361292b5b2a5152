"""End-to-end pipeline benchmark: inputs of N tasks each with a no-op script through real
plan and build workers (local runner), against bare RQ no-op jobs through the same Redis.

Prints inputs per second, drop -> built p50/p95, and the fleet's cost per input against the
cost of two bare RQ jobs (the two hops), both measured here in the same run.
Target: the fleet's cost per input, excluding script run time, <= 3x two bare RQ jobs.

    .venv/bin/python bench/pipeline.py [--inputs 500] [--tasks 20] [--build-workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from planfleet import queues  # noqa: E402
from planfleet.schema.repositories import FileVersion, Store  # noqa: E402

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


WORKER_CLASS = "planfleet.workers.worker.Worker"


def start_workers(
    env: dict[str, str], queue: str, n: int, log: Path, worker_class: str = WORKER_CLASS
) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        with open(log.with_name(f"{queue}-{i}.log"), "wb") as fh:
            procs.append(subprocess.Popen(
                [str(BIN / "rq"), "worker", queue, "--url", env["REDIS_URL"], "--serializer",
                 "json", "--with-scheduler", "--worker-class", worker_class],
                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU time of the worker processes and the children they reaped (RQ's work horses and,
    through them, the local executor) — not the script processes, which the kernel reaps."""
    import psutil

    total = 0.0
    for p in procs:
        t = psutil.Process(p.pid).cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
    return total


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)


def baseline(redis_url: str, jobs: int, workers: int, tmp: Path) -> tuple[float, float]:
    """Seconds for `jobs` bare no-op RQ jobs (os.getpid) through `workers` rq workers."""
    env = dict(os.environ, REDIS_URL=redis_url)
    conn = queues.connect(redis_url)
    import rq
    from rq.serializers import JSONSerializer

    q = rq.Queue("bench_noop", connection=conn, serializer=JSONSerializer)
    procs = start_workers(env, "bench_noop", workers, tmp / "noop.log", "rq.worker.Worker")
    time.sleep(1.5)
    t0 = time.perf_counter()
    with conn.pipeline() as pipe:
        q.enqueue_many([rq.Queue.prepare_data("os.getpid", result_ttl=60)
                        for _ in range(jobs)], pipeline=pipe)
        pipe.execute()
    cpu0 = cpu_seconds(procs)
    while q.count or q.started_job_registry.get_job_count(cleanup=False):
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    time.sleep(0.5)
    cpu = cpu_seconds(procs) - cpu0
    stop(procs)
    return elapsed, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=500)
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--build-workers", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="planfleet-bench-"))
    with _common.scratch_database("planfleet_bench_pipeline") as url, \
            _common.scratch_redis() as rurl:
        env = dict(os.environ, DATABASE_URL=url, REDIS_URL=rurl, PLANFLEET_LOG_FORMAT="json",
                   PLANFLEET_STATE_DIR=str(tmp / "state"), PLANFLEET_BUILD_POLL="0.02",
                   PLANFLEET_SCRIPTS_DIR=str(ROOT / "deploy" / "windmill"))
        store = Store.from_url(url)
        qs = queues.Queues(queues.connect(rurl))
        procs = start_workers(env, "plan_queue", 1, tmp / "plan.log")
        procs += start_workers(env, "build_queue", args.build_workers, tmp / "build.log")
        time.sleep(1.5)
        cpu0 = cpu_seconds(procs)
        dropped: dict[int, float] = {}
        t0 = time.time()
        for i in range(args.inputs):
            tasks = [{"id": f"I{i}-T{k}", "estimate": 1 + k % 7,
                      "depends_on": [f"I{i}-T{k // 2}"] if k else []}
                     for k in range(args.tasks)]
            body = yaml.safe_dump({"max_parallel": 8, "tasks": tasks}).encode()
            (out,) = store.inputs.record_files(str(tmp), [FileVersion(
                f"i{i}.yaml", len(body), i, hashlib.sha256(body).hexdigest(), body)], queue=True)
            qs.enqueue_plans([out.input_id])
            dropped[out.input_id] = time.time()
        while True:
            counts = store.plans.counts()
            if counts.get("built", 0) + counts.get("failed", 0) >= args.inputs:
                break
            time.sleep(0.2)
        wall = time.time() - t0
        time.sleep(0.5)
        fleet_cpu = cpu_seconds(procs) - cpu0
        with store.db.transaction() as cur:
            cur.execute("SELECT pending_input_id, extract(epoch FROM updated_at) AS done, "
                        "status::text FROM plans")
            rows = cur.fetchall()
            cur.execute("SELECT coalesce(sum((result->>'duration')::float), 0) AS s FROM steps")
            script_s = float(cur.fetchone()["s"])  # type: ignore[index]
        stop(procs)
        store.close()
        base, base_cpu = baseline(rurl, 2 * args.inputs, args.build_workers + 1, tmp)
    lat = sorted(float(r["done"]) - dropped[r["pending_input_id"]] for r in rows)
    failed = sum(r["status"] != "built" for r in rows)
    per_input = wall / args.inputs
    per_two = base / args.inputs
    workers = args.build_workers + 1
    print(f"inputs {args.inputs} x {args.tasks} tasks, 1 plan worker, {args.build_workers} "
          f"build workers; {failed} not built")
    print(f"inputs per second        {args.inputs / wall:.2f}")
    print(f"drop -> built p50        {_common.pct(lat, 50):.2f} s")
    print(f"drop -> built p95        {_common.pct(lat, 95):.2f} s")
    print(f"script run time (main)   {script_s:.1f} s in all")
    print(f"bare RQ: {2 * args.inputs} no-op jobs on {workers} workers in {base:.2f} s")
    print(f"fleet wall per input     {per_input * 1000:.1f} ms "
          f"= {per_input / per_two:.1f}x two bare RQ jobs (scripts included)")
    cost = fleet_cpu / args.inputs
    two = base_cpu / args.inputs
    ratio = cost / two
    print(f"worker CPU per input     {cost * 1000:.1f} ms (both hops, {args.tasks} steps; "
          f"script processes excluded)")
    print(f"bare RQ CPU per 2 jobs   {two * 1000:.1f} ms")
    print(f"ratio                    {ratio:.2f}x (target <= 3x) "
          f"{'target met' if ratio <= 3 else 'TARGET MISSED'}")
    return 0 if ratio <= 3 and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
