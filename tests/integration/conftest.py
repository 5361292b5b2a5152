"""A real fleet for integration tests: `rq worker` processes (and, when asked, the watcher)
against the test database and Redis db, running the test scripts with the local runner."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from planfleet import queues
from planfleet.config import Config
from planfleet.runtime import Runtime
from planfleet.schema.repositories import FileVersion, Store

BIN = Path(sys.executable).parent
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


class Fleet:
    def __init__(self, tmp: Path, database_url: str, redis_url: str) -> None:
        self.tmp = tmp
        self.records = tmp / "records"
        self.records.mkdir()
        self.env = dict(os.environ)
        self.env.update(
            DATABASE_URL=database_url, REDIS_URL=redis_url, WATCH_DIR=str(tmp / "input"),
            PLANFLEET_SCRIPTS_DIR=str(SCRIPTS), PLANFLEET_STATE_DIR=str(tmp / "state"),
            PLANFLEET_STEP_RETRY_BASE="0.05", PLANFLEET_BUILD_POLL="0.05",
            PLANFLEET_BUILD_STALE="3", PLANFLEET_REQUEUE_AFTER="2",
            PLANFLEET_STABILITY_WINDOW="0.2", PLANFLEET_LOG_FORMAT="json",
        )
        self.config = Config(
            database_url=database_url, redis_url=redis_url, scripts_dir=SCRIPTS,
            state_dir=tmp / "state", build_stale=3, requeue_after=2,
        )
        self.store = Store.from_url(database_url)
        self.queues = queues.Queues(queues.connect(redis_url))
        self.rt = Runtime(config=self.config, store=self.store, queues=self.queues)
        self.procs: list[subprocess.Popen[bytes]] = []
        self._n = 0

    def start(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=self.tmp)
        self.procs.append(proc)
        return proc

    def worker(self, queue: str) -> subprocess.Popen[bytes]:
        return self.start(str(BIN / "rq"), "worker", queue, "--url", self.env["REDIS_URL"],
                          "--serializer", "json", "--with-scheduler",
                          "--worker-class", "planfleet.workers.worker."
                          + ("BuildWorker" if queue == "build_queue" else "Worker"), name=queue)

    def workers(self) -> None:
        self.worker("plan_queue")
        self.worker("build_queue")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "planfleet"), *args], env=self.env, capture_output=True,
                              text=True, timeout=60, cwd=self.tmp)

    def task_file(self, tasks: list[dict[str, Any]], **top: Any) -> bytes:
        for t in tasks:
            t.setdefault("script", "f/test/work")
            t.setdefault("args", {}).setdefault("record_dir", str(self.records))
        return yaml.safe_dump({"tasks": tasks, **top}).encode()

    def submit(self, content: bytes, name: str | None = None, *, queue: bool = True) -> int:
        """Record an input as the watcher would, and enqueue it."""
        self._n += 1
        name = name or f"input-{self._n}.yaml"
        digest = hashlib.sha256(content).hexdigest()
        (out,) = self.store.inputs.record_files(
            str(self.tmp), [FileVersion(name, len(content), self._n, digest, content)],
            queue=queue)
        if queue:
            self.queues.enqueue_plans([out.input_id])
        return out.input_id

    def executions(self, plan_id: int, task: str) -> list[dict[str, float]]:
        path = self.records / f"{plan_id}-{task}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp.glob("*.log"))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
        self.store.close()


@pytest.fixture
def fleet(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Fleet]:
    f = Fleet(tmp_path, database_url, redis_url)
    yield f
    f.stop()


FleetFactory = Callable[..., Fleet]
