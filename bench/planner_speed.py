"""Planner speed and memory: 1k, 10k and 100k tasks with about 5 dependencies each.

Each size runs in its own process (so peak RSS is that size's alone): JSON bytes -> parse ->
plan -> plan JSON. The baseline, in the same process, is networkx building the same graph and
sorting it topologically. Targets on a 2-core machine: 10k <= 1 s, 100k <= 10 s, <= 1 GiB.

    .venv/bin/python bench/planner_speed.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time

TARGETS = {10_000: 1.0, 100_000: 10.0}
MAX_RSS_MB = 1024


def document(n: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        deps = sorted({rng.randrange(0, i) for _ in range(5)}) if i else []
        tasks.append({"id": f"T{i}", "estimate": rng.randint(1, 120),
                      "priority": rng.choice([25, 50, 50, 50, 75]),
                      "depends_on": [f"T{d}" for d in deps]})
    return json.dumps({"project": "bench", "max_parallel": 16, "tasks": tasks}).encode()


def one(n: int) -> None:
    import networkx as nx

    from planfleet.planner import formats, plan

    content = document(n)
    t0 = time.perf_counter()
    tl = formats.load(content, "bench.json")
    t1 = time.perf_counter()
    p = plan(tl)
    t2 = time.perf_counter()
    out = p.model_dump_json()
    t3 = time.perf_counter()
    g = nx.DiGraph()
    g.add_nodes_from(t.id for t in tl.tasks)
    g.add_edges_from((d, t.id) for t in tl.tasks for d in t.depends_on)
    list(nx.topological_sort(g))
    t4 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "parse": t1 - t0, "plan": t2 - t1, "dump": t3 - t2,
                      "total": t3 - t0, "baseline": t4 - t3, "rss_mb": rss,
                      "evaluations": p.search["evaluations"], "bytes": len(out),
                      "gap": p.makespan / p.lower_bound - 1}))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--one", type=int)
    args = ap.parse_args()
    if args.one:
        one(args.one)
        return 0
    ok = True
    print(f"{'tasks':>7} {'parse s':>8} {'plan s':>8} {'dump s':>7} {'total s':>8} "
          f"{'vs nx':>7} {'RSS MB':>7} {'evals':>6} {'gap':>7}  target")
    for n in (int(x) for x in args.sizes.split(",")):
        r = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True,
                           text=True, check=True)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        target = TARGETS.get(n)
        met = (target is None or d["total"] <= target) and d["rss_mb"] <= MAX_RSS_MB
        ok &= met
        print(f"{n:>7} {d['parse']:>8.2f} {d['plan']:>8.2f} {d['dump']:>7.2f} "
              f"{d['total']:>8.2f} {d['total'] / d['baseline']:>6.1f}x {d['rss_mb']:>7.0f} "
              f"{d['evaluations']:>6} {d['gap'] * 100:>6.2f}%  "
              f"{'-' if target is None else f'<= {target:g} s'} {'ok' if met else 'MISSED'}")
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
