"""planfleet up's supervisor with real processes: one that dies is restarted, what it left
behind is stopped, the others go on; and a killed RQ worker is not counted."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import rq

from planfleet import processes, queues
from planfleet import supervisor as sv
from tests.conftest import wait_for

# a process that starts a helper in a session of its own (as RQ's work horse is), then waits
PARENT = (f"{sys.executable} -c \"import subprocess, sys, time; "
          "p = subprocess.Popen(['sleep', '300'], start_new_session=True); "
          "open(sys.argv[1], 'a').write(str(p.pid) + chr(10)); time.sleep(300)\" {helpers}")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[sv.Supervisor, list[tuple[str, str, dict]], Path]]:
    helpers = tmp_path / "helpers.txt"
    events: list[tuple[str, str, dict]] = []
    s = sv.Supervisor(
        [sv.Proc("worker.1", PARENT.format(helpers=helpers)), sv.Proc("api.1", "sleep 300")],
        env=dict(os.environ), cwd=tmp_path, fleet=str(tmp_path),
        policy=sv.RestartPolicy(base=0.05, cap=0.2, healthy_after=60),
        on_event=lambda k, m, d: events.append((k, m, d)), out=io.StringIO())
    stop = threading.Event()
    thread = threading.Thread(target=s.run, args=(stop,), kwargs={"poll": 0.02}, daemon=True)
    thread.start()
    yield s, events, helpers
    stop.set()
    thread.join(30)


def helper_pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_a_killed_process_is_restarted_and_leaves_no_orphan(fleet: tuple) -> None:
    s, events, helpers = fleet
    first = wait_for(lambda: s.pid("worker.1"), timeout=10)
    api = wait_for(lambda: s.pid("api.1"), timeout=10)
    wait_for(lambda: len(helper_pids(helpers)) == 1, timeout=10)
    (orphan,) = helper_pids(helpers)
    # When the worker's main process is SIGKILLed
    os.kill(first, signal.SIGKILL)
    # Then it runs again under a new pid, its helper is gone, the other process never stopped
    wait_for(lambda: s.pid("worker.1") not in (None, first), timeout=10)
    wait_for(lambda: not processes.alive(orphan) or _zombie(orphan), timeout=10)
    assert s.pid("api.1") == api and s.restarts("worker.1") == 1
    wait_for(lambda: events, timeout=10)
    (kind, message, data), = events
    assert kind == "process_died" and data["process"] == "worker.1"
    assert "signal 9" in message and data["orphans_stopped"] == [orphan]
    # and the API's death does not stop the fleet either
    os.kill(api, signal.SIGKILL)
    wait_for(lambda: s.pid("api.1") not in (None, api), timeout=10)
    assert s.restarts("api.1") == 1


def test_stop_leaves_nothing_running(tmp_path: Path) -> None:
    helpers = tmp_path / "h.txt"
    s = sv.Supervisor([sv.Proc("worker.1", PARENT.format(helpers=helpers))],
                      env=dict(os.environ), cwd=tmp_path, fleet=str(tmp_path),
                      out=io.StringIO())
    s.start_all()
    wait_for(lambda: helper_pids(helpers), timeout=10)
    main = s.pid("worker.1")
    s.stop(grace=2)
    assert main is not None and not processes.alive(main)
    assert not processes.tagged(sv.PROC_TAG, s.tag("worker.1"))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_killed_worker_is_not_counted(redis_url: str) -> None:
    # Given a registered RQ worker whose process was SIGKILLed (its record stays in Redis)
    conn = queues.connect(redis_url)
    qs = queues.Queues(conn)
    dead = subprocess.Popen(["true"])
    dead.wait()
    w = rq.Worker([qs.build], connection=conn)
    w.register_birth()
    w.set_state("busy")
    conn.hset(w.key, "pid", dead.pid)
    alive = rq.Worker([qs.build], connection=conn, name="alive-one")
    alive.register_birth()
    try:
        # Then the queue's stats count only the live one
        st = queues.stats(qs.build)
        assert (st.workers, st.busy) == (1, 0)
    finally:
        w.register_death()
        alive.register_death()
