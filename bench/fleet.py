"""Fleet scheduler benchmark: many plans at once on few build workers.

Windmill mode (default): the loopback Windmill (real HTTP on 127.0.0.1) in a process of its
own, ``--plans`` plans of ``--tasks`` tasks (random DAGs, jobs sleeping ``--min``..``--max``
seconds) planned, then queued for building all at once, built by ``--workers`` build worker
processes. Reports, against the targets of the fleet scheduler:

- every plan building (its first turn taken: steps created, ready ones competing for slots)
  within 10 s of being queued;
- dispatch latency, a dependency's completion on the server to the dependent's submission
  received by the server: p50 <= 0.5 s, p95 <= 1.5 s;
- capacity violations of a solver shared by every plan (``--capacity``): 0;
- status requests per job (get, list, clock, result_maybe): <= 2;
- the build worker's peak RSS <= 250 MB and CPU per dispatched step <= 5 ms;
- no two turns of one plan at once, across every build worker (each turn's span, written
  down by the workers of ``bench/_turn_spans.py``).

``--local``: ``--plans`` plans of ``--tasks`` independent one-second tasks on the local
runner's ``--slots`` slots; reports the slots' utilisation (target >= 90 %).

    .venv/bin/python bench/fleet.py [--plans 1000 --tasks 10 --workers 1]
    .venv/bin/python bench/fleet.py --local [--plans 200 --tasks 5 --slots 8]
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import rq
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _common  # noqa: E402
import _turn_spans  # noqa: E402

from planfleet import logs, models, queues  # noqa: E402
from planfleet.config import Config  # noqa: E402
from planfleet.runtime import Runtime  # noqa: E402
from planfleet.schema.repositories import FileVersion, Store  # noqa: E402
from planfleet.workers import planning  # noqa: E402

BIN = Path(sys.executable).parent
SCRIPT = "f/test/work"


def task_file(rng: random.Random, k: int, tasks: int, lo: float, hi: float,
              local: bool, record_dir: str) -> bytes:
    out = []
    for i in range(tasks):
        deps = [] if local else sorted({f"P{k}T{rng.randrange(i)}"
                                        for _ in range(rng.randint(0, min(i, 2)))})
        out.append({"id": f"P{k}T{i}", "estimate": rng.randint(5, 20), "depends_on": deps,
                    "script": SCRIPT, **({"solver": "agent"} if i % 2 == 0 else {}),
                    "args": {"sleep": 1.0 if local else round(rng.uniform(lo, hi), 2),
                             "record_dir": record_dir}})
    return yaml.safe_dump({"project": f"P{k}", "tasks": out, "max_parallel": tasks,
                           "solvers": {"agent": {"script": SCRIPT}}}).encode()


def plan_all(rt: Runtime, files: list[bytes]) -> list[int]:
    rt.store.settings.update(auto_build=False)
    ids = []
    for k, content in enumerate(files):
        (out,) = rt.store.inputs.record_files("/bench", [FileVersion(
            f"p{k}.yaml", len(content), k, hashlib.sha256(content).hexdigest(), content)],
            queue=True)
        if planning.plan_input(rt, out.input_id, "bench") is None:
            raise SystemExit(f"input {k} was not planned: {rt.store.inputs.get(out.input_id).error}")
        ids.append(out.input_id)
    return [p.id for p in rt.store.plans.list(limit=100_000)]


def proc_stats(pid: int) -> tuple[float, float]:
    """(peak RSS in MB, CPU seconds) of a live process."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return hwm / 1024, ticks / os.sysconf("SC_CLK_TCK")


def max_overlap(spans: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = now = 0
    for _, d in points:
        now += d
        most = max(most, now)
    return most


def pct(values: list[float], p: float) -> float:
    return _common.pct(values, p)


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    with _common.scratch_database("planfleet_bench_fleet") as url, \
            _common.scratch_redis() as rurl, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": rurl, "PLANFLEET_LOG_FORMAT": "json",
               "PLANFLEET_STATE_DIR": str(Path(tmp) / "state"),
               "PLANFLEET_SCRIPTS_DIR": str(ROOT / "tests" / "scripts"),
               "PLANFLEET_RUNNER_SLOTS": str(args.slots),
               "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench")]),
               "PLANFLEET_BENCH_SPANS": str(Path(tmp) / "spans")}
        fake = None
        if not args.local:
            fake = subprocess.Popen(
                [sys.executable, "-m", "tests.support.fake_windmill", "--script", SCRIPT,
                 "--workers", str(args.plans * 3 + 50)],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert fake.stdout is not None
            info = json.loads(fake.stdout.readline())
            env.update(PLANFLEET_DISPATCH="windmill", WINDMILL_URL=info["url"],
                       WINDMILL_TOKEN=info["token"], WINDMILL_WORKSPACE=info["workspace"])
        config = Config(database_url=url, redis_url=rurl, scripts_dir=ROOT / "tests" / "scripts")
        store = Store.from_url(url)
        rt = Runtime(config=config, store=store, queues=queues.Queues(queues.connect(rurl)))
        store.fleet.set_solver("agent", args.capacity)
        store.settings.update(max_running=1_000_000)
        (Path(tmp) / "records").mkdir()
        files = [task_file(rng, k, args.tasks, args.min, args.max, args.local,
                           str(Path(tmp) / "records")) for k in range(args.plans)]
        started = time.monotonic()
        plan_ids = plan_all(rt, files)
        planning_s = time.monotonic() - started
        log = open(os.environ.get("PLANFLEET_BENCH_LOG", os.devnull), "ab")  # noqa: SIM115
        workers = [subprocess.Popen(
            [str(BIN / "rq"), "worker", "build_queue", "--url", rurl, "--serializer", "json",
             "--with-scheduler", "--worker-class", "_turn_spans.SpanningBuildWorker"],
            env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=log)
            for _ in range(args.workers)]
        # the workers' start-up (imports, migrations) is not the measure
        while len(rq.Worker.all(queue=rt.queues.build)) < args.workers:
            time.sleep(0.1)
        base_cpu = [proc_stats(w.pid)[1] for w in workers]
        t0 = dt.datetime.now(dt.UTC)
        for pid in plan_ids:
            store.plans.queue(pid)
        rt.queues.enqueue_builds(plan_ids)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            counts = store.plans.counts()
            if counts.get("built", 0) + counts.get("failed", 0) == len(plan_ids):
                break
            time.sleep(0.5)
        seconds = (dt.datetime.now(dt.UTC) - t0).total_seconds()
        stats = [proc_stats(w.pid) for w in workers]
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        turns, overlapping = _turn_spans.overlaps(sorted(glob.glob(str(Path(tmp) / "spans.*"))))
        server: dict[str, Any] = {}
        if fake is not None:
            assert fake.stdin is not None and fake.stdout is not None
            fake.stdin.close()
            server = json.loads(fake.stdout.readline())
            fake.wait(60)
        steps = [s for p in plan_ids for s in store.steps.all(p)]
        counts = store.plans.counts()
        docs = {p: store.plans.get(p).plan or {} for p in plan_ids}
        building_at = {p: min((e.at for e in store.events.list(plan_id=p, kind="plan_status")
                               if "-> building" in e.message), default=None) for p in plan_ids}
        store.close()
    to_building = [(at - t0).total_seconds() for at in building_at.values() if at is not None]
    done_at = {(s.plan_id, s.task_id): (server.get("completed", {}).get(str(s.windmill_job_id))
                                        if server else (s.finished_at.timestamp()
                                                        if s.finished_at else None))
               for s in steps if s.status is models.StepStatus.COMPLETED}
    created = server.get("created", {})
    latency = []  # of steps no capacity holds back (no solver)
    # its parts: the last dependency's end on the server to its end recorded by its plan's
    # turn (the tracker's look, the turn's wait in the queue: the same turn marks the step
    # ready); that to the step's start (the wait for a dispatch round: its slot taken); that
    # to its submission received by the server (local mode: the start)
    recorded = {(s.plan_id, s.task_id): s.finished_at for s in steps
                if s.status is models.StepStatus.COMPLETED}
    parts: dict[str, list[float]] = {"seen": [], "started": [], "submitted": []}
    for s in steps:
        if s.solver is not None:
            continue
        deps = docs[s.plan_id].get("tasks", {}).get(s.task_id, {}).get("depends_on", [])
        ends = [done_at.get((s.plan_id, d)) for d in deps]
        if deps and s.started_at and all(e is not None for e in ends) and s.attempt == 1:
            end, last = max((e, d) for e, d in zip(ends, deps, strict=True) if e is not None)
            sent = created.get(str(s.windmill_job_id), s.started_at.timestamp())
            latency.append(sent - end)
            seen = recorded.get((s.plan_id, last))
            if seen is not None:
                parts["seen"].append(seen.timestamp() - end)
                parts["started"].append(s.started_at.timestamp() - seen.timestamp())
                parts["submitted"].append(sent - s.started_at.timestamp())
    spans = [(s.started_at.timestamp(), s.finished_at.timestamp()) for s in steps
             if s.started_at and s.finished_at]
    agent = [(s.started_at.timestamp(), s.finished_at.timestamp()) for s in steps
             if s.started_at and s.finished_at and s.solver == "agent"]
    dispatched = sum(1 for s in steps if s.started_at)
    cpu = sum(c for _, c in stats) - sum(base_cpu)
    busy = sum(b - a for a, b in spans)
    span = (max(b for _, b in spans) - min(a for a, _ in spans)) if spans else 0.0
    req = server.get("requests", {})
    return {
        "plans": len(plan_ids), "built": counts.get("built", 0), "steps": len(steps),
        "planning_s": round(planning_s, 1), "build_s": round(seconds, 1),
        "to_building_max_s": round(max(to_building, default=float("nan")), 2),
        "to_building_p50_s": round(pct(to_building, 50), 2),
        "latency_p50_s": round(pct(latency, 50), 3), "latency_p95_s": round(pct(latency, 95), 3),
        **{f"latency_{k}_p{p}_s": round(pct(v, p), 3) for k, v in parts.items() for p in (50, 95)},
        "capacity": args.capacity, "max_running_on_solver": max_overlap(agent),
        "turns": turns, "turns_of_one_plan_at_once": overlapping,
        "status_requests_per_job": round(sum(req.get(k, 0) for k in (
            "get", "list", "clock", "result_maybe")) / max(1, server.get("jobs", 1)), 2)
        if server else None,
        "worker_rss_mb": round(max(r for r, _ in stats), 1),
        "cpu_ms_per_step": round(cpu * 1000 / max(1, dispatched), 2),
        "utilisation": round(busy / (args.slots * span), 3) if args.local and span else None,
    }


def main() -> int:
    logs.configure("auto", logging.WARNING)  # the report, not the fleet's info lines
    ap = argparse.ArgumentParser()
    ap.add_argument("--plans", type=int, default=None)
    ap.add_argument("--tasks", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--min", type=float, default=5.0)
    ap.add_argument("--max", type=float, default=20.0)
    ap.add_argument("--capacity", type=int, default=600)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--local", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    args.plans = args.plans or (200 if args.local else 1000)
    args.tasks = args.tasks or (5 if args.local else 10)
    out = run(args)
    print(json.dumps(out, indent=1))
    ok = (out["built"] == out["plans"] and out["max_running_on_solver"] <= args.capacity
          and out["turns_of_one_plan_at_once"] == 0)
    if args.local:
        print(f"utilisation {out['utilisation']:.1%} (target >= 90 %)")
    else:
        print(f"plans building within {out['to_building_max_s']} s of being queued (target 10 s); "
              f"dispatch latency p50 {out['latency_p50_s']} s (0.5), p95 {out['latency_p95_s']} s "
              f"(1.5); {out['status_requests_per_job']} status requests per job (2); "
              f"RSS {out['worker_rss_mb']} MB (250); {out['cpu_ms_per_step']} ms CPU per step (5); "
              f"{out['turns_of_one_plan_at_once']} of {out['turns']} turns overlapping another "
              "of their plan (0)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
