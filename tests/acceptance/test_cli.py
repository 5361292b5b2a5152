"""The real ``planfleet`` command in subprocesses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from planfleet.processes import children, tagged
from tests.conftest import wait_for

BIN = str(Path(sys.executable).parent / "planfleet")


def run(args: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN, *args], env=env, capture_output=True, text=True, timeout=60, **kw  # type: ignore[call-overload]
    )


@pytest.fixture
def env(database_url: str, redis_url: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update(DATABASE_URL=database_url, REDIS_URL=redis_url, PLANFLEET_LOG_FORMAT="json")
    return e


def test_settings_show_and_set(env: dict[str, str]) -> None:
    r = run(["settings", "set", "auto_plan", "off"], env)
    assert r.returncode == 0, r.stderr
    r = run(["settings"], env)
    assert re.search(r"auto_plan\s+off", r.stdout) and re.search(r"auto_build\s+on", r.stdout)
    r = run(["settings", "set", "max_parallel", "7"], env)
    assert re.search(r"max_parallel\s+7", r.stdout)
    r = run(["settings", "set", "auto_build", "maybe"], env)
    assert r.returncode == 2 and "expected on/off" in r.stderr
    r = run(["settings", "set", "max_parallel", "0"], env)
    assert r.returncode == 2 and "at least 1" in r.stderr


def test_enqueue_plan_refuses_a_wrong_state(env: dict[str, str], database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO pending_inputs (filename, digest, size, content) "
            "VALUES ('a.yaml', repeat('a', 64), 1, 'x')"
        )
    r = run(["enqueue-plan", "1"], env)
    assert r.returncode == 0, r.stderr
    r = run(["enqueue-plan", "1", "42"], env)
    assert r.returncode == 3
    assert "input 1 is queued, not pending" in r.stderr
    assert "input 42 does not exist" in r.stderr


def test_unreachable_database_is_a_clear_error(env: dict[str, str]) -> None:
    env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"
    r = run(["settings"], env)
    assert r.returncode == 4 and "Postgres is not reachable" in r.stderr


def _start_up(cwd: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["PLANFLEET_STABILITY_WINDOW"] = "0.2"
    log = cwd / f"up-{time.monotonic_ns()}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [BIN, "up"], cwd=cwd, env=env, stderr=fh, stdout=fh, start_new_session=True
        )

    def banner() -> dict[str, str] | None:
        assert proc.poll() is None, f"planfleet up exited: {log.read_text()}"
        text = log.read_text()
        found = dict(re.findall(r"^\s+(DATABASE_URL|REDIS_URL)=(\S+)", text, re.M))
        ui = re.search(r"^\s+web UI\s+(http://\S+/)#token=(\S+)", text, re.M)
        if ui:
            found.update(UI=ui.group(1), TOKEN=ui.group(2))
        return found if len(found) == 4 else None

    found = wait_for(banner, timeout=90, interval=0.1)
    assert isinstance(found, dict)
    return proc, found


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _main_process(up: int, state: str, name: str) -> int | None:
    """The pid of the supervised process ``name`` (a child of ``up``)."""
    needle = f"PLANFLEET_PROC={state}#{name}".encode()
    for pid in children(up):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    return pid
        except OSError:
            continue
    return None


def _inputs(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [
            (r[0], r[1])
            for r in conn.execute("SELECT filename, status::text FROM pending_inputs")
        ]


@pytest.mark.slow
def test_up_brings_the_fleet_up_and_recovers_after_a_crash() -> None:
    # /tmp, not pytest's 0700 tmp dir: embedded Postgres runs as its own user
    cwd = Path(tempfile.mkdtemp(prefix="planfleet-up-", dir="/tmp"))
    (cwd / "Procfile").write_text((Path(__file__).parents[2] / "Procfile").read_text())
    proc, urls = _start_up(cwd)
    try:
        # When a file is dropped into ./input, Then it is recorded through the fleet
        (cwd / "input" / "tasks.yaml").write_text("tasks: [{id: A}]\n")
        wait_for(lambda: _inputs(urls["DATABASE_URL"]), timeout=20)
        # and the control plane it printed answers, with mutations behind its token
        ui, token = urls["UI"], urls["TOKEN"]
        wait_for(lambda: _get(f"{ui}readyz") == 200, timeout=30, interval=0.2)
        assert httpx.put(f"{ui}api/settings", json={"max_parallel": 3}).status_code == 401
        r = httpx.put(f"{ui}api/settings", json={"max_parallel": 3},
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["max_parallel"] == 3
        auth = {"Authorization": f"Bearer {token}"}
        wait_for(lambda: [p["status"] for p in httpx.get(f"{ui}api/plans", headers=auth).json()[
            "items"]] == ["built"], timeout=60, interval=0.2)
        # When the API and the build worker's main process are SIGKILLed, Then both come back,
        # the rest of the fleet (Postgres, Redis included) never stops, nothing is orphaned
        state = str(cwd / ".planfleet")
        api, build = _main_process(proc.pid, state, "api.1"), _main_process(proc.pid, state,
                                                                              "build.1")
        build_family = tagged("PLANFLEET_PROC", f"{state}#build.1")
        assert len(build_family) >= 2  # the worker and its scheduler
        os.kill(api, signal.SIGKILL)
        os.kill(build, signal.SIGKILL)
        wait_for(lambda: _main_process(proc.pid, state, "api.1") not in (None, api), timeout=30)
        wait_for(lambda: _main_process(proc.pid, state, "build.1") not in (None, build),
                 timeout=30)
        assert proc.poll() is None
        assert not set(build_family) & set(tagged("PLANFLEET_PROC", f"{state}#build.1"))
        wait_for(lambda: _get(f"{ui}readyz") == 200, timeout=30, interval=0.2)
        # the dead worker is not counted; the restart is in the events
        qs = {q["name"]: q for q in httpx.get(f"{ui}api/queues", headers=auth).json()["queues"]}
        assert qs["build_queue"]["workers"] == 1
        kinds = httpx.get(f"{ui}api/events?kind=process_died", headers=auth).json()["items"]
        assert {e["data"]["process"] for e in kinds} == {"api.1", "build.1"}
        (cwd / "input" / "after.yaml").write_text("tasks: [{id: C}]\n")
        wait_for(lambda: len(httpx.get(f"{ui}api/plans?status=built", headers=auth).json()[
            "items"]) == 2, timeout=60, interval=0.2)
        # When the whole process group is killed (a crash), Then a second `up` adopts what
        # was left running and carries on
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert tagged("PLANFLEET_FLEET", state)  # the first fleet's processes outlived it
        proc, urls2 = _start_up(cwd)
        assert urls2 == urls
        (cwd / "input" / "more.yaml").write_text("tasks: [{id: B}]\n")
        wait_for(lambda: len(_inputs(urls["DATABASE_URL"])) == 3, timeout=20)
    finally:
        # When Ctrl-C reaches the group, Then everything it started stops
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) is not None
    pg_pid = cwd / ".planfleet" / "postgres" / "postmaster.pid"
    wait_for(lambda: not pg_pid.exists(), timeout=20)
    assert not (cwd / ".planfleet" / "redis" / "redis.pid").exists()
    assert not (cwd / ".planfleet" / "up.pid").exists()
    # nothing of either fleet is left running
    wait_for(lambda: not tagged("PLANFLEET_FLEET", str(cwd / ".planfleet")), timeout=20)


def test_api_refuses_a_public_address_without_a_token(env: dict[str, str]) -> None:
    env.pop("PLANFLEET_API_TOKEN", None)
    r = run(["api", "--host", "0.0.0.0", "--port", "0"], env)
    assert r.returncode == 2
    assert "refusing to listen on 0.0.0.0 without PLANFLEET_API_TOKEN" in r.stderr
