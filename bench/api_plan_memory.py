"""Memory of the API process under the planner endpoint: a 1 GiB body, concurrent large
bodies, and a 100,000-task plan. Prints the API process's peak resident memory (VmHWM)
after each step.

    .venv/bin/python bench/api_plan_memory.py [--tasks 100000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import _common  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def peak_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1


def zeros(total: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    block = b"#" * chunk
    for _ in range(total // chunk):
        yield block


def task_file(n: int) -> bytes:
    rnd = random.Random(1)
    tasks = [{"id": f"T{i}", "estimate": rnd.randint(1, 60),
              "depends_on": [f"T{j}" for j in rnd.sample(range(i), min(i, 2))]}
             for i in range(n)]
    return json.dumps({"tasks": tasks}).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with _common.scratch_database("planfleet_bench_apimem") as db, \
            _common.scratch_redis() as redis_url:
        env = {**os.environ, "DATABASE_URL": db, "REDIS_URL": redis_url,
               "PLANFLEET_API_TOKEN": TOKEN, "PLANFLEET_LOG_FORMAT": "json"}
        server = subprocess.Popen([str(Path(sys.executable).parent / "planfleet"), "api",
                                   "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            print(f"idle: peak {peak_mib(server.pid)} MiB", flush=True)
            with httpx.Client(timeout=600) as c:
                t = time.monotonic()
                r = c.post(f"{url}/api/plan", content=zeros(2**30), headers=AUTH)
                print(f"1 GiB chunked body: {r.status_code} in {time.monotonic() - t:.1f} s, "
                      f"peak {peak_mib(server.pid)} MiB", flush=True)

                def big(_: int) -> int:
                    with httpx.Client(timeout=600) as cc:
                        return cc.post(f"{url}/api/plan", content=zeros(512 * 2**20),
                                       headers=AUTH).status_code

                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    codes = sorted(pool.map(big, range(8)))
                print(f"8 concurrent 512 MiB bodies: {codes}, peak {peak_mib(server.pid)} MiB",
                      flush=True)
                body = task_file(args.tasks)
                t = time.monotonic()
                r = c.post(f"{url}/api/plan?filename=t.json", content=body, headers=AUTH)
                print(f"{args.tasks} tasks ({len(body) >> 20} MiB in, {len(r.content) >> 20} MiB "
                      f"out): {r.status_code} in {time.monotonic() - t:.1f} s, "
                      f"peak {peak_mib(server.pid)} MiB", flush=True)
        finally:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
