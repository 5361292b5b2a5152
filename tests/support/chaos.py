"""The chaos run: the real fleet (watcher, 2 plan workers, 2 build workers, reconciler, local
runner) on a private Postgres and Redis, task files dropped over time, a random process
SIGKILLed and restarted every ``kill_every`` seconds, Redis restarted empty once, Postgres
restarted once. Then every input must end terminal, every plan built, every task succeeded
exactly once, and no job id run twice. ``bench/chaos.py`` runs it big; a test runs it small."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml

from planfleet.processes import children
from tests.support.services import PrivatePostgres, PrivateRedis

BIN = Path(sys.executable).parent
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
KINDS = ("watcher", "plan-1", "plan-2", "build-1", "build-2", "reconciler")


@dataclasses.dataclass
class Report:
    inputs: int = 0
    inputs_terminal: int = 0
    inputs_failed: int = 0
    plans: int = 0
    plans_built: int = 0
    tasks: int = 0
    tasks_succeeded_once: int = 0
    executions: int = 0
    failed_executions: int = 0
    job_ids_run_twice: int = 0
    kills: int = 0
    redis_restarts: int = 0
    postgres_restarts: int = 0
    postgres_down: float = 0.0
    seconds: float = 0.0
    problems: list[str] = dataclasses.field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"inputs: {self.inputs} dropped, {self.inputs_terminal} terminal, "
            f"{self.inputs_failed} failed",
            f"plans: {self.plans}, built {self.plans_built}",
            f"tasks: {self.tasks}, succeeded exactly once {self.tasks_succeeded_once}",
            f"executions: {self.executions} ({self.failed_executions} failed transiently), "
            f"job ids run twice: {self.job_ids_run_twice}",
            f"faults: {self.kills} SIGKILLs, {self.redis_restarts} Redis restarts (empty), "
            f"{self.postgres_restarts} Postgres restarts ({self.postgres_down:g} s down); "
            f"{self.seconds:.0f} s",
        ] + [f"PROBLEM: {p}" for p in self.problems]


class Chaos:
    def __init__(self, workdir: Path, *, inputs: int, drop_over: float, kill_every: float,
                 seed: int = 1, pg_down: float = 2.0) -> None:
        self.pg_down = pg_down
        self.dir = workdir
        self.n_inputs, self.drop_over, self.kill_every = inputs, drop_over, kill_every
        self.rng = random.Random(seed)
        self.pg = PrivatePostgres()
        self.redis = PrivateRedis()
        self.inbox = workdir / "input"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ, "DATABASE_URL": self.pg.url, "REDIS_URL": self.redis.url,
            "WATCH_DIR": str(self.inbox), "PLANFLEET_SCRIPTS_DIR": str(SCRIPTS),
            "PLANFLEET_STATE_DIR": str(workdir / "state"), "PLANFLEET_LOG_FORMAT": "json",
            "PLANFLEET_STEP_RETRY_BASE": "0.1", "PLANFLEET_STEP_RETRY_CAP": "1",
            "PLANFLEET_STEP_MAX_ATTEMPTS": "8", "PLANFLEET_CIRCUIT_THRESHOLD": "1000",
            "PLANFLEET_BUILD_POLL": "0.05", "PLANFLEET_BUILD_STALE": "3",
            "PLANFLEET_REQUEUE_AFTER": "2", "PLANFLEET_PLAN_STALE": "3",
            "PLANFLEET_RECONCILE_INTERVAL": "0.5", "PLANFLEET_STABILITY_WINDOW": "0.2",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.report = Report()
        self._stop = threading.Event()

    # -- processes ---------------------------------------------------------------------------

    def _command(self, kind: str) -> list[str]:
        if kind == "watcher":
            return [str(BIN / "planfleet"), "watch"]
        if kind == "reconciler":
            return [str(BIN / "planfleet"), "reconcile"]
        queue, cls = (("plan_queue", "Worker") if kind.startswith("plan")
                      else ("build_queue", "BuildWorker"))
        return [str(BIN / "rq"), "worker", queue, "--url", self.redis.url, "--serializer",
                "json", "--with-scheduler", "--worker-class", f"planfleet.workers.worker.{cls}"]

    def start(self, kind: str) -> None:
        with open(self.dir / f"{kind}.log", "ab") as log:
            self.procs[kind] = subprocess.Popen(
                self._command(kind), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.dir)

    def kill(self, kind: str) -> None:
        proc = self.procs[kind]
        doomed = children(proc.pid)  # RQ's work horses run in a process group of their own
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(10)
        self.report.kills += 1

    def stop_all(self) -> None:
        for kind in list(self.procs):
            try:
                self.kill(kind)
            except Exception:  # noqa: BLE001,S110 - tearing down
                pass
        self.redis.close()
        self.pg.close()

    # -- the run -----------------------------------------------------------------------------

    def _input(self, i: int) -> bytes:
        n = self.rng.randint(3, 6)
        tasks = []
        for k in range(n):
            deps = sorted({f"T{self.rng.randrange(k)}" for _ in range(self.rng.randint(0, 2))}
                          ) if k else []
            tasks.append({"id": f"T{k}", "estimate": self.rng.randint(1, 20), "depends_on": deps,
                          "script": "f/chaos/work",
                          "args": {"dsn": self.pg.url, "sleep_max": 0.2, "fail_rate": 0.1}})
        return yaml.safe_dump({"project": f"chaos-{i}", "tasks": tasks}).encode()

    def _drop(self) -> None:
        gap = self.drop_over / self.n_inputs
        for i in range(self.n_inputs):
            tmp = self.inbox / f".in-{i}.tmp"
            tmp.write_bytes(self._input(i))
            tmp.rename(self.inbox / f"in-{i:04}.yaml")
            time.sleep(gap)

    def _faults(self) -> None:
        redis_at = self.drop_over / 3
        pg_at = 2 * self.drop_over / 3
        started = time.monotonic()
        while not self._stop.wait(self.kill_every):
            elapsed = time.monotonic() - started
            if redis_at and elapsed >= redis_at:
                redis_at = 0
                self.redis.restart_empty()
                self.report.redis_restarts += 1
                continue
            if pg_at and elapsed >= pg_at:
                pg_at = 0
                self.pg.stop()
                time.sleep(self.pg_down)
                self.pg.start()
                self.report.postgres_restarts += 1
                self.report.postgres_down = self.pg_down
                continue
            kind = self.rng.choice(KINDS)
            self.kill(kind)
            self.start(kind)

    def run(self, settle_timeout: float = 300) -> Report:
        t0 = time.monotonic()
        with psycopg.connect(self.pg.url.replace("/planfleet", "/postgres"),
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE planfleet")
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE chaos_executions (id bigserial PRIMARY KEY, "
                         "plan_id bigint, task_id text, job_id text, success boolean, "
                         "at timestamptz DEFAULT now())")
        for kind in KINDS:
            self.start(kind)
        faults = threading.Thread(target=self._faults, daemon=True)
        faults.start()
        self._drop()
        time.sleep(self.kill_every * 2)
        self._stop.set()
        faults.join()
        self._settle(settle_timeout)
        self.report.seconds = time.monotonic() - t0
        self._count()
        return self.report

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        for _ in range(50):
            try:
                with psycopg.connect(self.pg.url, connect_timeout=3) as conn:
                    return conn.execute(sql).fetchall()  # type: ignore[arg-type]
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise RuntimeError("Postgres does not answer")

    def _settle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (busy,) = self._query(
                "SELECT (SELECT count(*) FROM pending_inputs "
                "        WHERE status NOT IN ('planned', 'failed'))"
                " + (SELECT count(*) FROM plans WHERE status NOT IN ('built', 'failed', "
                "    'cancelled')), (SELECT count(*) FROM pending_inputs)")
            if busy[0] == 0 and busy[1] >= self.n_inputs:
                return
            time.sleep(1)
        self.report.problems.append(f"not settled after {timeout:g} s: {busy}")

    def _count(self) -> None:
        r = self.report
        r.inputs = self.n_inputs
        ((terminal, failed, total),) = self._query(
            "SELECT count(*) FILTER (WHERE status IN ('planned', 'failed')), "
            "count(*) FILTER (WHERE status = 'failed'), count(*) FROM pending_inputs")
        r.inputs_terminal, r.inputs_failed = terminal, failed
        if total != self.n_inputs:
            r.problems.append(f"{total} inputs recorded for {self.n_inputs} files")
        ((plans, built),) = self._query(
            "SELECT count(*), count(*) FILTER (WHERE status = 'built') FROM plans")
        r.plans, r.plans_built = plans, built
        ((tasks,),) = self._query(
            "SELECT count(DISTINCT (plan_id, task_id)) FROM steps")
        r.tasks = tasks
        ((once,),) = self._query(
            "SELECT count(*) FROM (SELECT plan_id, task_id FROM chaos_executions "
            "WHERE success GROUP BY plan_id, task_id HAVING count(*) = 1) AS t")
        r.tasks_succeeded_once = once
        ((execs, fails),) = self._query(
            "SELECT count(*), count(*) FILTER (WHERE NOT success) FROM chaos_executions")
        r.executions, r.failed_executions = execs, fails
        ((twice,),) = self._query(
            "SELECT count(*) FROM (SELECT job_id FROM chaos_executions GROUP BY job_id "
            "HAVING count(*) > 1) AS t")
        r.job_ids_run_twice = twice
        if r.inputs_terminal != r.inputs:
            r.problems.append("inputs not terminal")
        if r.plans_built != r.inputs or r.plans != r.inputs:
            r.problems.append("plans not all built")
        if r.tasks_succeeded_once != r.tasks:
            r.problems.append("a task did not succeed exactly once")
        if r.job_ids_run_twice:
            r.problems.append("a job id ran twice")
