"""Runs the Procfile's processes for ``planfleet up`` and keeps them running.

A process that dies is restarted after a backoff (logged, and an event in Postgres); the rest of
the fleet goes on. Each process runs in a session of its own (``exec``: no shell stays between)
and carries ``PLANFLEET_PROC`` in its environment, so that when it dies, what it left behind
(RQ's scheduler, a work horse in a process group of its own) is found and stopped before the
restart: no orphans. Ctrl-C or SIGTERM stops everything.

The decisions (:func:`restart_delay`, :func:`after_exit`) are pure functions; the
:class:`Supervisor` applies them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import structlog

from planfleet import defaults, processes

log = structlog.get_logger(__name__)

#: environment variable naming one supervised process (``<fleet>#<name>``)
PROC_TAG = "PLANFLEET_PROC"


@dataclasses.dataclass(frozen=True)
class Proc:
    """One process to run: ``plan.1``, ``api.1`` ..."""

    name: str
    command: str


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    #: wait before the first restart; doubles with each quick death, up to ``cap``
    base: float = defaults.RESTART_BASE
    cap: float = defaults.RESTART_CAP
    #: a process that ran this long before dying was healthy: its next wait starts at ``base``
    healthy_after: float = defaults.RESTART_HEALTHY_AFTER


def parse_procfile(text: str) -> list[Proc]:
    """``name: command`` lines; blank lines and ``#`` comments skipped."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if m is None:
            raise ValueError(f"Procfile line {number} is not 'name: command': {line!r}")
        out.append(Proc(m.group(1), m.group(2).strip()))
    return out


def expand(procs: list[Proc], concurrency: Mapping[str, int]) -> list[Proc]:
    """``concurrency[name]`` copies of each (default one), named ``name.1``, ``name.2`` ..."""
    return [Proc(f"{p.name}.{i}", p.command) for p in procs
            for i in range(1, concurrency.get(p.name, 1) + 1)]


def restart_delay(failures: int, policy: RestartPolicy) -> float:
    """Seconds to wait before restarting a process that died ``failures`` times in a row."""
    return float(min(policy.cap, policy.base * 2 ** max(0, failures - 1)))


def after_exit(failures: int, ran_for: float, policy: RestartPolicy) -> int:
    """The count of quick deaths in a row after one more death, ``ran_for`` seconds after its
    start."""
    return 1 if ran_for >= policy.healthy_after else failures + 1


@dataclasses.dataclass
class _Running:
    proc: Proc
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    restarts: int = 0


#: (kind, message, data) -> None: where restarts are recorded (the events table)
EventSink = Callable[[str, str, dict[str, object]], None]


class Supervisor:
    """Starts ``procs``, restarts any that dies, stops them all on :meth:`stop`."""

    def __init__(self, procs: list[Proc], *, env: Mapping[str, str], cwd: Path, fleet: str,
                 policy: RestartPolicy | None = None, on_event: EventSink | None = None,
                 out: IO[str] | None = None, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.fleet = fleet
        self.policy = policy or RestartPolicy()
        self.on_event = on_event
        self.out = out or sys.stdout
        self.clock = clock
        self.running = {p.name: _Running(p) for p in procs}
        self._out_lock = threading.Lock()
        self._width = max((len(p.name) for p in procs), default=4)

    def tag(self, name: str) -> str:
        return f"{self.fleet}#{name}"

    def pid(self, name: str) -> int | None:
        popen = self.running[name].popen
        return popen.pid if popen is not None and popen.poll() is None else None

    def restarts(self, name: str) -> int:
        return self.running[name].restarts

    # -- one turn ----------------------------------------------------------------------------

    def start_all(self) -> None:
        for r in self.running.values():
            self._start(r)

    def tick(self) -> None:
        """Notice deaths, clean up after them, restart what is due."""
        now = self.clock()
        for r in self.running.values():
            if r.popen is not None and (code := r.popen.poll()) is not None:
                self._died(r, code, now)
            if r.popen is None and r.restart_at is not None and now >= r.restart_at:
                r.restart_at = None
                r.restarts += 1
                try:
                    self._start(r)
                except OSError as exc:  # cannot even start: try again later, never give up
                    r.failures += 1
                    r.restart_at = now + restart_delay(r.failures, self.policy)
                    log.error("process_start_failed", action="up", process=r.proc.name,
                              error=str(exc), retry_in=r.restart_at - now)
                    continue
                log.info("process_restarted", action="up", process=r.proc.name,
                         pid=r.popen.pid if r.popen else None, restarts=r.restarts)

    def run(self, stop: threading.Event, poll: float = 0.1) -> None:
        """Supervise until ``stop`` is set, then stop everything."""
        self.start_all()
        try:
            while not stop.wait(poll):
                self.tick()
        finally:
            self.stop()

    def stop(self, grace: float = defaults.STOP_GRACE) -> None:
        """SIGTERM every process group (and anything tagged), SIGKILL what remains."""
        pids = []
        for r in self.running.values():
            r.restart_at = None
            if r.popen is not None and r.popen.poll() is None:
                pids.append(r.popen.pid)
                _signal_group(r.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(
                r.popen is not None and r.popen.poll() is None for r in self.running.values()):
            time.sleep(0.05)
        for r in self.running.values():
            if r.popen is not None:
                _signal_group(r.popen.pid, signal.SIGKILL)
                r.popen.wait()
            self._sweep(r.proc.name)

    # -- internals ---------------------------------------------------------------------------

    def _start(self, r: _Running) -> None:
        env = {**self.env, PROC_TAG: self.tag(r.proc.name)}
        # exec: the command replaces the shell, so its death is seen here at once (no shell
        # left as a zombie in between); a session of its own: signals reach its whole group
        r.popen = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {r.proc.command}"], env=env, cwd=self.cwd,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        r.started = self.clock()
        threading.Thread(target=self._relay, args=(r.proc.name, r.popen), daemon=True).start()

    def _died(self, r: _Running, code: int, now: float) -> None:
        assert r.popen is not None
        pid = r.popen.pid
        left = self._sweep(r.proc.name, group=pid)
        ran_for = now - r.started
        r.failures = after_exit(r.failures, ran_for, self.policy)
        delay = restart_delay(r.failures, self.policy)
        r.popen = None
        r.restart_at = now + delay
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        log.warning("process_died", action="up", process=r.proc.name, pid=pid, status=how,
                    ran_for=round(ran_for, 1), orphans_stopped=left, restart_in=delay)
        if self.on_event is not None:
            # in a thread: a slow or unreachable Postgres must not hold up the supervision
            threading.Thread(target=self._record, daemon=True, args=(
                "process_died", f"{r.proc.name} (pid {pid}) ended with {how} after "
                f"{ran_for:.0f} s; restarting in {delay:g} s",
                {"process": r.proc.name, "pid": pid, "status": how, "orphans_stopped": left,
                 "restart_in": delay})).start()

    def _record(self, kind: str, message: str, data: dict[str, object]) -> None:
        assert self.on_event is not None
        try:
            self.on_event(kind, message, data)
        except Exception as exc:  # noqa: BLE001 - recording is best effort, never fatal
            log.warning("process_event_failed", action="up", error=str(exc))

    def _sweep(self, name: str, group: int | None = None) -> list[int]:
        """Stop whatever a dead process left: its process group, then anything carrying its
        tag (a work horse in a group of its own)."""
        if group is not None:
            _signal_group(group, signal.SIGKILL)
        left = processes.tagged(PROC_TAG, self.tag(name))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(_ended(p) for p in left):
            time.sleep(0.01)
        return left

    def _relay(self, name: str, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        prefix = f"{name:<{self._width}} | "
        for raw in popen.stdout:
            line = raw.decode("utf-8", "replace")
            with self._out_lock:
                self.out.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
                self.out.flush()
        popen.stdout.close()


def _ended(pid: int) -> bool:
    """Gone, or a zombie waiting for its parent (init, for an orphan) to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
