"""planfleet up's restart decisions and Procfile reading (pure)."""

from __future__ import annotations

import pytest

from planfleet import supervisor as sv

POLICY = sv.RestartPolicy(base=0.5, cap=30, healthy_after=30)


def test_quick_deaths_wait_longer_each_time_up_to_the_cap() -> None:
    assert [sv.restart_delay(n, POLICY) for n in range(1, 9)] == [
        0.5, 1, 2, 4, 8, 16, 30, 30]


def test_a_process_that_ran_a_while_starts_over() -> None:
    assert sv.after_exit(5, ran_for=31, policy=POLICY) == 1
    assert sv.after_exit(5, ran_for=2, policy=POLICY) == 6
    assert sv.after_exit(0, ran_for=0.1, policy=POLICY) == 1


def test_procfile_lines_and_copies() -> None:
    procs = sv.parse_procfile("# comment\n\nweb: planfleet api\nbuild: rq worker b --url \"$X\"\n")
    assert procs == [sv.Proc("web", "planfleet api"), sv.Proc("build", 'rq worker b --url "$X"')]
    assert [p.name for p in sv.expand(procs, {"build": 2})] == ["web.1", "build.1", "build.2"]
    with pytest.raises(ValueError, match="line 1"):
        sv.parse_procfile("no colon here")


def test_a_command_that_cannot_start_is_tried_again_later(tmp_path: object) -> None:
    # Given a supervisor whose clock we drive, and a working directory that vanished
    from pathlib import Path

    now = [0.0]
    s = sv.Supervisor([sv.Proc("x.1", "true")], env={}, cwd=Path("/nonexistent/dir"),
                      fleet="f", policy=POLICY, clock=lambda: now[0])
    r = s.running["x.1"]
    r.restart_at = 0.0
    # When the restart is due, Then the failure is counted and a later restart planned
    s.tick()
    assert r.popen is None and r.failures == 1 and r.restart_at == 0.5
