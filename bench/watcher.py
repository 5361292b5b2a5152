"""Watcher intake benchmark: 10,000 small files dropped at once.

Prints files recorded per second and the latency from "stable" (last change + stability
window) to "row committed", p50/p95. Target: all recorded, p95 < 0.5 s beyond the window.

    .venv/bin/python bench/watcher.py [--files N] [--window S]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from planfleet import logs, queues  # noqa: E402
from planfleet.config import Config  # noqa: E402
from planfleet.schema.repositories import Store  # noqa: E402
from planfleet.watcher import Watcher  # noqa: E402

DROP = """
import sys
from pathlib import Path
root, n = Path(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    (root / f"task-{i:05}.json").write_text(
        '{"tasks": [{"id": "T%d", "estimate": %d}]}' % (i, i % 90 + 1))
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--no-enqueue", action="store_true", help="auto_plan off: intake only")
    args = ap.parse_args()
    logs.configure("json", level=30)

    root = Path(tempfile.mkdtemp(prefix="planfleet-bench-"))
    with _common.scratch_database("planfleet_bench_watcher") as url, _common.scratch_redis() as rurl:
        config = Config(database_url=url, redis_url=rurl, watch_dir=root,
                        stability_window=args.window)
        store = Store.from_url(url)
        if args.no_enqueue:
            store.settings.update(auto_plan=False)
        watcher = Watcher(config, store, queues.Queues(queues.connect(rurl)))
        committed: dict[str, float] = {}
        record = store.inputs.record_files

        def timed_record(*a, **kw):  # type: ignore[no-untyped-def]
            out = record(*a, **kw)
            now = time.time()
            for o in out:
                committed[o.filename] = now
            return out

        store.inputs.record_files = timed_record  # type: ignore[method-assign]
        stop = threading.Event()
        thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
        thread.start()
        time.sleep(0.5)

        t0 = time.time()
        # another process drops the files, as a user or a sync tool would
        subprocess.run(
            [sys.executable, "-c", DROP, str(root), str(args.files)], check=True
        )
        dropped = time.time() - t0
        stable_at = {}
        for entry in os.scandir(root):
            st = entry.stat()
            stable_at[entry.name] = max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 + args.window
        deadline = time.time() + 120
        while len(committed) < args.files and time.time() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(10)
        with store.db.transaction() as cur:
            cur.execute("SELECT count(*) AS n, count(DISTINCT filename) AS d FROM pending_inputs")
            row = cur.fetchone()
        store.close()
    shutil.rmtree(root, ignore_errors=True)

    lat = sorted(max(0.0, committed[n] - stable_at[n]) for n in committed)
    span = max(committed.values()) - min(stable_at.values())
    assert row is not None
    print(f"files dropped            {args.files} in {dropped:.2f} s")
    print(f"rows recorded            {row['n']} ({row['d']} distinct names)")
    print(f"recorded per second      {len(committed) / span:,.0f}  (first stable -> last commit)")
    print(f"stable -> committed p50  {_common.pct(lat, 50) * 1000:.0f} ms")
    print(f"stable -> committed p95  {_common.pct(lat, 95) * 1000:.0f} ms   (target < 500 ms)")
    print(f"stable -> committed max  {lat[-1] * 1000:.0f} ms")
    ok = row["n"] == args.files and _common.pct(lat, 95) < 0.5
    print("target met" if ok else "TARGET MISSED")
    backlog(args.files)
    return 0 if ok else 1


def backlog(n: int) -> None:
    """Throughput alone: n files already in the folder when the watcher starts."""
    root = Path(tempfile.mkdtemp(prefix="planfleet-bench-"))
    subprocess.run([sys.executable, "-c", DROP, str(root), str(n)], check=True)
    with _common.scratch_database("planfleet_bench_watcher") as url, _common.scratch_redis() as rurl:
        config = Config(database_url=url, redis_url=rurl, watch_dir=root, stability_window=0.0)
        store = Store.from_url(url)
        watcher = Watcher(config, store, queues.Queues(queues.connect(rurl)))
        t0 = time.perf_counter()
        watcher.start()
        recorded = 0
        while recorded < n:
            recorded += len(watcher.step())
        elapsed = time.perf_counter() - t0
        watcher.stop()  # waits for the enqueuer to finish
        enqueued = time.perf_counter() - t0
        store.close()
    shutil.rmtree(root, ignore_errors=True)
    print(f"backlog of {n} at start  recorded in {elapsed:.2f} s = {n / elapsed:,.0f} files/s; "
          f"all enqueued after {enqueued:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
