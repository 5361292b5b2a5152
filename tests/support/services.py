"""Private Redis and PostgreSQL servers that tests and the chaos benchmark may stop, restart
and empty without touching the machine's shared ones: Debian's ``redis-server`` (no
persistence: a restart comes back empty) and the machine's PostgreSQL binaries (a throw-away
cluster, run as the ``postgres`` user, on a port picked at run time)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:  # noqa: BLE001,S110 - not up yet
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up in {timeout} s")


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: redis.Redis(port=self.port).ping(), "redis-server")

    def kill(self) -> None:
        """Down at once, everything it held lost."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart_empty(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()


class PrivatePostgres:
    def __init__(self) -> None:
        (bindir,) = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:]
        self.bin = Path(bindir)
        self.port = free_port()
        # under /tmp, open to the postgres user (pytest's tmp dirs are 0700 root)
        self.dir = Path(tempfile.mkdtemp(prefix="planfleet-pg-", dir="/tmp"))
        os.chmod(self.dir, 0o777)
        self.data = self.dir / "data"
        self._as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                           "-U", "postgres", "--no-sync"])
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/planfleet"

    def _as_postgres(self, args: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp")

    def start(self) -> None:
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                           str(self.dir / "log.txt"), "-o",
                           f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                           "-c fsync=off -c max_connections=200", "start"])
        _wait(lambda: psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2).close()
            is None, "postgres")

    def stop(self, mode: str = "immediate") -> None:
        """Down (``immediate``: like a crash; connections are cut)."""
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                           "stop"])

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
