"""``planfleet up``: embedded services when needed, migrations, then the Procfile's processes,
supervised (:mod:`planfleet.supervisor`: one that dies is restarted, the fleet goes on)."""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import sys
import threading
from pathlib import Path

import structlog

from planfleet import defaults, exceptions, supervisor
from planfleet.config import SHIPPED_PROCFILE, Config
from planfleet.embedded import EmbeddedPostgres, EmbeddedRedis
from planfleet.processes import alive, tagged, terminate
from planfleet.schema import migrate
from planfleet.schema.repositories import Store

log = structlog.get_logger(__name__)


def _procfile() -> Path:
    """The working directory's Procfile (to run a fleet of your own), else the shipped one."""
    here = Path.cwd() / "Procfile"
    return here if here.exists() else SHIPPED_PROCFILE


def _api_token(state: Path) -> str:
    """The fleet's API token: made once, kept in the state dir (mode 0600)."""
    path = state / "api-token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token)
        return token


def write_env_file(path: Path, values: dict[str, str], bin_dir: Path) -> None:
    """``path``: export lines a shell sources to talk to this fleet (mode 0600: the token)."""
    lines = ["# written by `planfleet up`: `. THIS-FILE` points a shell at the fleet"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    lines.append(f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def _free_port(preferred: int) -> int:
    """``preferred`` when nothing listens there, else a port the kernel picks."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise exceptions.ConfigurationError("no free port for the API")


def _claim_pidfile(state: Path) -> Path:
    pidfile = state / "up.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        pid = 0
    if pid and pid != os.getpid() and alive(pid):
        raise exceptions.ConfigurationError(f"planfleet up is already running (pid {pid})")
    pidfile.write_text(str(os.getpid()))
    return pidfile


#: Environment variable that marks every process of one fleet (its state dir as the value).
FLEET_TAG = "PLANFLEET_FLEET"


def run(*, plan_workers: int = 1, build_workers: int = 1) -> int:
    """Run the fleet in the foreground; return the exit code."""
    config = Config()
    state = config.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    pidfile = _claim_pidfile(state)
    leftovers = tagged(FLEET_TAG, str(state))
    if leftovers:
        # a previous `up` died without stopping its processes (each runs in a
        # session of its own, so they outlive it): stop them before starting anew
        log.warning("stopping_leftovers", action="up", pids=leftovers)
        terminate(leftovers)
    pg = EmbeddedPostgres(state) if "DATABASE_URL" not in os.environ else None
    rds = EmbeddedRedis(state) if "REDIS_URL" not in os.environ else None
    env = dict(os.environ)
    store: Store | None = None
    try:
        database_url = pg.start() if pg else config.database_url
        redis_url = rds.start() if rds else config.redis_url
        migrate.ensure_database(database_url)
        migrate.migrate(database_url)
        watch_dir = config.watch_dir.expanduser().resolve()
        watch_dir.mkdir(parents=True, exist_ok=True)
        env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, WATCH_DIR=str(watch_dir))
        env[FLEET_TAG] = str(state)
        token = env.get("PLANFLEET_API_TOKEN") or _api_token(state)
        port = int(env.get("PLANFLEET_API_PORT") or _free_port(defaults.API_PORT))
        env.update(PLANFLEET_API_TOKEN=token, PLANFLEET_API_PORT=str(port))
        ui = f"http://{config.api_host}:{port}/"
        bin_dir = Path(sys.executable).parent
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        procs = supervisor.expand(supervisor.parse_procfile(_procfile().read_text()),
                                  {"plan": plan_workers, "build": build_workers})
        store = Store.from_url(database_url)
        events = store.events

        def record(kind: str, message: str, data: dict[str, object]) -> None:
            events.add(kind, message, data=data)

        fleet = supervisor.Supervisor(procs, env=env, cwd=Path.cwd(), fleet=str(state),
                                      on_event=record)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        write_env_file(state / "env", {
            "DATABASE_URL": database_url, "REDIS_URL": redis_url, "WATCH_DIR": str(watch_dir),
            "PLANFLEET_API_TOKEN": token, "PLANFLEET_API_URL": ui}, bin_dir)
        sys.stderr.write(
            "\nplanfleet is up\n"
            f"  drop task files into  {watch_dir}\n"
            f"  web UI                {ui}#token={token}\n"
            f"  API token             {token}  (Authorization: Bearer …; API docs {ui}docs)\n"
            f"  DATABASE_URL={database_url}\n"
            f"  REDIS_URL={redis_url}\n"
            f"  state and logs in     {state}\n"
            f"  in another shell      . {state / 'env'}   (these variables, and planfleet on PATH)\n"
            "  a process that dies is restarted; Ctrl-C stops everything.\n\n"
        )
        fleet.run(stop)  # returns once a stop was asked for (Ctrl-C, SIGTERM): exit 0
        return 0
    except (exceptions.PlanfleetError, ValueError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    finally:
        if store is not None:
            store.close()
        if rds:
            rds.stop()
        if pg:
            pg.stop()
        pidfile.unlink(missing_ok=True)
        log.info("fleet_stopped", action="up")
