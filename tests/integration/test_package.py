"""planfleet as a user gets it: a wheel installed in a fresh venv outside the checkout.

- ``planfleet up`` from an empty directory, against the test Postgres and Redis, builds a
  dropped file with the solver script shipped in the package, prints each log line once and
  exits 0 on Ctrl-C;
- without the ``embedded`` extra and without ``DATABASE_URL`` it says which extra to install;
- the several-machines recipe (``deploy/systemd``): the control processes and one set of
  workers from the checkout's venv, a second set of workers from the wheel's venv in another
  directory, one Postgres, one Redis, one (loopback) Windmill.

Nothing is cached between runs: the wheel is built and installed (from it and PyPI) anew.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
import rq
import yaml

from tests.conftest import _admin, _url_for, wait_for
from tests.support.fake_windmill import FakeWindmill
from tests.support.services import free_port
from tests.support.shell import user_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
CHECKOUT_BIN = Path(sys.executable).parent
UV = CHECKOUT_BIN / "uv"


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Build the wheel and install it in a fresh venv outside the checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = user_env()
    started = time.monotonic()
    # uv (a test dependency) builds the sdist, the wheel from it, and installs the wheel with
    # its dependencies from PyPI, with no cache: several times faster than pip, same result
    build = subprocess.run([str(UV), "build", "--quiet", "--no-cache", "--out-dir",
                            str(tmp / "dist"), str(ROOT)], env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp / "dist").glob("planfleet-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
    install = subprocess.run([str(UV), "pip", "install", "--quiet", "--no-cache", "--python",
                              str(tmp / "venv" / "bin" / "python"), str(wheel)],
                             env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    sys.stderr.write(f"wheel built and installed in {time.monotonic() - started:.1f} s\n")
    yield tmp / "venv" / "bin"


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A database that does not exist yet: ``up`` creates and migrates it."""
    name = f"planfleet_pkg_{os.getpid()}_{int(time.monotonic() * 1000) % 100000}"
    yield _url_for(name)
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _query(url: str, sql: str) -> list[tuple]:
    try:
        with psycopg.connect(url) as conn:
            return conn.execute(sql).fetchall()  # type: ignore[arg-type]
    except psycopg.errors.UndefinedTable:
        return []
    except psycopg.OperationalError:
        return []  # not created yet


def _plans(url: str) -> list[tuple[int, str]]:
    return [(r[0], r[1]) for r in _query(url, "SELECT id, status::text FROM plans ORDER BY id")]


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 60) -> int:
    os.killpg(proc.pid, sig)
    return proc.wait(timeout=timeout)


# -- planfleet up from the wheel --------------------------------------------------------------

def test_the_wheel_runs_up_from_an_empty_directory(wheel_venv, fresh_database, redis_url,
                                                    tmp_path):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    env = {**user_env(), "DATABASE_URL": fresh_database, "REDIS_URL": redis_url,
           "PLANFLEET_API_PORT": str(free_port()), "PLANFLEET_STABILITY_WINDOW": "0.2",
           "PLANFLEET_LOG_FORMAT": "json"}
    out = cwd.parent / f"{cwd.name}.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([str(wheel_venv / "planfleet"), "up"], cwd=cwd, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: (cwd / "input").is_dir() and "Listening on build_queue" in out.read_text(),
                 timeout=60, interval=0.1)
        (cwd / "input" / "walk.yaml").write_text(yaml.safe_dump({"project": "PKG", "tasks": [
            {"id": "A", "title": "first", "estimate": 5},
            {"id": "B", "title": "second", "estimate": 5, "depends_on": ["A"]},
        ]}))
        wait_for(lambda: _plans(fresh_database) == [(1, "built")], timeout=60, interval=0.1)
        results = dict(_query(fresh_database,
                              "SELECT task_id, result FROM steps WHERE status = 'completed'"))
        # the solver script shipped in the package ran each task (its demo hand-off record)
        assert results["A"]["value"]["summary"] == "dispatched A: first"
        assert results["A"]["link"].startswith(str(cwd / ".planfleet"))
        assert results["B"]["value"]["solver"] == "default"
    finally:
        rc = _stop(proc)
    text = out.read_text()
    assert rc == 0, text[-3000:]
    assert "fleet_stopped" in text
    # each log line once (honcho's prefix has the time; the message after it must not repeat)
    bodies = collections.Counter(
        re.sub(r"^\S+ \S+\s+\| ", "", line) for line in text.splitlines() if " | " in line)
    repeated = {line: n for line, n in bodies.items() if n > 1 and "started" not in line}
    assert not repeated, repeated
    assert sum("Listening on plan_queue" in line for line in text.splitlines()) == 1


def test_up_without_the_embedded_extra_names_it(wheel_venv, tmp_path):
    env = {**user_env(), "REDIS_URL": "redis://127.0.0.1:1/0"}
    r = subprocess.run([str(wheel_venv / "planfleet"), "up"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "pip install 'planfleet[embedded]'" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_wheel_ships_help_without_markup(wheel_venv, tmp_path):
    r = subprocess.run([str(wheel_venv / "planfleet"), "--help"], cwd=tmp_path,
                       env=user_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "``" not in r.stdout and "<bool>" not in r.stdout and "╭" not in r.stdout
    assert "enqueue-plan" in r.stdout


# -- several machines: deploy/systemd -----------------------------------------------------------

def _units() -> dict[str, list[str]]:
    """Each unit's ExecStart, split as systemd does (``${VAR}`` kept for expansion)."""
    found = {}
    for unit in sorted(UNITS.glob("*.service")):
        (line,) = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
        found[unit.name] = shlex.split(line.removeprefix("ExecStart="))
    return found


def _env_file_keys() -> set[str]:
    lines = (UNITS / "planfleet.env").read_text().splitlines()
    return {ln.split("=", 1)[0] for ln in lines if ln.strip() and not ln.startswith("#")}


class Host:
    """One machine of the recipe: a venv's bin folder, a working directory, the env file."""

    def __init__(self, name: str, bin_dir: Path, env: dict[str, str], base: Path) -> None:
        self.name = name
        self.bin = bin_dir
        self.dir = base / name
        self.dir.mkdir()
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, unit: str, instance: str = "") -> subprocess.Popen[bytes]:
        argv = _units()[unit]
        assert argv[0].startswith("/opt/planfleet/venv/bin/"), argv
        argv = [str(self.bin / Path(argv[0]).name)] + [
            re.sub(r"\$\{(\w+)\}", lambda m: self.env[m.group(1)], a) for a in argv[1:]]
        key = unit.replace("@", f"@{instance}")
        with open(self.dir / f"{key}.log", "wb") as log:
            self.procs[key] = subprocess.Popen(argv, cwd=self.dir, env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True)
        return self.procs[key]

    def stop(self, key: str) -> None:
        assert _stop(self.procs.pop(key), signal.SIGTERM) is not None

    def close(self) -> None:
        """SIGTERM to each process group (the watcher's enqueuer and RQ's schedulers with
        them), SIGKILL what is left after 10 s."""
        for proc in self.procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self.procs.clear()


def _workers(redis_url: str) -> dict[int, str]:
    conn = redis.Redis.from_url(redis_url)
    return {w.pid: w.name for w in rq.Worker.all(connection=conn)}


def test_a_second_host_runs_workers_against_the_same_services(
        wheel_venv, database_url, redis_url, windmill: FakeWindmill, tmp_path) -> None:
    token = "recipe-token"
    port = free_port()
    watch = tmp_path / "input"
    watch.mkdir()
    values = {
        "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "PLANFLEET_DISPATCH": "windmill", "WINDMILL_URL": windmill.url,
        "WINDMILL_TOKEN": windmill.token, "WINDMILL_WORKSPACE": windmill.workspace,
        "WATCH_DIR": str(watch), "PLANFLEET_API_TOKEN": token,
        "PLANFLEET_API_HOST": "127.0.0.1", "PLANFLEET_API_PORT": str(port),
        "PLANFLEET_LOG_FORMAT": "json",
    }
    # every variable the env file names is given (and nothing it does not name is needed)
    assert _env_file_keys() == set(values)
    # quick settings for a test: a short stability window and polls, and an RQ job lost on
    # the way is enqueued again after 2 s rather than 60
    env = {**user_env(), **values, "PLANFLEET_STABILITY_WINDOW": "0.2",
           "PLANFLEET_WINDMILL_POLL": "0.1", "PLANFLEET_REQUEUE_AFTER": "2"}
    assert set(_units()) == {
        "planfleet-watcher.service", "planfleet-reconciler.service", "planfleet-api.service",
        "planfleet-plan-worker@.service", "planfleet-build-worker@.service"}
    control = Host("control", CHECKOUT_BIN, env, tmp_path)
    second = Host("workers", wheel_venv, env, tmp_path)
    try:
        for unit in ("planfleet-watcher.service", "planfleet-reconciler.service",
                     "planfleet-api.service"):
            control.start(unit)
        first_set = [control.start("planfleet-plan-worker@.service", "1"),
                     control.start("planfleet-build-worker@.service", "1")]
        second_set = [second.start("planfleet-plan-worker@.service", "1"),
                      second.start("planfleet-build-worker@.service", "1"),
                      second.start("planfleet-build-worker@.service", "2")]
        every_pid = {p.pid for p in first_set + second_set}
        wait_for(lambda: set(_workers(redis_url)) == every_pid, timeout=60, interval=0.1)

        def drop(name: str, n: int) -> None:
            content = yaml.safe_dump({"project": name, "tasks": [
                {"id": f"{name}-{i}", "estimate": 1} for i in range(n)]})
            (watch / f".{name}.tmp").write_text(content)
            (watch / f".{name}.tmp").rename(watch / f"{name}.yaml")

        def api_plans() -> list[str]:
            r = httpx.get(f"http://127.0.0.1:{port}/api/plans",
                          headers={"Authorization": f"Bearer {token}"}, timeout=5)
            return sorted(p["status"] for p in r.json()["items"])

        # Both sets at once: every file is planned and built once
        for i in range(4):
            drop(f"both{i}", 3)
        wait_for(lambda: _plans(database_url) and
                 [s for _, s in _plans(database_url)] == ["built"] * 4, timeout=90, interval=0.1)
        # the API on the control host reports what the workers did
        wait_for(lambda: api_plans() == ["built"] * 4, timeout=30, interval=0.2)
        # When the first set stops, Then the second set alone builds the next file
        control.stop("planfleet-plan-worker@1.service")
        control.stop("planfleet-build-worker@1.service")
        try:
            wait_for(lambda: set(_workers(redis_url)) == {p.pid for p in second_set},
                     timeout=30, interval=0.1)
        except AssertionError:
            raise AssertionError(
                f"workers {_workers(redis_url)}, first set {[p.pid for p in first_set]}, "
                f"second set {[(p.pid, p.poll()) for p in second_set]}") from None
        drop("second", 4)
        wait_for(lambda: [s for _, s in _plans(database_url)] == ["built"] * 5,
                 timeout=60, interval=0.1)
        tasks = sorted(a["task_id"] for _, _, a in windmill.executions)
        assert len(tasks) == 4 * 3 + 4 and len(set(tasks)) == len(tasks)
        # the workers' venv is the wheel's: its planfleet lives outside the checkout
        probe = subprocess.run([str(wheel_venv / "python"), "-c",
                                "import planfleet, json; print(json.dumps(planfleet.__file__))"],
                               capture_output=True, text=True, env=user_env(), cwd=second.dir)
        assert not json.loads(probe.stdout).startswith(str(ROOT))
    finally:
        control.close()
        second.close()
