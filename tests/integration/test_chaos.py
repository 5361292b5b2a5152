"""The chaos run, small: the fleet keeps every promise through SIGKILLs and restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chaos import Chaos


@pytest.mark.slow
def test_chaos_run_small(tmp_path: Path) -> None:
    chaos = Chaos(tmp_path, inputs=30, drop_over=12, kill_every=1.0, seed=3)
    try:
        report = chaos.run(settle_timeout=180)
    finally:
        chaos.stop_all()
    print("\n".join(report.lines()))
    assert not report.problems, "\n".join(report.lines())
    assert report.kills >= 5 and report.redis_restarts == 1 and report.postgres_restarts == 1
    assert report.tasks >= 90 and report.failed_executions > 0
