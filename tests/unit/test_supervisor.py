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
