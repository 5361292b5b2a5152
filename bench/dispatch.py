"""Windmill dispatch benchmark: N jobs through the loopback Windmill (real HTTP on 127.0.0.1).

Measures, in one run:
- submissions per second of the dispatcher (``submit_many``: kept-alive connections, bounded
  concurrency) against a naive loop that opens a connection per request (``httpx.post``), and
  against a leaner naive loop (a bare ``http.client`` connection per request);
- status requests per completed job while the dispatcher tracks all N to completion.
Targets: dispatcher >= 5x the naive loop; <= 2 status requests per completed job.

    .venv/bin/python bench/dispatch.py [--jobs 5000] [--batch 100]
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planfleet.dispatch import Submission  # noqa: E402
from planfleet.dispatch.windmill import WindmillDispatcher  # noqa: E402
from planfleet.dispatch.windmill_api import WindmillClient  # noqa: E402

SCRIPT = "f/bench/noop"


class Server:
    """The loopback Windmill in a process of its own (so the client has its own GIL)."""

    def __init__(self, workers: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_windmill", "--script", SCRIPT,
             "--workers", str(workers)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.url, self.token, self.workspace = info["url"], info["token"], info["workspace"]
        self.port = int(self.url.rsplit(":", 1)[1])

    def close(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        counts: dict[str, int] = json.loads(self.proc.stdout.readline())
        self.proc.wait(30)
        return counts

def naive_httpx(fake: Server, n: int) -> float:
    url = f"{fake.url}/api/w/{fake.workspace}/jobs/run/p/{SCRIPT}"
    start = time.perf_counter()
    for i in range(n):
        r = httpx.post(url, params={"job_id": str(uuid.uuid4())}, json={"task_id": f"h{i}"},
                       headers={"Authorization": f"Bearer {fake.token}"})
        assert r.status_code == 201, r.text
    return n / (time.perf_counter() - start)


def naive_http_client(fake: Server, n: int) -> float:
    path = f"/api/w/{fake.workspace}/jobs/run/p/{SCRIPT}"
    start = time.perf_counter()
    for i in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", fake.port)
        conn.request("POST", f"{path}?job_id={uuid.uuid4()}",
                     body=json.dumps({"task_id": f"c{i}"}),
                     headers={"Authorization": f"Bearer {fake.token}",
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 201
        conn.close()
    return n / (time.perf_counter() - start)


def dispatcher_run(fake: Server, n: int, batch: int) -> tuple[float, float, dict[str, int],
                                                                     float]:
    client = WindmillClient(fake.url, fake.token, fake.workspace)
    d = WindmillDispatcher(client)  # the worker's defaults (poll 0.5 s, 8 connections)
    ids = [uuid.uuid4() for _ in range(n)]
    start = time.perf_counter()
    for k in range(0, n, batch):
        errors = d.submit_many([Submission(j, SCRIPT, {"task_id": f"d{k + i}"}, 60)
                                for i, j in enumerate(ids[k:k + batch])])
        assert not any(errors.values()), errors
    rate = n / (time.perf_counter() - start)
    submits = client.requests.get("run_script", 0)
    t0 = time.perf_counter()
    while True:
        states = d.status(ids)
        if all(s.done for s in states.values()):
            break
        time.sleep(0.05)
    tracked = time.perf_counter() - t0
    done = sum(1 for s in states.values() if s.done)
    status_requests = sum(v for k, v in client.requests.items() if k != "run_script")
    d.close()
    assert submits == n
    return rate, status_requests / done, dict(client.requests), tracked


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--naive-jobs", type=int, default=1000,
                    help="jobs for each naive loop (its rate does not depend on the count)")
    args = ap.parse_args()
    fake = Server(workers=8)
    try:
        slow = naive_httpx(fake, args.naive_jobs)
        lean = naive_http_client(fake, args.naive_jobs)
        rate, per_job, requests, tracked = dispatcher_run(fake, args.jobs, args.batch)
    finally:
        counts = fake.close()
    assert counts["jobs"] == args.jobs + 2 * args.naive_jobs, counts
    print(f"jobs: {args.jobs} (naive loops: {args.naive_jobs} each), batch {args.batch}")
    print(f"naive httpx.post per request:        {slow:8.0f} submissions/s")
    print(f"naive http.client conn per request:  {lean:8.0f} submissions/s")
    print(f"dispatcher (keep-alive, 8 at once):  {rate:8.0f} submissions/s")
    print(f"ratio vs httpx.post loop:   {rate / slow:5.2f}x  (target >= 5x)")
    print(f"ratio vs http.client loop:  {rate / lean:5.2f}x")
    print(f"status requests per completed job: {per_job:.3f}  (target <= 2)  {requests}, "
          f"tracked to completion in {tracked:.1f} s")


if __name__ == "__main__":
    main()
